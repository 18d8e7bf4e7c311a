"""A member's own pages: 我的, orders, wallet and withdrawals, messages."""
from . import messages, orders, routes, wallet

BLUEPRINTS = (routes.bp, orders.bp, wallet.bp, messages.bp)
