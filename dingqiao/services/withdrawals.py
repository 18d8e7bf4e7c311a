"""Withdrawals: the amount leaves "available" for "withdrawing" in one conditional update (never overdrawn,
whatever runs at once), then finance pays it out through WeChat — or by hand — or returns it."""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import MONEY_REVIEWERS, AdminUser, LedgerEntry, LedgerKind, User, Wallet, Withdrawal, WithdrawalStatus
from ..models.base import utcnow
from ..money import format_yuan
from ..wechat.pay import PayError, PayGateway
from . import DomainError, Forbidden, NotFound
from .audit import record_audit
from .messages import enqueue_message
from .orders import new_number
from .periods import china_midnight, china_today
from .wallet import post_entry

BPS = 10_000
# 企业付款 answers that certainly mean "nothing was paid". Any other answer (SYSTEMERROR above all) may hide
# a payment: the withdrawal stays APPROVED and is retried with the same number, which WeChat pays at most once.
TRANSFER_NOT_PAID = {"NOTENOUGH", "AMOUNT_LIMIT", "OPENID_ERROR", "PARAM_ERROR", "NO_AUTH", "V2_ACCOUNT_SIMPLE_BAN",
                     "SENDNUM_LIMIT", "NAME_MISMATCH", "MONEY_LIMIT", "FREQ_LIMIT", "CA_ERROR", "SIGN_ERROR",
                     "XML_ERROR", "FATAL_ERROR", "OPENID_INVALID", "RECV_ACCOUNT_NOT_ALLOWED",
                     "PAY_CHANNEL_NOT_ALLOWED"}
MAX_WITHDRAWAL_FEN = 20_000_00  # WeChat's single-transfer ceiling for 企业付款 is ¥20,000


class WithdrawalError(DomainError):
    status = 409


@dataclass(frozen=True)
class WithdrawalRules:
    min_fen: int = 100
    fee_bps: int = 0
    daily_cap_fen: int = 500_000

    @classmethod
    def from_config(cls, config) -> "WithdrawalRules":
        return cls(config["WITHDRAWAL_MIN_FEN"], config["WITHDRAWAL_FEE_BPS"], config["WITHDRAWAL_DAILY_CAP_FEN"])

    def fee_for(self, amount_fen: int) -> int:
        return amount_fen * self.fee_bps // BPS


def parse_yuan(raw: str | None) -> int:
    """"12.3" → 1230 fen, exactly (no float): at most two decimals, digits only."""
    text = (raw or "").strip().replace("¥", "").replace(",", "")
    whole, _, cents = text.partition(".")
    if (not text.isascii() or not whole.isdigit() or len(whole) > 9
            or (cents and (not cents.isdigit() or len(cents) > 2))):
        raise WithdrawalError("请输入正确的金额（最多两位小数）。")
    return int(whole) * 100 + int(cents.ljust(2, "0") if cents else 0)


def request_withdrawal(session: Session, user_id: int, amount_fen: int, rules: WithdrawalRules,
                       now: datetime | None = None) -> Withdrawal:
    now = now or utcnow()
    if amount_fen < rules.min_fen:
        raise WithdrawalError(f"单笔提现至少 {format_yuan(rules.min_fen)}。")
    if amount_fen > MAX_WITHDRAWAL_FEN:
        raise WithdrawalError(f"单笔提现最多 {format_yuan(MAX_WITHDRAWAL_FEN)}。")
    fee = rules.fee_for(amount_fen)
    if fee >= amount_fen:
        raise WithdrawalError("提现金额不足以支付手续费。")
    with write_transaction(session):
        user = session.get(User, user_id)
        if user is None or not user.is_active:
            raise Forbidden("账户不可用。")
        withdrawal = Withdrawal(withdrawal_no=new_number("WD", now), user_id=user_id,
                                wallet_id=0, amount_fen=amount_fen, fee_fen=fee, created_at=now)
        # The balance moves first: the wallet row update is the lock that serialises this user's requests.
        posted = post_entry(session, user_id, LedgerKind.WITHDRAWAL_REQUESTED, available=-amount_fen,
                            withdrawing=amount_fen, needs_available=amount_fen, memo="申请提现")
        withdrawal.wallet_id = posted.wallet_id
        today = session.scalar(
            select(func.coalesce(func.sum(Withdrawal.amount_fen), 0)).where(
                Withdrawal.user_id == user_id, Withdrawal.created_at >= china_midnight(china_today(now)),
                Withdrawal.status.not_in([WithdrawalStatus.REJECTED, WithdrawalStatus.FAILED]))
        )
        if today + amount_fen > rules.daily_cap_fen:
            raise WithdrawalError(f"今日提现额度剩余 {format_yuan(max(rules.daily_cap_fen - today, 0))}。")
        session.add(withdrawal)
        session.flush()
        session.execute(update(LedgerEntry).where(LedgerEntry.id == posted.entry_id)
                        .values(withdrawal_id=withdrawal.id))
    return withdrawal


