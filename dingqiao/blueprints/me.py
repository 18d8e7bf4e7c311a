"""我的: the member's own profile, identity, referral code and wallet summary."""
import io

import qrcode
from flask import Blueprint, current_app, make_response, request

from ..extensions import db
from ..services.redemption import staff_outlet_ids
from ..services.team import team_board
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


def share_link(member) -> str:
    base = current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/")
    return f"{base}/?ref={member.referral_code}"


@bp.get("/share")
def share():
    """推广: the member's code, link and QR code. Anyone who opens the link and logs in is bound to them."""
    member = current_member()
    return render_page("me/share.html", member=member, link=share_link(member))


@bp.get("/share-qr.png")
def share_qr():
    image = qrcode.make(share_link(current_member()), box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    response = make_response(buffer.getvalue())
    response.mimetype = "image/png"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.get("/team")
def team():
    """我的团队: counts, paid sales and members (masked), down to the commission depth in force."""
    return render_page("me/team.html", board=team_board(db.session, current_member().id))
