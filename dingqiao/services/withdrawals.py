"""Withdrawals: the amount leaves "available" for "withdrawing" in one conditional update (never overdrawn,
whatever runs at once), then finance pays it out through WeChat — or by hand — or returns it."""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import MONEY_REVIEWERS, AdminUser, LedgerEntry, LedgerKind, User, Wallet, Withdrawal, WithdrawalStatus
from ..models.base import utcnow
from ..money import format_yuan
from ..wechat.pay import PayGateway, TransferResult, TransferState
from ..wechat.pay_v3 import REAL_NAME_FROM_FEN, BillState, TransferBill
from . import Conflict, Forbidden, NotFound, submissions
from .audit import record_audit
from .messages import enqueue_message
from .orders import new_number
from .payments import record_late_result
from .periods import china_midnight, china_today
from .wallet import post_entry

BPS = 10_000
# Leaving REQUESTED for these starts a payout: the wallet must not be in debt (see _refuse_payout_while_in_debt).
PAYS_OUT = (WithdrawalStatus.APPROVED, WithdrawalStatus.PAID)
TRANSFER_REMARK = "顶俏收益提现"  # what the member reads on the transfer, legacy or 商家转账 (≤ 32 characters)
MAX_WITHDRAWAL_FEN = 20_000_00  # WeChat's single-transfer ceiling for 企业付款 is ¥20,000


class WithdrawalError(Conflict):
    pass


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


@dataclass(frozen=True)
class WithdrawalQuote:
    """What 确认提现 shows before anything moves."""

    amount_fen: int
    fee_fen: int

    @property
    def payout_fen(self) -> int:
        return self.amount_fen - self.fee_fen


def _check_amount(amount_fen: int, rules: WithdrawalRules, payee_name: str) -> int:
    """The rules of one request's amount that need no database; returns its fee."""
    if amount_fen >= REAL_NAME_FROM_FEN and not 2 <= len(payee_name) <= 30:
        raise WithdrawalError(f"单笔 {format_yuan(REAL_NAME_FROM_FEN)} 及以上的提现，微信要求填写收款人的真实姓名。")
    if amount_fen < rules.min_fen:
        raise WithdrawalError(f"单笔提现至少 {format_yuan(rules.min_fen)}。")
    if amount_fen > MAX_WITHDRAWAL_FEN:
        raise WithdrawalError(f"单笔提现最多 {format_yuan(MAX_WITHDRAWAL_FEN)}。")
    fee = rules.fee_for(amount_fen)
    if fee >= amount_fen:
        raise WithdrawalError("提现金额不足以支付手续费。")
    return fee


def _requested_today(session: Session, user_id: int, now: datetime) -> int:
    """Today's (China's day) requests that still count against the daily cap."""
    return session.scalar(
        select(func.coalesce(func.sum(Withdrawal.amount_fen), 0)).where(
            Withdrawal.user_id == user_id, Withdrawal.created_at >= china_midnight(china_today(now)),
            Withdrawal.status.not_in([WithdrawalStatus.REJECTED, WithdrawalStatus.FAILED]))
    )


def withdrawable_fen(session: Session, user_id: int, rules: WithdrawalRules, now: datetime | None = None) -> int:
    """The most one request may take now (全部提现): the available balance, within the single-transfer ceiling
    and what is left of today's cap."""
    available = session.scalar(select(Wallet.available_fen).where(Wallet.user_id == user_id)) or 0
    left_today = rules.daily_cap_fen - _requested_today(session, user_id, now or utcnow())
    return max(min(available, MAX_WITHDRAWAL_FEN, left_today), 0)


def quote_withdrawal(session: Session, user_id: int, amount_fen: int | None, rules: WithdrawalRules,
                     now: datetime | None = None, payee_name: str = "") -> WithdrawalQuote:
    """The amount (None: the withdrawable maximum) and its fee for the member to confirm, refused for the reasons
    ``request_withdrawal`` would refuse it now. Writes nothing; the request checks everything again."""
    most = withdrawable_fen(session, user_id, rules, now)
    if amount_fen is None:
        if most < rules.min_fen:
            raise WithdrawalError(f"可提现金额不足 {format_yuan(rules.min_fen)}，暂不能提现。")
        amount_fen = most
    fee = _check_amount(amount_fen, rules, " ".join((payee_name or "").split()))
    if amount_fen > most:
        raise WithdrawalError(f"本次最多可提现 {format_yuan(most)}。")
    return WithdrawalQuote(amount_fen, fee)