def approve_withdrawal(session: Session, gateway: PayGateway, admin: AdminUser, withdrawal_id: int,
                       client_ip: str = "127.0.0.1") -> Withdrawal:
    """Pay out through WeChat's transfer to balance. The withdrawal number is the transfer's partner_trade_no,
    so retrying an approval whose answer was lost can never pay twice."""
    _require_finance(admin)
    with write_transaction(session):
        claimed = session.execute(
            update(Withdrawal).where(Withdrawal.id == withdrawal_id, Withdrawal.status == WithdrawalStatus.REQUESTED)
            .values(status=WithdrawalStatus.APPROVED, reviewed_by_admin_id=admin.id, reviewed_at=utcnow(),
                    payout_method="wechat")
        ).rowcount
        withdrawal = session.get(Withdrawal, withdrawal_id)
        if withdrawal is None:
            raise NotFound("提现申请不存在。")
        if not claimed and withdrawal.status != WithdrawalStatus.APPROVED:
            raise WithdrawalError("该提现申请已处理。")
        if claimed and session.scalar(select(Wallet.available_fen).where(Wallet.id == withdrawal.wallet_id)) < 0:
            # A clawback since the request left a receivable: paying now would pay out money owed back.
            raise WithdrawalError("该用户有售后追回的待抵扣金额，余额为负，暂不能打款；可拒绝此申请。")
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="withdrawal.approve",
                     target_type="withdrawal", target_id=withdrawal.withdrawal_no,
                     detail={"amount_fen": withdrawal.amount_fen, "fee_fen": withdrawal.fee_fen})
        if claimed:
            enqueue_message(session, user_id=withdrawal.user_id, event="withdrawal_approved", object_id=withdrawal.id,
                            title="提现审核通过", body=f"您的提现 {format_yuan(withdrawal.amount_fen)} 已审核通过，正在打款。",
                            link="/wallet/")
    openid = session.scalar(select(User.openid).where(User.id == withdrawal.user_id))
    try:
        payment_no = gateway.transfer(partner_trade_no=withdrawal.withdrawal_no, openid=openid,
                                      amount=withdrawal.amount_fen - withdrawal.fee_fen, desc="顶俏收益提现",
                                      client_ip=client_ip)
    except PayError as exc:
        if exc.err_code not in TRANSFER_NOT_PAID:
            # No answer from WeChat: the money may or may not have left. Stay APPROVED; approving again
            # repeats the same transfer number, which WeChat pays at most once.
            raise WithdrawalError(f"微信打款结果未知（{exc.message}），请稍后再次点击同意重试。") from exc
        _finish(session, admin, withdrawal_id, WithdrawalStatus.APPROVED, WithdrawalStatus.FAILED,
                failure_reason=exc.message[:250])
        raise WithdrawalError(f"微信打款失败：{exc.message}，金额已退回用户余额。") from exc
    return _finish(session, admin, withdrawal_id, WithdrawalStatus.APPROVED, WithdrawalStatus.PAID,
                   payment_no=payment_no)


def mark_paid_offline(session: Session, admin: AdminUser, withdrawal_id: int, note: str) -> Withdrawal:
    _require_finance(admin)
    note = " ".join((note or "").split())[:60]
    if not note:
        raise WithdrawalError("请填写线下打款凭证号或说明。")
    return _finish(session, admin, withdrawal_id, WithdrawalStatus.REQUESTED, WithdrawalStatus.PAID,
                   payment_no=f"OFFLINE:{note}", payout_method="offline")


def reject_withdrawal(session: Session, admin: AdminUser, withdrawal_id: int, reason: str) -> Withdrawal:
    _require_finance(admin)
    reason = " ".join((reason or "").split())[:200]
    if not reason:
        raise WithdrawalError("请填写拒绝原因。")
    return _finish(session, admin, withdrawal_id, WithdrawalStatus.REQUESTED, WithdrawalStatus.REJECTED,
                   reject_reason=reason)


def _finish(session: Session, admin: AdminUser, withdrawal_id: int, expected: WithdrawalStatus,
            new: WithdrawalStatus, **values) -> Withdrawal:
    with write_transaction(session):
        now = utcnow()
        extra = {"paid_at": now} if new == WithdrawalStatus.PAID else {}
        if expected == WithdrawalStatus.REQUESTED:
            extra |= {"reviewed_by_admin_id": admin.id, "reviewed_at": now}
        moved = session.execute(
            update(Withdrawal).where(Withdrawal.id == withdrawal_id, Withdrawal.status == expected)
            .values(status=new, **values, **extra)
        ).rowcount
        withdrawal = session.get(Withdrawal, withdrawal_id)
        if withdrawal is None:
            raise NotFound("提现申请不存在。")
        if not moved:
            raise WithdrawalError("该提现申请已处理。")
        amount = withdrawal.amount_fen
        if new == WithdrawalStatus.PAID:
            post_entry(session, withdrawal.user_id, LedgerKind.WITHDRAWAL_PAID, withdrawing=-amount, withdrawn=amount,
                       withdrawal_id=withdrawal.id, memo="提现到账")
            title, body = "提现已到账", f"您的提现 {format_yuan(amount)} 已打款。"
        else:
            post_entry(session, withdrawal.user_id, LedgerKind.WITHDRAWAL_RETURNED, withdrawing=-amount,
                       available=amount, withdrawal_id=withdrawal.id, memo="提现退回")
            reason = values.get("reject_reason") or values.get("failure_reason") or ""
            title, body = "提现未成功", f"您的提现 {format_yuan(amount)} 已退回余额：{reason}"
        enqueue_message(session, user_id=withdrawal.user_id, event=f"withdrawal_{new.value}",
                        object_id=withdrawal.id, title=title, body=body, link="/wallet/")
        record_audit(session, actor_kind="admin", actor_id=admin.id, action=f"withdrawal.{new.value}",
                     target_type="withdrawal", target_id=withdrawal.withdrawal_no,
                     detail={"amount_fen": amount, **{k: str(v) for k, v in values.items()}})
    session.refresh(withdrawal)
    return withdrawal


def _require_finance(admin: AdminUser) -> None:
    if admin.role not in MONEY_REVIEWERS:
        raise Forbidden("只有财务可以审核提现。")
