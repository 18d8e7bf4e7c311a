"""我的: the member's own profile, identity, referral code and wallet summary."""
from flask import Blueprint
from sqlalchemy import select

from ..extensions import db
from ..models import Wallet
from ..web import render_page
from .access import current_member, require_member

bp = Blueprint("me", __name__, url_prefix="/me")
bp.before_request(require_member)


@bp.get("/")
def index():
    member = current_member()
    wallet = db.session.execute(select(Wallet).where(Wallet.user_id == member.id)).scalar_one_or_none()
    return render_page("me/index.html", member=member, wallet=wallet, upline=member.binding.upline if member.binding else None)
