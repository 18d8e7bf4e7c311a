"""Exports of orders, commissions and withdrawals for a date range, as CSV and as XLSX."""
from flask import Blueprint

from .access import require_admin

bp = Blueprint("admin_exports", __name__, url_prefix="/admin/exports")
bp.before_request(require_admin())
