"""Withdrawals: the amount leaves "available" for "withdrawing" in one conditional update (never overdrawn,
whatever runs at once), then finance pays it out through WeChat — or by hand — or returns it.

This module holds the payout through WeChat — finance's approval, API v2's transfer to the member's balance
(企业付款到零钱) and the cron that asks WeChat about payouts whose outcome is unknown — and is where callers import
every withdrawal name from. The rest, by subject:

- ``withdrawal_requests``: the member's request (rules of an amount, the quote, the request);
- ``withdrawal_review``: rejecting, paying by hand, and ``_finish``, the one way a withdrawal moves on;
- ``withdrawal_bills``: 商家转账 bills (API v3), their results, 确认收款 and 撤销转账.
"""
import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import AdminUser, User, Withdrawal, WithdrawalStatus
from ..wechat.pay import PayGateway, TransferResult, TransferState
from . import NotFound, submissions
from .withdrawal_bills import (_pay_by_bill, _reconcile_bill, accept_transfer_notification,  # noqa: F401 - re-exported
                               apply_transfer_bill, cancel_transfer, check_transfer)
from .withdrawal_requests import (BPS, MAX_WITHDRAWAL_FEN, WithdrawalError,  # noqa: F401 - re-exported
                                  WithdrawalQuote, WithdrawalRules, _as_it_stands, parse_yuan, quote_withdrawal,
                                  request_withdrawal, withdrawable_fen)
from .withdrawal_review import (TRANSFER_REMARK, _finish, _payout_gateway,  # noqa: F401 - re-exported
                                _report_paid_after_all, _require_finance, mark_paid_offline, reject_withdrawal)

log = logging.getLogger(__name__)


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
