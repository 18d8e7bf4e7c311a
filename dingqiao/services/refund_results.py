"""WeChat's results for our refunds, applied: an order's refund (from the notify, the query right after the
request, or the cron's query) and the refund of money that arrived for a cancelled order. Only a success moves
the order to REFUNDED, releases its stock and reverses its commissions — once: the refund row moves out of
APPROVED/PROCESSING by a conditional update in that transaction. Asking for a refund, deciding on it and sending
it to WeChat are in ``refunds``, which is also where callers import these names from."""
import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import REFUNDS_IN_FLIGHT, Order, OrderStatus, Payment, PaymentEvent, Refund, RefundStatus
from ..models.base import utcnow
from ..wechat.pay import PayError, PayGateway, RefundResult, RefundState
from .audit import record_audit
from .orders import release_order_stock, transition
from .payments import record_late_result
from .settlement import on_order_refunded

log = logging.getLogger(__name__)
# WeChat's final refund results as our refund's status (the adapter's outcomes are not our column's values).
_FINAL_STATUS = {RefundState.SUCCEEDED: RefundStatus.SUCCEEDED, RefundState.FAILED: RefundStatus.FAILED}


def apply_refund_result(session: Session, result: RefundResult) -> bool:
    """WeChat's result for one of our refund numbers, from the notify or a query. Its effects happen once:
    only the call that moves the refund out of APPROVED/PROCESSING applies them; True when this call did.
    A result for an amount other than the refund's changes nothing. A result still in progress only records
    its reason (退款异常) for finance. A success for a refund we no longer wait for — marked failed or rejected
    meanwhile — is not dropped: finance gets a late-result event to reconcile."""
    with write_transaction(session):
        refund = session.scalar(select(Refund).where(Refund.out_refund_no == result.out_refund_no))
        if refund is None or result.refund_fee != refund.amount_fen:
            return False
        if result.state == RefundState.PROCESSING:
            if result.reason:
                session.execute(update(Refund).where(Refund.id == refund.id, Refund.status.in_(REFUNDS_IN_FLIGHT))
                                .values(status=RefundStatus.PROCESSING, reject_reason=result.reason[:200]))
            return False
        now = utcnow()
        final = {"status": _FINAL_STATUS[result.state], "wechat_refund_id": result.refund_id}
        if result.state == RefundState.SUCCEEDED:
            final["completed_at"] = now
        else:
            final["reject_reason"] = result.reason[:200]
        moved = session.execute(
            update(Refund).where(Refund.id == refund.id, Refund.out_refund_no == result.out_refund_no,
                                 Refund.status.in_(REFUNDS_IN_FLIGHT))
            .values(**final)
        ).rowcount
        order = session.get(Order, refund.order_id)
        if not moved:
            if result.state == RefundState.SUCCEEDED and refund.status != RefundStatus.SUCCEEDED:
                record_late_result(session, reference=order.order_no, wechat_id=result.refund_id or result.out_refund_no,
                                   amount_fen=refund.amount_fen,
                                   detail=f"微信已退款 {result.out_refund_no}，但系统中该退款为「{refund.status}」，请核对订单与退款")
            return False  # a duplicate notify, or the query and the notify both told us
        if result.state == RefundState.SUCCEEDED:
            picked_up = order.status == OrderStatus.COMPLETED
            if not transition(session, order.id, OrderStatus.COMPLETED if picked_up else OrderStatus.PAID,
                              OrderStatus.REFUNDED, refunded_at=now, after_sales_open=False):
                # WeChat has paid the money back but the order moved on: never lose that fact.
                raise RuntimeError(f"order {order.order_no} changed state while refund {refund.id} was being paid")
            if not picked_up:
                release_order_stock(session, order)  # goods handed over stay with the buyer
            session.refresh(order)
            on_order_refunded(session, order)
        record_audit(session, actor_kind="system", actor_id=None, action=f"refund.{result.state.value}",
                     target_type="order", target_id=order.order_no,
                     detail={"refund_id": refund.id, "out_refund_no": result.out_refund_no,
                             "amount_fen": refund.amount_fen, "reason": result.reason})
    return True


def accept_refund_notification(session: Session, result: RefundResult) -> bool:
    """A refund-result notify that decrypted with our key. True: answer SUCCESS (applied, a duplicate, or none
    of our refunds); False: answer FAIL — its amount is not the refund's — and nothing changed."""
    refund_fee = session.scalar(select(Refund.amount_fen).where(Refund.out_refund_no == result.out_refund_no))
    if refund_fee is None:
        stray_fee = session.scalar(select(PaymentEvent.amount_fen).where(PaymentEvent.refund_no == result.out_refund_no))
        if stray_fee is not None and stray_fee != result.refund_fee:
            return False
        apply_stray_refund_result(session, result)
        return True
    if refund_fee != result.refund_fee:
        return False
    apply_refund_result(session, result)
    return True


