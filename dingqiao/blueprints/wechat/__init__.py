"""Machine endpoints WeChat calls and the JS-SDK config."""
from . import routes

BLUEPRINTS = (routes.bp,)
