"""Withdrawals: the amount leaves "available" for "withdrawing" in one conditional update (never overdrawn,
whatever runs at once), then finance pays it out through WeChat — or by hand — or returns it."""
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import MONEY_REVIEWERS, AdminUser, LedgerEntry, LedgerKind, User, Wallet, Withdrawal, WithdrawalStatus
from ..models.base import utcnow
from ..money import format_yuan
from ..wechat.pay import PayGateway, TransferResult, TransferState
from . import DomainError, Forbidden, NotFound
from .audit import record_audit
from .messages import enqueue_message
from .orders import new_number
from .payments import record_late_result
from .periods import china_midnight, china_today
from .wallet import post_entry

BPS = 10_000
# Leaving REQUESTED for these starts a payout: the wallet must not be in debt (see _refuse_payout_while_in_debt).
PAYS_OUT = (WithdrawalStatus.APPROVED, WithdrawalStatus.PAID)
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


def approve_withdrawal(session: Session, gateway: PayGateway, admin: AdminUser, withdrawal_id: int) -> Withdrawal:
    """Pay out through WeChat's transfer to balance. The withdrawal number is the transfer's partner_trade_no,
    sent with the same parameters every time, so approving again after an unknown answer can never pay twice.
    Any answer but a payment or a certain "not paid" is checked with a transfer query before anything moves."""
    _require_finance(admin)
    withdrawal = session.get(Withdrawal, withdrawal_id)
    if withdrawal is None:
        raise NotFound("提现申请不存在。")
    retry = withdrawal.status == WithdrawalStatus.APPROVED
    if withdrawal.status == WithdrawalStatus.REQUESTED:
        withdrawal = _finish(session, admin, withdrawal_id, WithdrawalStatus.REQUESTED, WithdrawalStatus.APPROVED,
                             payout_method="wechat")
    elif not retry:
        raise WithdrawalError("该提现申请已处理。")
    openid = session.scalar(select(User.openid).where(User.id == withdrawal.user_id))
    result = gateway.transfer(partner_trade_no=withdrawal.withdrawal_no, openid=openid,
                              amount=withdrawal.amount_fen - withdrawal.fee_fen, desc="顶俏收益提现")
    # An unknown answer is asked about. So is a retry's "not paid": it speaks only for this attempt, and an
    # earlier one whose answer was lost may have paid (a changed certificate or key makes a retry fail at once).
    if result.state == TransferState.UNKNOWN or (retry and result.state == TransferState.NOT_PAID):
        checked = gateway.query_transfer(withdrawal.withdrawal_no)
        if checked.state != TransferState.UNKNOWN:
            result = checked
        elif result.state == TransferState.NOT_PAID:
            result = TransferResult(TransferState.UNKNOWN, reason=result.reason)
    finished = _apply_transfer_result(session, admin, withdrawal_id, result)
    if result.state == TransferState.UNKNOWN:
        # The money may or may not have left. Stay APPROVED; approving again repeats the same transfer, which
        # WeChat pays at most once, and the cron asks WeChat meanwhile.
        raise WithdrawalError(f"微信打款结果未知（{result.reason}），请稍后再次点击同意重试。")
    if finished.status == WithdrawalStatus.FAILED:
        raise WithdrawalError(f"微信打款失败：{result.reason}，金额已退回用户余额。")
    return finished


log = logging.getLogger(__name__)


def reconcile_withdrawals(session: Session, gateway: PayGateway, approved_before: datetime,
                          batch: int = 200) -> int:
    """For cron: ask WeChat about transfers approved before ``approved_before`` whose outcome is unknown, and
    finish those it is certain about (paid, or certainly not paid: the money goes back). Returns how many."""
    due = session.execute(
        select(Withdrawal.id, Withdrawal.withdrawal_no)
        .where(Withdrawal.status == WithdrawalStatus.APPROVED, Withdrawal.payout_method == "wechat",
               Withdrawal.reviewed_at <= approved_before)
        .order_by(Withdrawal.reviewed_at).limit(batch)
    ).all()
    finished = 0
    for withdrawal_id, withdrawal_no in due:
        result = gateway.query_transfer(withdrawal_no)
        if result.state != TransferState.UNKNOWN:
            try:
                _apply_transfer_result(session, None, withdrawal_id, result)
                finished += 1
            except WithdrawalError:
                pass  # finished by an approval at the same moment
            except Exception:  # noqa: BLE001 - one payout that cannot be finished must not stop the others
                session.rollback()
                log.exception("reconcile: withdrawal %s could not be finished", withdrawal_no)
    return finished


