"""Refunds of paid orders (and after-sales refunds of picked-up ones): the member asks, finance decides,
WeChat pays back — and only WeChat's *result* finishes a refund.

Approval claims the refund (REQUESTED/FAILED → APPROVED) before calling WeChat, so two admins clicking at
once cannot refund twice; the out_refund_no makes a retried call idempotent at WeChat as well. WeChat's "yes" to
the request only means it accepted the refund (PROCESSING); the result comes by the refund notify, by the
query right after the request, or by the cron's query. Only a success moves the order to REFUNDED, releases
its stock and reverses its commissions (once: the refund row moves out of APPROVED/PROCESSING by a
conditional update in that transaction). A refund WeChat closes or cannot deliver fails and changes nothing
else: the order stays paid (or picked up) with its after-sales open, for finance to retry or reject.

This module holds the asking and deciding — the member's request, finance's after-sales refund, approval (the
call to WeChat), rejection, and the refund of money that arrived for a cancelled order. WeChat's results, the
refund notify and the cron are in ``refund_results``; their names are importable from here as well.
"""
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import AdminUser, Order, OrderStatus, PaymentEvent, PaymentEventKind, Refund, RefundStatus
from ..models.base import utcnow
from ..wechat.pay import PayError, PayGateway, RefundResult, RefundState
from . import DomainError, NotFound, submissions, Conflict, Forbidden
from .audit import record_audit
from .refund_results import (_api_of, _next_refund_number, accept_refund_notification,  # noqa: F401 - re-exported
                             apply_refund_result, apply_stray_refund_result, reconcile_refunds)
from .policy import Duty, require

MAX_REASON_LENGTH = 200


class RefundError(Conflict):
    pass


def request_refund(session: Session, user_id: int, order_no: str, reason: str,
                   submission_key: str | None = None) -> Refund:
    """The member asks for the money back for a paid order not yet picked up; finance decides. A repeat of
    ``submission_key`` answers with the first request."""
    reason = _clean_reason(reason, "请填写退款原因。")
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"member:{user_id}", action="refund.request", target=order_no)
        if earlier is not None:
            return _as_it_stands(session, earlier)
        order = session.scalar(select(Order).where(Order.order_no == order_no, Order.user_id == user_id))
        if order is None:
            raise NotFound("订单不存在。")
        refund = _open_refund(session, order, OrderStatus.PAID, reason, requested_by_user_id=user_id)
        if refund is None:
            session.refresh(order)
            if order.after_sales_open:
                raise RefundError("该订单已有退款申请在处理中。")
            raise RefundError("只有已支付、未自提的订单可以申请退款。")
        record_audit(session, actor_kind="user", actor_id=user_id, action="refund.request", target_type="order",
                     target_id=order.order_no, detail={"refund_id": refund.id, "amount_fen": refund.amount_fen})
        submissions.remember(session, submission_key, refund.id)
    return refund


def _as_it_stands(session: Session, refund_id: int) -> Refund:
    return submissions.first_result(session, Refund, refund_id)


def open_after_sales_refund(session: Session, admin: AdminUser, order_no: str, reason: str) -> Refund:
    """After-sales (售后): finance opens a refund for an order already picked up. Approving it refunds at
    WeChat and claws the settled commissions back (see commissions.reverse_order_lines)."""
    _require_finance(admin)
    reason = _clean_reason(reason, "请填写退款原因。")
    with write_transaction(session):
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        if order is None:
            raise NotFound("订单不存在。")
        refund = _open_refund(session, order, OrderStatus.COMPLETED, reason)
        if refund is None:
            raise RefundError("只有已提货且没有进行中售后的订单可以发起售后退款。")
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="refund.after_sales_open",
                     target_type="order", target_id=order.order_no, detail={"refund_id": refund.id})
    return refund


def _open_refund(session: Session, order: Order, expected: OrderStatus, reason: str,
                 requested_by_user_id: int | None = None) -> Refund | None:
    """Mark the order's after-sales as open (one at a time, by a conditional update) and add the refund;
    None when the order is not in ``expected`` state or already has one open."""
    opened = session.execute(
        update(Order)
        .where(Order.id == order.id, Order.status == expected, Order.after_sales_open.is_(False))
        .values(after_sales_open=True)
    ).rowcount
    if not opened:
        return None
    # Numbered per order (a rejected request may be followed by another): unique, and stable for WeChat.
    earlier = session.scalar(select(func.count()).select_from(Refund).where(Refund.order_id == order.id))
    refund = Refund(order_id=order.id, out_refund_no=f"RF{order.order_no[2:]}{earlier + 1:02d}",
                    amount_fen=order.total_fen, reason=reason, requested_by_user_id=requested_by_user_id)
    session.add(refund)
    session.flush()
    return refund


