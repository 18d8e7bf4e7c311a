"""Member login (WeChat OAuth2, demo picker) and logout."""
from . import routes

BLUEPRINTS = (routes.bp,)