def request_withdrawal(session: Session, user_id: int, amount_fen: int, rules: WithdrawalRules,
                       now: datetime | None = None, payee_name: str = "",
                       submission_key: str | None = None) -> Withdrawal:
    """Move the amount from available to withdrawing and queue the request for finance. A repeat of
    ``submission_key`` (a double tap) answers with the first request and moves nothing."""
    now = now or utcnow()
    payee_name = " ".join((payee_name or "").split())
    fee = _check_amount(amount_fen, rules, payee_name)
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"member:{user_id}", action="withdraw")
        if earlier is not None:
            return _as_it_stands(session, earlier)
        user = session.get(User, user_id)
        if user is None or not user.is_active:
            raise Forbidden("账户不可用。")
        withdrawal = Withdrawal(withdrawal_no=new_number("WD", now), user_id=user_id,
                                wallet_id=0, amount_fen=amount_fen, fee_fen=fee, created_at=now,
                                payee_name=payee_name if amount_fen >= REAL_NAME_FROM_FEN else None)
        # The balance moves first: the wallet row update is the lock that serialises this user's requests.
        posted = post_entry(session, user_id, LedgerKind.WITHDRAWAL_REQUESTED, available=-amount_fen,
                            withdrawing=amount_fen, needs_available=amount_fen, memo="申请提现")
        withdrawal.wallet_id = posted.wallet_id
        today = _requested_today(session, user_id, now)
        if today + amount_fen > rules.daily_cap_fen:
            raise WithdrawalError(f"今日提现额度剩余 {format_yuan(max(rules.daily_cap_fen - today, 0))}。")
        session.add(withdrawal)
        session.flush()
        session.execute(update(LedgerEntry).where(LedgerEntry.id == posted.entry_id)
                        .values(withdrawal_id=withdrawal.id))
        submissions.remember(session, submission_key, withdrawal.id)
    return withdrawal


def approve_withdrawal(session: Session, gateway: PayGateway, admin: AdminUser, withdrawal_id: int,
                       submission_key: str | None = None) -> Withdrawal:
    """Pay out through WeChat: on API v3 a 商家转账 bill the member confirms on their phone (``_pay_by_bill``), on
    v2 the legacy transfer to balance. The withdrawal number is the bill's out_bill_no (the transfer's
    partner_trade_no), sent with the same parameters every time, so approving again after an unknown answer can
    never pay twice. Any answer but a certain one is checked with a query before anything moves. A repeat of
    ``submission_key`` (a double click) calls nobody and answers with the withdrawal as it now stands."""
    _require_finance(admin)
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="withdrawal.approve", target=withdrawal_id)
        if earlier is not None:
            return _as_it_stands(session, earlier)
        withdrawal = session.get(Withdrawal, withdrawal_id)
        if withdrawal is None:
            raise NotFound("提现申请不存在。")
        retry = withdrawal.status == WithdrawalStatus.APPROVED
        by_bill = (withdrawal.payout_method == "wechat_bill") if retry else gateway.api == "v3"
        if withdrawal.status == WithdrawalStatus.REQUESTED:
            withdrawal = _finish(session, admin, withdrawal_id, WithdrawalStatus.REQUESTED,
                                 WithdrawalStatus.APPROVED, payout_method="wechat_bill" if by_bill else "wechat")
        elif not retry:
            raise WithdrawalError("该提现申请已处理。")
        submissions.remember(session, submission_key, withdrawal_id)
    try:
        if by_bill:
            return _pay_by_bill(session, _payout_gateway(gateway, "v3"), admin, withdrawal, retry)
        return _pay_by_transfer(session, _payout_gateway(gateway, "v2"), admin, withdrawal, retry)
    except WithdrawalError:
        # Not paid, or not known: the form's key is let go, so the admin's next click on it (the retry the
        # message asks for) acts again instead of being answered as a repeat.
        with write_transaction(session):
            submissions.forget(session, submission_key)
        raise


