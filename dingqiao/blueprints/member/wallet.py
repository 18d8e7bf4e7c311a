"""我的钱包: balances, earnings detail by kind and month, withdrawals."""
from flask import Blueprint, current_app, jsonify, request, session, url_for

from ...extensions import db, limiter
from ...forms import refusal_status
from ...models import CommissionKind
from ...services import DomainError
from ...services.accounts import set_member_phone
from ...services.redemption import mask_name
from ...services.wallet import (
    earning_detail,
    earnings,
    earnings_overview,
    month_choices,
    parse_month,
    recent_withdrawals,
    wallet_view,
)
from ...services.withdrawals import WithdrawalRules, check_transfer, quote_withdrawal, request_withdrawal
from ...wechat import pay_gateways, transfer_merchant
from ...web import domain_error_status, redirect_after_post, render_page
from ..common import current_member, require_member
from .forms import WithdrawalForm

bp = Blueprint("wallet", __name__, url_prefix="/wallet")
bp.before_request(require_member)


# After a request: shown once on the wallet it redirects to.
NOTICE_KEY = "wallet_notice"
REQUESTED_NOTICE = "提现申请已提交，预计 1 个工作日内审核；审核通过后请在 24 小时内到这里点「确认收款」。"


@bp.get("/")
def index():
    return _wallet_page(notice=session.pop(NOTICE_KEY, ""))


def _wallet_page(*, block: str = "earnings", status_code: int = 200, **extra):
    member = current_member()
    kind = request.args.get("kind", "")
    month_raw = request.args.get("month", "")
    lines = earnings(db.session, member.id, kind=kind or None, month=parse_month(month_raw))
    extra.setdefault("form", WithdrawalForm(formdata=None, needs_phone=not member.phone))
    return render_page(
        "wallet/index.html", block=block, status_code=status_code, wallet=wallet_view(db.session, member.id),
        lines=lines, withdrawals=recent_withdrawals(db.session, member.id), kinds=list(CommissionKind), kind=kind,
        month=month_raw, months=month_choices(), rules=_rules(), merchant=transfer_merchant(current_app.config),
        needs_phone=not member.phone, **extra,
    )


def _rules() -> WithdrawalRules:
    return WithdrawalRules.from_config(current_app.config)


def _refused(form: WithdrawalForm, status: int | None = None):
    """The amount form again, each refusal next to its field and what was typed kept."""
    return _wallet_page(block="withdraw_form", status_code=status or refusal_status(form), form=form)


@bp.get("/earnings.json")
def earnings_json():
    """The wallet's charts: earnings by kind, and by month and kind."""
    response = jsonify(earnings_overview(db.session, current_member().id))
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.post("/withdrawals/review")
def review_withdrawal():
    """提现 (or 全部提现): the amount and its fee to confirm, in place of the form; nothing moves yet."""
    member = current_member()
    form = WithdrawalForm(needs_phone=not member.phone)
    if not form.validate():
        return _refused(form)
    try:
        quote = quote_withdrawal(db.session, member.id, form.amount.value, _rules(), payee_name=form.payee_name.data)
    except DomainError as exc:  # too little, too much today, a name needed…: said where the amount is typed
        form.amount.errors = [exc.message]
        return _refused(form, domain_error_status(exc))
    return _wallet_page(block="withdraw_form", quote=quote, phone=form.phone.value or "",
                        payee_name=form.payee_name.data)


@bp.post("/withdrawals")
def withdraw():
    member = current_member()
    form = WithdrawalForm(needs_phone=not member.phone)
    if not form.validate():
        return _refused(form)
    # Finance may need to call about a payout. A repeated post carries the number just stored: nothing to change.
    if form.phone.value and form.phone.value != member.phone:
        set_member_phone(db.session, member.id, form.phone.value)
    request_withdrawal(db.session, member.id, form.amount.value, _rules(), payee_name=form.payee_name.data,
                       submission_key=form.key)
    session[NOTICE_KEY] = REQUESTED_NOTICE
    return redirect_after_post(url_for("wallet.index"))


def _transfer_check_rate() -> str:
    return current_app.config["TRANSFER_CHECK_RATE"]


@bp.post("/withdrawals/<withdrawal_no>/check")
@limiter.limit(_transfer_check_rate, key_func=lambda: f"member:{current_member().id}")
def check_withdrawal(withdrawal_no: str):
    """After 确认收款 (or 刷新状态): WeChat is asked about the member's own bill; the wallet shows the answer."""
    check_transfer(db.session, pay_gateways(current_app), current_member().id, withdrawal_no[:32])
    return redirect_after_post(url_for("wallet.index"))


@bp.get("/earnings/<int:line_id>")
def earning(line_id: int):
    """One line of 收益明细 with its order, showing the buyer only as a masked nickname."""
    detail = earning_detail(db.session, current_member().id, line_id)
    return render_page("wallet/earning.html", line=detail.line, order=detail.order,
                       buyer_name=mask_name(detail.buyer_nickname))
