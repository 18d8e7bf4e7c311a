"""A member seen by the operations team: identity, upline, team; relation correction; disable/enable."""
from flask import Blueprint

from .access import require_admin

bp = Blueprint("admin_members", __name__, url_prefix="/admin/members")
bp.before_request(require_admin())