def _pay_by_transfer(session: Session, gateway, admin: AdminUser, withdrawal: Withdrawal, retry: bool) -> Withdrawal:
    """API v2's transfer to the member's balance (企业付款到零钱), checked with a query when unclear."""
    withdrawal_id = withdrawal.id
    openid = session.scalar(select(User.openid).where(User.id == withdrawal.user_id))
    result = gateway.transfer(partner_trade_no=withdrawal.withdrawal_no, openid=openid,
                              amount=withdrawal.amount_fen - withdrawal.fee_fen, desc=TRANSFER_REMARK)
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


def _payout_gateway(gateway, api: str):
    """The gateway of the API a payout started on: a transfer exists only there, so no other may stand in."""
    own = gateway.for_api(api, strict=True)
    if own is None:
        setting = "WECHAT_MCH_KEY 与 WECHAT_MCH_CERT_PATH" if api == "v2" else "WECHAT_APIV3_KEY 等 v3 设置"
        raise WithdrawalError(f"这笔提现经微信支付 {api} 打款，但 {api} 未配置（{setting}），无法重试或查询；"
                              "请恢复该设置，或在商户平台核对结果后联系技术处理。")
    return own


def _create_bill(gateway, session: Session, withdrawal: Withdrawal) -> TransferBill:
    """发起转账 for the withdrawal, always with the same parameters (WeChat makes at most one bill per number)."""
    openid = session.scalar(select(User.openid).where(User.id == withdrawal.user_id))
    return gateway.create_transfer_bill(out_bill_no=withdrawal.withdrawal_no, openid=openid or "",
                                        amount=withdrawal.amount_fen - withdrawal.fee_fen, remark=TRANSFER_REMARK,
                                        real_name=withdrawal.payee_name or "")


def _pay_by_bill(session: Session, gateway, admin: AdminUser, withdrawal: Withdrawal, retry: bool) -> Withdrawal:
    """商家转账: make (or, on a retry, make again under the same number) the bill, then record what WeChat says —
    waiting for the member's confirmation, or a certain failure (money back). Unknown answers are asked about."""
    if withdrawal.transfer_package and withdrawal.transfer_state == "WAIT_USER_CONFIRM":
        raise WithdrawalError("已发起微信转账，等待用户在微信中确认收款。")
    bill = _create_bill(gateway, session, withdrawal)
    if bill.state == BillState.UNKNOWN or (retry and bill.state == BillState.NOT_PAID):
        checked = gateway.query_transfer_bill(withdrawal.withdrawal_no)
        if checked.state == BillState.AWAITING_CONFIRMATION and not checked.package_info:
            # The bill exists (so no "not paid" may return the money) but a query never carries the package the
            # member confirms with; the same request again answers it.
            bill = TransferBill(BillState.UNKNOWN, bill.out_bill_no, wechat_state=checked.wechat_state,
                                reason="转账单已建立，尚未取得确认参数")
        elif checked.state != BillState.UNKNOWN:
            bill = checked
        elif bill.state == BillState.NOT_PAID:
            bill = TransferBill(BillState.UNKNOWN, bill.out_bill_no, reason=bill.reason)
    finished = apply_transfer_bill(session, admin, withdrawal.id, bill)
    if bill.state == BillState.UNKNOWN and bill.error == "NOT_ENOUGH":
        raise WithdrawalError(f"{bill.reason}；如不再打款，可点「撤销微信转账」把金额退回用户余额。")
    if bill.state == BillState.UNKNOWN:
        raise WithdrawalError(f"微信转账结果未知（{bill.reason}），请稍后再次点击同意重试。")
    if finished is not None and finished.status == WithdrawalStatus.FAILED:
        raise WithdrawalError(f"微信转账失败：{bill.reason}，金额已退回用户余额。")
    return finished or session.get(Withdrawal, withdrawal.id)


