"""The operations team's side of after-sales cases (filled in by the service work)."""
from flask import Blueprint

bp = Blueprint("admin_service", __name__, url_prefix="/admin/service")