def _clean_reason(raw: str | None, missing: str) -> str:
    reason = " ".join((raw or "").split())[:MAX_REASON_LENGTH]
    if not reason:
        raise RefundError(missing, field="reason")
    return reason


def approve_refund(session: Session, gateway: PayGateway, admin: AdminUser, refund_id: int,
                   submission_key: str | None = None) -> Refund:
    """Refund at WeChat, or push an unfinished refund on: a refund without an answer is sent again with the same
    number; one WeChat accepted is asked about; one WeChat closed is sent again under a new number. A repeat of
    ``submission_key`` (a double click) calls nobody and answers with the refund as it now stands."""
    _require_finance(admin)
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="refund.approve", target=refund_id)
        if earlier is not None:
            return _as_it_stands(session, earlier)
        submissions.remember(session, submission_key, refund_id)
        refund = session.get(Refund, refund_id)
        if refund is None:
            raise NotFound("退款不存在。")
        if refund.status == RefundStatus.PROCESSING:
            claimed = False
        else:
            values = {"status": RefundStatus.APPROVED, "reviewed_by_admin_id": admin.id, "reviewed_at": utcnow()}
            if refund.status == RefundStatus.FAILED and refund.wechat_refund_id:
                # WeChat closed that refund (or could not deliver it): its number would only ever answer so. A
                # new number is a new refund, and WeChat never refunds more than was paid in total.
                values |= {"out_refund_no": _next_refund_number(refund.out_refund_no), "wechat_refund_id": None}
            claimed = session.execute(
                # APPROVED too: a request without an answer is sent again with the same number, which WeChat
                # refunds at most once.
                update(Refund).where(Refund.id == refund_id, Refund.status == refund.status,
                                     Refund.status.in_([RefundStatus.REQUESTED, RefundStatus.FAILED,
                                                        RefundStatus.APPROVED]))
                .values(**values)
            ).rowcount
            if not claimed:
                raise RefundError("该退款已处理。")
            record_audit(session, actor_kind="admin", actor_id=admin.id, action="refund.approve",
                         target_type="refund", target_id=refund_id,
                         detail={"out_refund_no": values.get("out_refund_no", refund.out_refund_no),
                                 "amount_fen": refund.amount_fen})
    session.refresh(refund)
    order = session.get(Order, refund.order_id)
    gateway = gateway.for_api(_api_of(session, order.order_no))  # v2's money goes back through v2
    if claimed:
        try:
            wechat_refund_id = gateway.refund(out_trade_no=order.order_no, out_refund_no=refund.out_refund_no,
                                              total_fee=order.total_fen, refund_fee=refund.amount_fen)
        except PayError as exc:
            if not exc.definite:
                # No answer, or "try again": WeChat may have taken it. Stay APPROVED; approving again repeats
                # the same out_refund_no, and the cron asks WeChat meanwhile. The form's key is let go: the
                # admin's next click on the same form is that retry, not a repeat to be answered as before.
                with write_transaction(session):
                    submissions.forget(session, submission_key)
                raise RefundError(f"微信退款结果未知（{exc.message}），请稍后再次点击同意重试。") from exc
            with write_transaction(session):
                session.execute(update(Refund).where(Refund.id == refund_id, Refund.status == RefundStatus.APPROVED)
                                .values(status=RefundStatus.FAILED, reject_reason=exc.message[:200]))
                record_audit(session, actor_kind="admin", actor_id=admin.id, action="refund.failed",
                             target_type="refund", target_id=refund_id, detail={"reason": exc.message[:200]})
                submissions.forget(session, submission_key)  # 重新退款 on the same form is a new attempt
            raise RefundError(f"微信退款失败：{exc.message}") from exc
        with write_transaction(session):
            session.execute(update(Refund).where(Refund.id == refund_id, Refund.status == RefundStatus.APPROVED)
                            .values(status=RefundStatus.PROCESSING, wechat_refund_id=wechat_refund_id))
    # A refund to the buyer's WeChat balance is usually done within seconds: one query finishes most of them
    # here; the others wait for the notify or the cron.
    try:
        result = gateway.query_refund(refund.out_refund_no)
    except PayError:
        result = None
    if result is not None:
        apply_refund_result(session, result)
    session.refresh(refund)
    if refund.status == RefundStatus.FAILED:
        raise RefundError(f"微信退款失败：{refund.reject_reason}")
    return refund



