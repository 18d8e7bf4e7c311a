"""我的钱包: balances, earnings detail by kind and month, withdrawals."""
from flask import Blueprint, current_app, jsonify, request, session, url_for
from sqlalchemy import select

from ...extensions import db, limiter
from ...models import CommissionKind, CommissionLine, Order, User, Withdrawal
from ...services.redemption import mask_name
from ...services.wallet import earnings, earnings_overview, month_choices, parse_month, wallet_view
from ...services.accounts import normalise_mobile, set_member_phone
from ...services.submissions import FIELD_NAME as SUBMISSION_KEY
from ...services.withdrawals import (
    WithdrawalRules,
    check_transfer,
    parse_yuan,
    quote_withdrawal,
    request_withdrawal,
)
from ...wechat import pay_gateways, transfer_merchant
from ...web import redirect_after_post, render_page
from ..common import current_member, owned_or_404, require_member

bp = Blueprint("wallet", __name__, url_prefix="/wallet")
bp.before_request(require_member)


# After a request: shown once on the wallet it redirects to.
NOTICE_KEY = "wallet_notice"
REQUESTED_NOTICE = "提现申请已提交，预计 1 个工作日内审核；审核通过后请在 24 小时内到这里点「确认收款」。"


@bp.get("/")
def index():
    return _wallet_page(notice=session.pop(NOTICE_KEY, ""))


def _wallet_page(*, block: str = "earnings", **extra):
    member = current_member()
    kind = request.args.get("kind", "")
    month_raw = request.args.get("month", "")
    lines = earnings(db.session, member.id, kind=kind or None, month=parse_month(month_raw))
    withdrawals = db.session.scalars(
        select(Withdrawal).where(Withdrawal.user_id == member.id).order_by(Withdrawal.id.desc()).limit(20)
    ).all()
    return render_page(
        "wallet/index.html", block=block, wallet=wallet_view(db.session, member.id), lines=lines, withdrawals=withdrawals,
        kinds=list(CommissionKind), kind=kind, month=month_raw, months=month_choices(), rules=WithdrawalRules.from_config(current_app.config),
        merchant=transfer_merchant(current_app.config), needs_phone=not member.phone, **extra,
    )


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
    payee_name = request.form.get("payee_name", "")[:64]
    phone = normalise_mobile(request.form.get("phone")) if not member.phone or request.form.get("phone") else ""
    amount = None if request.form.get("fill") == "max" else parse_yuan(request.form.get("amount"))
    quote = quote_withdrawal(db.session, member.id, amount, WithdrawalRules.from_config(current_app.config),
                             payee_name=payee_name)
    return _wallet_page(block="withdraw_form", quote=quote, phone=phone, payee_name=payee_name)


@bp.post("/withdrawals")
def withdraw():
    amount = parse_yuan(request.form.get("amount"))
    member, phone = current_member(), request.form.get("phone")
    # Finance may need to call about a payout. A repeated post carries the number just stored: nothing to change.
    if not member.phone or (phone and normalise_mobile(phone) != member.phone):
        set_member_phone(db.session, member.id, phone)
    request_withdrawal(db.session, member.id, amount, WithdrawalRules.from_config(current_app.config),
                       payee_name=request.form.get("payee_name", "")[:64],
                       submission_key=request.form.get(SUBMISSION_KEY))
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
    line = owned_or_404(CommissionLine, CommissionLine.beneficiary_user_id, current_member().id, id=line_id)
    order = db.session.get(Order, line.order_id)
    buyer = db.session.get(User, order.user_id)
    return render_page("wallet/earning.html", line=line, order=order, buyer_name=mask_name(buyer.nickname))
