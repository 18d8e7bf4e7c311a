"""A member seen by the operations team: identity, upline, team; relation correction; disable/enable.
Any admin may disable or enable; the relation, which decides where future commissions go, only finance or the
superadmin may correct (the binding service refuses anyone else). The services audit every change."""
from flask import Blueprint, render_template, session, url_for
from flask_wtf import FlaskForm

from ...extensions import db
from ...models import MONEY_REVIEWERS
from ...services import DomainError
from ...services.accounts import member_overview, set_member_active
from ...services.referrals import CORRECTION_NEEDS_FINANCE, REFUSALS, correct_upline
from ...web import domain_error_status, redirect_after_post
from ..common import current_admin, require_admin
from .forms import ActiveForm, UplineForm

bp = Blueprint("admin_members", __name__, url_prefix="/admin/members")
bp.before_request(require_admin())

NOTICE_KEY = "member_notice"


@bp.get("/<int:user_id>")
def detail(user_id: int):
    return _detail_page(user_id, notice=session.pop(NOTICE_KEY, ""))


@bp.post("/<int:user_id>/upline")
def upline(user_id: int):
    form = UplineForm()
    try:
        binding = correct_upline(db.session, current_admin(), user_id, form.code.data or "", form.reason.data or "")
    except DomainError as exc:
        return _detail_page(user_id, error=exc.message, status=domain_error_status(exc), form=form, typed_into="upline")
    session[NOTICE_KEY] = "已改绑推荐人。" if binding else "已解除推荐关系，该会员现在没有推荐人。"
    return redirect_after_post(url_for("admin_members.detail", user_id=user_id))


@bp.post("/<int:user_id>/active")
def active(user_id: int):
    form = ActiveForm()
    if not form.validate():
        return _detail_page(user_id, status=400, form=form, typed_into="active")
    enable = form.active.data == "1"
    try:
        changed = set_member_active(db.session, current_admin(), user_id, enable, form.reason.data or "")
    except DomainError as exc:
        return _detail_page(user_id, error=exc.message, status=domain_error_status(exc), form=form, typed_into="active")
    if changed:
        session[NOTICE_KEY] = "已启用该会员账号。" if enable else "已停用该会员账号，其登录已立即失效。"
    else:
        session[NOTICE_KEY] = "该会员账号已是启用状态，未做改动。" if enable else "该会员账号已是停用状态，未做改动。"
    return redirect_after_post(url_for("admin_members.detail", user_id=user_id))


def _detail_page(user_id: int, *, notice: str = "", error: str = "", status: int = 200,
                 form: FlaskForm | None = None, typed_into: str = ""):
    """The detail page; after a refused form (``typed_into`` names it), again with the service's message, the
    form's own problems next to their fields and what was typed. A missing member is the service's NotFound:
    a 404."""
    admin = current_admin()
    return render_template("admin/members/detail.html", admin=admin,
                           overview=member_overview(db.session, user_id), refusals=REFUSALS, notice=notice,
                           error=error, field_errors=form.errors if form else {},
                           typed={name: value or "" for name, value in (form.data if form else {}).items()},
                           typed_into=typed_into,
                           may_correct_upline=admin.role in MONEY_REVIEWERS,
                           correction_needs_finance=CORRECTION_NEEDS_FINANCE), status
