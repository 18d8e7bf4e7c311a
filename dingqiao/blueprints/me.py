"""我的: the member's own profile, identity, referral code and wallet summary."""
from flask import Blueprint

from ..extensions import db
from ..services.redemption import staff_outlet_ids
from ..services.wallet import wallet_view
from ..web import render_page
from .access import current_member, require_member

bp = Blueprint("me", __name__, url_prefix="/me")
bp.before_request(require_member)


@bp.get("/")
def index():
    member = current_member()
    return render_page(
        "me/index.html", member=member, wallet=wallet_view(db.session, member.id),
        upline=member.binding.upline if member.binding else None,
        is_staff=bool(staff_outlet_ids(db.session, member.id)),
    )