def apply_transfer_bill(session: Session, admin: AdminUser | None, withdrawal_id: int,
                        bill: TransferBill) -> Withdrawal | None:
    """What WeChat says of a withdrawal's bill (its answer, a query, the notify), applied by conditional updates
    so repeated and out-of-order results change nothing twice: waiting → the package for 确认收款 is kept and the
    member told once; paid → PAID with its ledger entry; failed, cancelled or expired → FAILED, money back to the
    wallet."""
    if bill.state == BillState.PAID:
        try:
            return _finish(session, admin, withdrawal_id, WithdrawalStatus.APPROVED, WithdrawalStatus.PAID,
                           payment_no=bill.bill_no or bill.out_bill_no, transfer_state=bill.wechat_state,
                           transfer_package=None)
        except WithdrawalError:
            _report_paid_after_all(session, withdrawal_id, bill.as_transfer_result())
            return None
    if bill.state == BillState.NOT_PAID:
        try:
            return _finish(session, admin, withdrawal_id, WithdrawalStatus.APPROVED, WithdrawalStatus.FAILED,
                           failure_reason=bill.reason[:250], transfer_state=bill.wechat_state or None,
                           transfer_package=None)
        except WithdrawalError:
            return None  # already finished: a repeated or late result
    values = {"transfer_state": bill.wechat_state} if bill.wechat_state else {}
    if bill.package_info:
        values["transfer_package"] = bill.package_info
    if not values:
        return None
    with write_transaction(session):
        first_package = bool(bill.package_info) and session.execute(
            update(Withdrawal).where(Withdrawal.id == withdrawal_id, Withdrawal.status == WithdrawalStatus.APPROVED,
                                     Withdrawal.transfer_package.is_(None)).values(**values)).rowcount
        if not first_package:
            session.execute(update(Withdrawal).where(Withdrawal.id == withdrawal_id,
                                                     Withdrawal.status == WithdrawalStatus.APPROVED).values(**values))
        withdrawal = session.get(Withdrawal, withdrawal_id)
        if first_package and withdrawal is not None:
            enqueue_message(session, user_id=withdrawal.user_id, event="withdrawal_confirm", object_id=withdrawal.id,
                            title="请确认收款",
                            body=f"您的提现 {format_yuan(withdrawal.amount_fen)} 已审核通过，请在 24 小时内到钱包点击「确认收款」。",
                            link="/wallet/", template_data=_message_values(withdrawal, {}))
            record_audit(session, actor_kind="admin" if admin else "system", actor_id=admin.id if admin else None,
                         action="withdrawal.bill_created", target_type="withdrawal",
                         target_id=withdrawal.withdrawal_no, detail={"transfer_bill_no": bill.bill_no})
    session.refresh(withdrawal)
    return withdrawal


def accept_transfer_notification(session: Session, bill: TransferBill) -> bool:
    """A verified 商家转账 notify. False when it does not match our withdrawal (answer FAIL and look)."""
    withdrawal = session.scalar(select(Withdrawal).where(Withdrawal.withdrawal_no == bill.out_bill_no))
    if withdrawal is None or withdrawal.payout_method != "wechat_bill":
        log.warning("transfer notify for unknown bill %s", bill.out_bill_no)
        return True  # nothing of ours to change; answering FAIL would only make WeChat resend it
    openid = session.scalar(select(User.openid).where(User.id == withdrawal.user_id))
    if (bill.amount_fen is not None and bill.amount_fen != withdrawal.amount_fen - withdrawal.fee_fen) or (
            bill.openid and bill.openid != openid):
        record_late_result(session, reference=withdrawal.withdrawal_no, wechat_id=bill.bill_no or bill.out_bill_no,
                           amount_fen=bill.amount_fen or 0,
                           detail=f"微信转账通知与提现 {withdrawal.withdrawal_no} 的金额或收款人不符，未处理，请核对")
        return False
    apply_transfer_bill(session, None, withdrawal.id, bill)
    return True


