"""The pages of whoever runs a location: the outlet's redeem and sales pages, its profile, stock and 进货单."""
from . import profile, restock, routes, stock

BLUEPRINTS = (routes.bp, profile.bp, stock.bp, restock.bp)