def refund_stray_payment(session: Session, gateway: PayGateway, admin: AdminUser, event_id: int) -> PaymentEvent:
    """Money that arrived for a cancelled order goes back to the payer (finance only), and — like an order's
    refund — is done only when WeChat says so. The event is claimed with its refund number (RS + its id) before
    WeChat is called: a second click or a retry sends the same number, which WeChat refunds at most once. It
    stays in the queue while processing; a success resolves it; a refund WeChat refused or closed is shown
    failed, and its retry uses a new number only after WeChat closed the old one."""
    _require_finance(admin)
    with write_transaction(session):
        event = session.get(PaymentEvent, event_id)
        if event is None or event.kind != PaymentEventKind.AFTER_CANCEL or event.resolved_at is not None:
            raise RefundError("该笔款项已处理，或不是已取消订单的付款。")
        number = event.refund_no or f"RS{event.id:010d}"
        claimed = session.execute(
            update(PaymentEvent).where(PaymentEvent.id == event_id, PaymentEvent.resolved_at.is_(None),
                                       PaymentEvent.refund_state.is_not_distinct_from(event.refund_state))
            .values(refund_no=number, refund_state=RefundStatus.PROCESSING, refund_reason="")
        ).rowcount
        if not claimed:
            raise RefundError("该笔款项正在处理，请刷新后再试。")
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="payment.stray_refund",
                     target_type="payment_event", target_id=event_id,
                     detail={"out_trade_no": event.out_trade_no, "out_refund_no": number,
                             "amount_fen": event.amount_fen})
    gateway = gateway.for_api(_api_of(session, event.out_trade_no))
    try:
        gateway.refund(out_trade_no=event.out_trade_no, out_refund_no=number, total_fee=event.amount_fen,
                       refund_fee=event.amount_fen)
    except PayError as exc:
        if not exc.definite:
            raise RefundError(f"微信退款结果未知（{exc.message}），请稍后再次点击重试。") from exc
        with write_transaction(session):
            session.execute(update(PaymentEvent).where(PaymentEvent.id == event_id, PaymentEvent.refund_no == number,
                                                       PaymentEvent.refund_state == RefundStatus.PROCESSING)
                            .values(refund_state=RefundStatus.FAILED, refund_reason=exc.message[:200]))
        raise RefundError(f"微信退款失败：{exc.message}") from exc
    try:
        apply_stray_refund_result(session, gateway.query_refund(number))
    except PayError:
        pass  # the notify or the cron will tell
    session.refresh(event)
    if event.refund_state == RefundStatus.FAILED:
        raise RefundError(f"微信退款失败：{event.refund_reason}")
    return event



def reject_refund(session: Session, admin: AdminUser, refund_id: int, reason: str,
                  submission_key: str | None = None) -> Refund:
    _require_finance(admin)
    reason = _clean_reason(reason, "请填写拒绝原因。")
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="refund.reject", target=refund_id)
        if earlier is not None:
            return _as_it_stands(session, earlier)
        submissions.remember(session, submission_key, refund_id)
        rejected = session.execute(
            update(Refund).where(Refund.id == refund_id,
                                 Refund.status.in_([RefundStatus.REQUESTED, RefundStatus.FAILED]))
            .values(status=RefundStatus.REJECTED, reject_reason=reason, reviewed_by_admin_id=admin.id,
                    reviewed_at=utcnow())
        ).rowcount
        if not rejected:
            raise RefundError("该退款已处理。")
        refund = session.get(Refund, refund_id)
        session.execute(update(Order).where(Order.id == refund.order_id).values(after_sales_open=False))
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="refund.reject", target_type="refund",
                     target_id=refund_id, detail={"reason": reason})
    return refund


def _require_finance(admin: AdminUser) -> None:
    require(admin, Duty.MONEY, "只有财务可以审核退款。")