def check_transfer(session: Session, gateway, user_id: int, withdrawal_no: str) -> Withdrawal:
    """The member came back from 确认收款: ask WeChat about their bill (the page's own callback is not proof of
    payment) and apply the answer. Someone else's withdrawal is not found."""
    withdrawal = session.scalar(select(Withdrawal).where(Withdrawal.withdrawal_no == withdrawal_no,
                                                         Withdrawal.user_id == user_id))
    if withdrawal is None:
        raise NotFound("提现记录不存在。")
    if withdrawal.status == WithdrawalStatus.APPROVED and withdrawal.payout_method == "wechat_bill":
        bill = _payout_gateway(gateway, "v3").query_transfer_bill(withdrawal_no)
        apply_transfer_bill(session, None, withdrawal.id, bill)
        session.refresh(withdrawal)
    return withdrawal


def cancel_transfer(session: Session, gateway, admin: AdminUser, withdrawal_id: int,
                    not_found_after: timedelta = timedelta(minutes=10)) -> Withdrawal:
    """Finance withdraws a bill the member has not confirmed (撤销转账); the money goes back to the wallet once
    WeChat says the bill is cancelled (now, by the notify, or the cron) — or that it never made one, asked at
    least ``not_found_after`` after the approval (a bill may take a moment to appear)."""
    _require_finance(admin)
    withdrawal = session.get(Withdrawal, withdrawal_id)
    if withdrawal is None:
        raise NotFound("提现申请不存在。")
    if withdrawal.status != WithdrawalStatus.APPROVED or withdrawal.payout_method != "wechat_bill":
        raise WithdrawalError("只有等待用户确认收款的微信转账可以撤销。")
    gateway = _payout_gateway(gateway, "v3")
    bill = gateway.cancel_transfer_bill(withdrawal.withdrawal_no)
    if bill.state == BillState.UNKNOWN:
        bill = gateway.query_transfer_bill(withdrawal.withdrawal_no)
    if (bill.state == BillState.UNKNOWN and bill.error == "NOT_FOUND" and not withdrawal.transfer_package
            and withdrawal.reviewed_at <= utcnow() - not_found_after):
        # WeChat never made a bill under this number (refused for a short operating account, say): nothing can be
        # paid under it unless we send it again, so the money goes back. Should a lost request surface after all,
        # its payment is handed to finance as a late result.
        bill = TransferBill(BillState.NOT_PAID, withdrawal.withdrawal_no, reason="未在微信建立转账，已撤销")
    apply_transfer_bill(session, admin, withdrawal_id, bill)
    session.refresh(withdrawal)
    if withdrawal.status == WithdrawalStatus.APPROVED:
        raise WithdrawalError(f"撤销已提交，微信处理中（{bill.reason or bill.wechat_state}），结果稍后自动更新。")
    return withdrawal


log = logging.getLogger(__name__)


def reconcile_withdrawals(session: Session, gateway: PayGateway, approved_before: datetime,
                          batch: int = 200) -> int:
    """For cron: ask WeChat about payouts approved before ``approved_before`` whose outcome is unknown — legacy
    transfers, and 商家转账 bills (waiting for the member, who may never confirm: WeChat closes those after 24
    hours) — and finish those it is certain about (paid, or certainly not paid: the money goes back). Returns how
    many were finished."""
    due = session.execute(
        select(Withdrawal.id, Withdrawal.withdrawal_no, Withdrawal.payout_method)
        .where(Withdrawal.status == WithdrawalStatus.APPROVED,
               Withdrawal.payout_method.in_(["wechat", "wechat_bill"]),
               Withdrawal.reviewed_at <= approved_before)
        .order_by(Withdrawal.reviewed_at).limit(batch)
    ).all()
    finished = 0
    for withdrawal_id, withdrawal_no, method in due:
        own = gateway.for_api("v3" if method == "wechat_bill" else "v2", strict=True)
        if own is None:
            log.warning("reconcile: withdrawal %s was paid out through an API no longer configured", withdrawal_no)
            continue
        if method == "wechat_bill":
            try:
                finished += _reconcile_bill(session, own, withdrawal_id, withdrawal_no)
            except Exception:  # noqa: BLE001 - one payout that cannot be finished must not stop the others
                session.rollback()
                log.exception("reconcile: withdrawal %s could not be finished", withdrawal_no)
            continue
        result = own.query_transfer(withdrawal_no)
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


