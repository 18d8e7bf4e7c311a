"""Outlet staff: scan or type a pickup code, see the order, tap to hand it over (核销).

Open to the owner and staff of an outlet and to the owner of a factory store (for its region's outlets).
Looking codes up and redeeming are rate-limited per person and per outlet, so codes cannot be guessed.
"""
from flask import Blueprint, abort, current_app, request
from flask_login import current_user

from ..extensions import db, limiter
from ..services import DomainError
from ..services.redemption import find_for_redemption, redeem, staff_outlet_ids
from ..web import render_page
from .access import current_member, require_member

bp = Blueprint("outlet", __name__, url_prefix="/outlet")


@bp.before_request
def guard():
    if (response := require_member()) is not None:
        return response
    if not staff_outlet_ids(db.session, current_member().id):
        abort(403)
    return None


def _per_user() -> str:
    return f"user:{current_user.get_id()}"


def _per_outlet() -> str:
    outlets = sorted(staff_outlet_ids(db.session, current_member().id))
    return f"outlet:{outlets[0]}" if outlets else "outlet:none"


def _user_limit() -> str:
    return current_app.config["REDEEM_RATE_PER_USER"]


def _outlet_limit() -> str:
    return current_app.config["REDEEM_RATE_PER_OUTLET"]


redeem_limits = [limiter.limit(_user_limit, key_func=_per_user), limiter.limit(_outlet_limit, key_func=_per_outlet)]


def rate_limited(view):
    for limit in redeem_limits:
        view = limit(view)
    return view


@bp.get("/redeem")
def redeem_page():
    return render_page("outlet/redeem.html", view=None, error=None)


@bp.get("/redeem/lookup")
@rate_limited
def lookup():
    """The manual-entry (and scanner) lookup: the confirm fragment, or why the code cannot be redeemed."""
    return _confirm(request.args.get("code", ""))


@bp.get("/redeem/<code>")
@rate_limited
def confirm_page(code: str):
    """What the pickup QR opens when scanned with WeChat's own scanner."""
    return _confirm(code)


@bp.post("/redeem/<code>")
@rate_limited
def confirm(code: str):
    try:
        order = redeem(db.session, current_member().id, code)
    except DomainError as exc:
        return render_page("outlet/redeem.html", block="result", view=None, error=exc.message,
                           status_code=exc.status)
    return render_page("outlet/redeem.html", block="result", view=None, error=None, done=order)


def _confirm(code: str):
    try:
        view = find_for_redemption(db.session, current_member().id, code)
    except DomainError as exc:
        return render_page("outlet/redeem.html", block="result", view=None, error=exc.message, code=code,
                           status_code=exc.status)
    return render_page("outlet/redeem.html", block="result", view=view, error=None, code=view.order.pickup_code)
