"""The outlet's own pages.

- Scan or type a pickup code, see the order, tap to hand it over (核销), and the outlet's orders: open to the
  owner and staff of an outlet and to the owner of a factory store (for its region's outlets). Looking codes
  up and redeeming are rate-limited per person and per outlet, so codes cannot be guessed.
- Staff (核销员) management and the dashboard: the owner only.
- Joining as staff through an invite link: any logged-in member holding the link.
"""
import base64
import io

import qrcode
from flask import Blueprint, abort, current_app, g, jsonify, request, url_for

from ...extensions import db, limiter
from ...forms import DateRangeForm
from ...services import DomainError
from ...services.dashboards import outlet_summary, outlet_trend
from ...services.outlets import outlet_owned_by
from ...services.redemption import find_for_redemption, mask_name, outlet_orders, redeem, staff_outlet_ids
from ...services.staff import accept_invite, create_invite, invite_preview, remove_staff, staff_of
from ...services.team import team_board
from ...web import domain_error_status, public_url, redirect_after_post, render_page
from ..common import current_member, require_member
from .forms import InviteForm, JoinForm, RedeemForm, RedeemLookupForm, RemoveStaffForm

bp = Blueprint("outlet", __name__, url_prefix="/outlet")

OWNER_ONLY = {"outlet.staff", "outlet.invite", "outlet.remove", "outlet.dashboard", "outlet.dashboard_json"}
ANY_MEMBER = {"outlet.join", "outlet.join_confirm"}


@bp.before_request
def guard():
    if (response := require_member()) is not None:
        return response
    if request.endpoint in ANY_MEMBER:
        return None
    if request.endpoint in OWNER_ONLY:
        g.outlet = outlet_owned_by(db.session, current_member().id)
        if g.outlet is None:
            abort(403)
        return None
    g.outlet_ids = staff_outlet_ids(db.session, current_member().id)  # read once per request
    if not g.outlet_ids:
        abort(403)
    return None


def _per_user() -> str:
    # The person, not the login (get_id() names a login session): a second login gets no second budget.
    return f"user:{current_member().id}"


def _per_outlet() -> str:
    outlets = sorted(g.outlet_ids)
    return f"outlet:{outlets[0]}" if outlets else "outlet:none"


def _user_limit() -> str:
    return current_app.config["REDEEM_RATE_PER_USER"]


def _outlet_limit() -> str:
    return current_app.config["REDEEM_RATE_PER_OUTLET"]


# One budget across the lookup, the scanned link and the redeem button (not three times the limit).
redeem_limits = [limiter.shared_limit(_user_limit, scope="pickup-code-user", key_func=_per_user),
                 limiter.shared_limit(_outlet_limit, scope="pickup-code-outlet", key_func=_per_outlet)]


def rate_limited(view):
    for limit in redeem_limits:
        view = limit(view)
    return view


@bp.get("/redeem")
def redeem_page():
    return render_page("outlet/redeem.html", view=None, error=None, form=RedeemLookupForm(formdata=None))


@bp.get("/redeem/lookup")
@rate_limited
def lookup():
    """The manual-entry (and scanner) lookup: the confirm fragment, or why the code cannot be redeemed."""
    form = RedeemLookupForm(request.args)
    if not form.validate():
        return render_page("outlet/redeem.html", block="result", view=None, error=form.first_error(), form=form,
                           code=form.code.data, status_code=form.refusal_status)
    return _confirm(form.code.data, form)


@bp.get("/redeem/<code>")
@rate_limited
def confirm_page(code: str):
    """What the pickup QR opens when scanned with WeChat's own scanner."""
    return _confirm(code)


@bp.post("/redeem/<code>")
@rate_limited
def confirm(code: str):
    form = RedeemForm()
    form.validate_on_submit()  # nothing to refuse: the key is optional, the code is the URL's
    try:
        order = redeem(db.session, current_member().id, code, submission_key=form.submission_key.data)
    except DomainError as exc:
        return render_page("outlet/redeem.html", block="result", view=None, error=exc.message,
                           status_code=domain_error_status(exc))
    return render_page("outlet/redeem.html", block="result", view=None, error=None, done=order)


def _confirm(code: str, form: RedeemLookupForm | None = None):
    form = form or RedeemLookupForm(formdata=None, code=code)
    try:
        view = find_for_redemption(db.session, current_member().id, code)
    except DomainError as exc:
        return render_page("outlet/redeem.html", block="result", view=None, error=exc.message, code=code, form=form,
                           status_code=domain_error_status(exc))
    return render_page("outlet/redeem.html", block="result", view=view, error=None, code=view.order.pickup_code,
                       form=form)


@bp.get("/orders")
def orders():
    """Orders to hand over at the outlets this person serves, and the latest collected ones."""
    found = outlet_orders(db.session, g.outlet_ids)
    return render_page("outlet/orders.html", waiting=found.waiting, collected=found.collected, mask=mask_name)


@bp.get("/staff")
def staff():
    outlet = g.outlet
    return render_page("outlet/staff.html", outlet=outlet, staff=staff_of(db.session, outlet.id), invite=None)


@bp.post("/staff/invite")
def invite():
    """A fresh one-time link as a QR code; shown once, here (only its hash is stored)."""
    outlet = g.outlet
    InviteForm().validate_on_submit()  # the CSRF token only, checked for every POST already
    created, token = create_invite(db.session, current_member().id)
    link = public_url(url_for("outlet.join", token=token))
    buffer = io.BytesIO()
    qrcode.make(link, box_size=8, border=2).save(buffer, format="PNG")
    qr = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    response = render_page("outlet/staff.html", block="invite", outlet=outlet, staff=staff_of(db.session, outlet.id),
                           invite={"link": link, "qr": qr, "expires_at": created.expires_at})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/staff/<int:staff_id>/remove")
def remove(staff_id: int):
    RemoveStaffForm().validate_on_submit()  # the CSRF token only; the row is the URL's
    remove_staff(db.session, current_member().id, staff_id)
    return redirect_after_post(url_for("outlet.staff"))


@bp.get("/join/<token>")
def join(token: str):
    """What the invite QR opens: who invites, and a button to accept."""
    return render_page("outlet/join.html", token=token, outlet=invite_preview(db.session, token))


@bp.post("/join/<token>")
def join_confirm(token: str):
    JoinForm().validate_on_submit()  # the CSRF token only; the invite is the URL's
    accept_invite(db.session, current_member().id, token)
    return redirect_after_post(url_for("outlet.redeem_page"))


@bp.get("/dashboard")
def dashboard():
    outlet = g.outlet
    form = DateRangeForm(request.args)
    buckets = form.buckets()
    return render_page("outlet/dashboard.html", outlet=outlet, figures=outlet_summary(db.session, outlet),
                       board=team_board(db.session, outlet.owner_user_id), buckets=buckets, range_form=form)


@bp.get("/dashboard.json")
def dashboard_json():
    response = jsonify(outlet_trend(db.session, g.outlet, DateRangeForm(request.args).buckets()))
    response.headers["Cache-Control"] = "private, no-cache"
    return response