def _reconcile_bill(session: Session, gateway, withdrawal_id: int, withdrawal_no: str) -> int:
    """One bill for the cron: its state from a query; a bill waiting for the member whose package never reached us
    (a lost answer) is asked for again with the same request, so the member can confirm it. 1 when finished."""
    bill = gateway.query_transfer_bill(withdrawal_no)
    withdrawal = session.get(Withdrawal, withdrawal_id)
    if bill.state == BillState.AWAITING_CONFIRMATION and not bill.package_info and not withdrawal.transfer_package:
        again = _create_bill(gateway, session, withdrawal)
        if again.package_info:
            bill = again
    session.rollback()  # end the read: the result is applied in its own transaction
    done = apply_transfer_bill(session, None, withdrawal_id, bill)
    return int(bill.state in (BillState.PAID, BillState.NOT_PAID) and done is not None)


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


def mark_paid_offline(session: Session, admin: AdminUser, withdrawal_id: int, note: str,
                      submission_key: str | None = None) -> Withdrawal:
    _require_finance(admin)
    note = " ".join((note or "").split())[:60]
    if not note:
        raise WithdrawalError("请填写线下打款凭证号或说明。")
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="withdrawal.offline", target=withdrawal_id)
        if earlier is not None:
            return _as_it_stands(session, earlier)
        done = _finish(session, admin, withdrawal_id, WithdrawalStatus.REQUESTED, WithdrawalStatus.PAID,
                       payment_no=f"OFFLINE:{note}", payout_method="offline")
        submissions.remember(session, submission_key, done.id)
    return done


def reject_withdrawal(session: Session, admin: AdminUser, withdrawal_id: int, reason: str,
                      submission_key: str | None = None) -> Withdrawal:
    _require_finance(admin)
    reason = " ".join((reason or "").split())[:200]
    if not reason:
        raise WithdrawalError("请填写拒绝原因。")
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="withdrawal.reject", target=withdrawal_id)
        if earlier is not None:
            return _as_it_stands(session, earlier)
        done = _finish(session, admin, withdrawal_id, WithdrawalStatus.REQUESTED, WithdrawalStatus.REJECTED,
                       reject_reason=reason)
        submissions.remember(session, submission_key, done.id)
    return done


def _as_it_stands(session: Session, withdrawal_id: int) -> Withdrawal:
    return submissions.first_result(session, Withdrawal, withdrawal_id)


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
                        object_id=withdrawal.id, title=title, body=body, link="/wallet/",
                        template_data=_message_values(withdrawal, values))
        action = "withdrawal.approve" if new == WithdrawalStatus.APPROVED else f"withdrawal.{new.value}"
        record_audit(session, actor_kind="admin" if admin else "system", actor_id=admin.id if admin else None,
                     action=action, target_type="withdrawal", target_id=withdrawal.withdrawal_no,
                     detail={"amount_fen": amount, "fee_fen": withdrawal.fee_fen,
                             **{k: str(v) for k, v in values.items()}})
    session.refresh(withdrawal)
    return withdrawal


def _message_values(withdrawal: Withdrawal, values: dict) -> dict:
    """What a withdrawal's template message can show (services.message_templates.EVENT_VALUES)."""
    reason = values.get("reject_reason") or values.get("failure_reason") or ""
    return {"withdrawal_no": withdrawal.withdrawal_no, "amount": withdrawal.amount_fen,
            **({"reason": reason} if reason else {})}


def _report_paid_after_all(session: Session, withdrawal_id: int, result: TransferResult) -> None:
    """WeChat paid a transfer whose withdrawal is no longer waiting for it — its money went back to the wallet
    on an earlier "not paid" (a query racing a retry of the same number): finance must reconcile it."""
    withdrawal = session.get(Withdrawal, withdrawal_id)
    if withdrawal is not None and withdrawal.status != WithdrawalStatus.PAID:
        record_late_result(session, reference=withdrawal.withdrawal_no,
                           wechat_id=result.payment_no or withdrawal.withdrawal_no,
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