def reconcile_refunds(session: Session, gateway: PayGateway, asked_before: datetime, batch: int = 200) -> int:
    """For cron: ask WeChat about refunds sent before ``asked_before`` whose result never came (a lost notify, or
    a request without an answer); apply what is final. Returns how many were finished. A refund WeChat does
    not know, or cannot tell about now, is left for finance's retry or the next run."""
    due = session.execute(
        select(Refund.id, Refund.out_refund_no, Refund.status)
        .where(Refund.status.in_(REFUNDS_IN_FLIGHT), Refund.reviewed_at <= asked_before)
        .order_by(Refund.reviewed_at).limit(batch)
    ).all()
    due_stray = session.scalars(
        select(PaymentEvent.refund_no).where(PaymentEvent.refund_state == RefundStatus.PROCESSING)
        .order_by(PaymentEvent.id).limit(batch)
    ).all()
    finished = 0
    for refund_no in due_stray:
        try:
            trade_no = session.scalar(select(PaymentEvent.out_trade_no).where(PaymentEvent.refund_no == refund_no))
            finished += apply_stray_refund_result(session, gateway.for_api(_api_of(session, trade_no))
                                                  .query_refund(refund_no))
        except PayError:
            continue  # not known at WeChat (yet): finance's retry sends it again under the same number
        except Exception:  # noqa: BLE001 - one refund that cannot be finished must not stop the others
            session.rollback()
            log.exception("reconcile: refund %s could not be finished", refund_no)
    for refund_id, out_refund_no, status in due:
        try:
            trade_no = session.scalar(select(Order.order_no).join(Refund, Refund.order_id == Order.id)
                                      .where(Refund.id == refund_id))
            result = gateway.for_api(_api_of(session, trade_no)).query_refund(out_refund_no)
        except PayError:
            continue
        try:
            if status == RefundStatus.APPROVED:
                with write_transaction(session):  # WeChat knows the number: it accepted the request after all
                    session.execute(update(Refund).where(Refund.id == refund_id,
                                                         Refund.status == RefundStatus.APPROVED)
                                    .values(status=RefundStatus.PROCESSING, wechat_refund_id=result.refund_id))
            finished += apply_refund_result(session, result)
        except Exception:  # noqa: BLE001 - one refund that cannot be finished must not stop the others
            session.rollback()
            log.exception("reconcile: refund %s could not be finished", out_refund_no)
    return finished

def _api_of(session: Session, out_trade_no: str | None) -> str | None:
    """The WeChat Pay API that took the money of this trade number (None: unknown to us — the current one)."""
    return session.scalar(select(Payment.api).where(Payment.out_trade_no == out_trade_no)) if out_trade_no else None


def apply_stray_refund_result(session: Session, result: RefundResult) -> bool:
    """WeChat's result for the refund of money that arrived for a cancelled order (see ``apply_refund_result``
    for the rules; nothing but the event itself changes). True when this call finished it."""
    with write_transaction(session):
        event = session.scalar(select(PaymentEvent).where(PaymentEvent.refund_no == result.out_refund_no))
        if event is None or result.refund_fee != event.amount_fen:
            return False
        in_flight = (PaymentEvent.id == event.id, PaymentEvent.refund_no == result.out_refund_no,
                     PaymentEvent.refund_state == RefundStatus.PROCESSING)
        if result.state == RefundState.PROCESSING:
            if result.reason:
                session.execute(update(PaymentEvent).where(*in_flight).values(refund_reason=result.reason[:200]))
            return False
        if result.state == RefundState.SUCCEEDED:
            values = {"refund_state": RefundStatus.SUCCEEDED, "refund_reason": "", "resolved_at": utcnow()}
        else:  # closed: this number will only ever answer so, the retry gets the next one
            values = {"refund_state": RefundStatus.FAILED, "refund_reason": result.reason[:200],
                      "refund_no": _next_refund_number(result.out_refund_no)}
        moved = session.execute(update(PaymentEvent).where(*in_flight).values(**values)).rowcount
        if not moved:
            if result.state == RefundState.SUCCEEDED and event.refund_state != RefundStatus.SUCCEEDED:
                record_late_result(session, reference=event.out_trade_no, wechat_id=result.refund_id or result.out_refund_no,
                                   amount_fen=event.amount_fen,
                                   detail=f"微信已退款 {result.out_refund_no}（已取消订单的付款），但系统中未在等待它，请核对")
            return False
        record_audit(session, actor_kind="system", actor_id=None, action=f"payment.stray_refund_{values['refund_state']}",
                     target_type="payment_event", target_id=event.id,
                     detail={"out_refund_no": result.out_refund_no, "amount_fen": event.amount_fen,
                             "reason": result.reason})
    return True


def _next_refund_number(out_refund_no: str) -> str:
    """RF…01 → RF…01-2 → RF…01-3: the refund's numbers stay recognisable as one."""
    base, _, attempt = out_refund_no.partition("-")
    return f"{base}-{int(attempt or 1) + 1}"

