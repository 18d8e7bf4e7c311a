"""The factory store owner's 区域看板."""
from . import routes

BLUEPRINTS = (routes.bp,)
