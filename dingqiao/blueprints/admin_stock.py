"""Stock per location for the operations team, and manual adjustments with a reason."""
from flask import Blueprint

from .access import require_admin

bp = Blueprint("admin_stock", __name__, url_prefix="/admin/stock")
bp.before_request(require_admin())
