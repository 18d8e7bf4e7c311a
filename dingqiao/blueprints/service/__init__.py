"""售后与客服 as a member sees it: their cases and threads."""
from . import routes

BLUEPRINTS = (routes.bp,)
