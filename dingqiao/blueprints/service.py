"""售后与客服: members' after-sales cases with a message thread and photos (filled in by the service work)."""
from flask import Blueprint

bp = Blueprint("service", __name__, url_prefix="/service")
