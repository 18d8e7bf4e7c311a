"""The shop front a visitor or member sees: catalog and product pages, cart and checkout, articles, nearby outlets."""
from . import articles, cart, nearby, routes

BLUEPRINTS = (routes.bp, cart.bp, articles.bp, nearby.bp)