def _apply_transfer_result(session: Session, admin: AdminUser | None, withdrawal_id: int,
                           result: TransferResult) -> Withdrawal | None:
    if result.state == TransferState.PAID:
        try:
            return _finish(session, admin, withdrawal_id, WithdrawalStatus.APPROVED, WithdrawalStatus.PAID,
                           payment_no=result.payment_no)
        except WithdrawalError:
            _report_paid_after_all(session, withdrawal_id, result)
            raise
    if result.state == TransferState.NOT_PAID:
        return _finish(session, admin, withdrawal_id, WithdrawalStatus.APPROVED, WithdrawalStatus.FAILED,
                       failure_reason=result.reason[:250])
    return None


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


def _finish(session: Session, admin: AdminUser | None, withdrawal_id: int, expected: WithdrawalStatus,
            new: WithdrawalStatus, **values) -> Withdrawal:
    """Move a withdrawal on, with its ledger entry, message and audit row, in one transaction. ``admin`` None:
    the cron, acting on WeChat's answer."""
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
        if expected == WithdrawalStatus.REQUESTED and new in PAYS_OUT:
            _refuse_payout_while_in_debt(session, withdrawal)
        amount = withdrawal.amount_fen
        if new == WithdrawalStatus.APPROVED:
            title, body = "提现审核通过", f"您的提现 {format_yuan(amount)} 已审核通过，正在打款。"
        elif new == WithdrawalStatus.PAID:
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
        action = "withdrawal.approve" if new == WithdrawalStatus.APPROVED else f"withdrawal.{new.value}"
        record_audit(session, actor_kind="admin" if admin else "system", actor_id=admin.id if admin else None,
                     action=action, target_type="withdrawal", target_id=withdrawal.withdrawal_no,
                     detail={"amount_fen": amount, "fee_fen": withdrawal.fee_fen,
                             **{k: str(v) for k, v in values.items()}})
    session.refresh(withdrawal)
    return withdrawal


def _report_paid_after_all(session: Session, withdrawal_id: int, result: TransferResult) -> None:
    """WeChat paid a transfer whose withdrawal is no longer waiting for it — its money went back to the wallet
    on an earlier "not paid" (a query racing a retry of the same number): finance must reconcile it."""
    withdrawal = session.get(Withdrawal, withdrawal_id)
    if withdrawal is not None and withdrawal.status != WithdrawalStatus.PAID:
        record_late_result(session, reference=withdrawal.withdrawal_no, wechat_id=result.payment_no or withdrawal.withdrawal_no,
                           amount_fen=withdrawal.amount_fen - withdrawal.fee_fen,
                           detail=f"微信已打款 {withdrawal.withdrawal_no}，但系统中该提现为「{withdrawal.status}」，请核对用户余额")


def _refuse_payout_while_in_debt(session: Session, withdrawal: Withdrawal) -> None:
    """The one rule before any payout starts (WeChat transfer or offline): a clawback since the request left
    the wallet negative — a receivable — so paying now would pay out money the member owes back. Read inside
    the transaction that moves the withdrawal, after its row is updated."""
    if session.scalar(select(Wallet.available_fen).where(Wallet.id == withdrawal.wallet_id)) < 0:
        raise WithdrawalError("该用户有售后追回的待抵扣金额，余额为负，暂不能打款；可拒绝此申请。")


def _require_finance(admin: AdminUser) -> None:
    if admin.role not in MONEY_REVIEWERS:
        raise Forbidden("只有财务可以审核提现。")
