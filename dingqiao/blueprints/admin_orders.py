"""One order seen by the operations team: payments, commission lines, stock movements, messages, refunds."""
from flask import Blueprint

from .access import require_admin

bp = Blueprint("admin_orders", __name__, url_prefix="/admin/orders")
bp.before_request(require_admin())
