"""商家转账 (WeChat Pay API v3's transfer bills) for withdrawals: the bill made on approval (or made again under the
same number), which the member confirms on their phone (确认收款); what WeChat says of it — its answer, a query,
the notify — applied once however often and in whatever order it comes; the member's return from 确认收款;
finance's 撤销转账; and the cron's look at one bill. The approval itself is ``withdrawals.approve_withdrawal``."""
import logging
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import AdminUser, User, Withdrawal, WithdrawalStatus
from ..models.base import utcnow
from ..money import format_yuan
from ..wechat.pay_v3 import BillState, TransferBill, awaits_member
from . import NotFound
from .audit import record_audit
from .messages import enqueue_message
from .payments import record_late_result
from .withdrawal_requests import WithdrawalError
from .withdrawal_review import (TRANSFER_REMARK, _finish, _message_values, _payout_gateway, _report_paid_after_all,
                                _require_finance)

log = logging.getLogger(__name__)


def _create_bill(gateway, session: Session, withdrawal: Withdrawal) -> TransferBill:
    """发起转账 for the withdrawal, always with the same parameters (WeChat makes at most one bill per number)."""
    openid = session.scalar(select(User.openid).where(User.id == withdrawal.user_id))
    return gateway.create_transfer_bill(out_bill_no=withdrawal.withdrawal_no, openid=openid or "",
                                        amount=withdrawal.amount_fen - withdrawal.fee_fen, remark=TRANSFER_REMARK,
                                        real_name=withdrawal.payee_name or "")


def _pay_by_bill(session: Session, gateway, admin: AdminUser, withdrawal: Withdrawal, retry: bool) -> Withdrawal:
    """商家转账: make (or, on a retry, make again under the same number) the bill, then record what WeChat says —
    waiting for the member's confirmation, or a certain failure (money back). Unknown answers are asked about."""
    if withdrawal.transfer_package and awaits_member(withdrawal.transfer_state):
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
    if bill.state == BillState.UNKNOWN and bill.short_of_funds:
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
    if (bill.state == BillState.UNKNOWN and bill.not_found and not withdrawal.transfer_package
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
