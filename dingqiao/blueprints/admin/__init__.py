"""The admin area (desktop): dashboard and queues, content, exports, members, network, orders, after-sales, logins,
stock, the setup wizard, and the Flask-Admin data pages (admin/data/)."""
from . import content, exports, members, network, orders, routes, service, sessions, setup, stock

BLUEPRINTS = (routes.bp, content.bp, exports.bp, members.bp, network.bp, orders.bp, service.bp, sessions.bp, stock.bp,
              setup.bp, setup.admin_bp)
