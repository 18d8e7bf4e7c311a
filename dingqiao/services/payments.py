"""WeChat Pay: starting a payment, and the one transition to PAID that the notify, the "I have paid"
check and demo pay all go through.

Payment and PaymentEvent rows are written one way only, by the payment aggregate's query module
(services/payment_queries.py: prebuilt statements behind named functions): every pay notify writes them, so the
money path needs them fast, and the rarer writers (the prepay id, a late result) use the same ones."""
import json
import secrets

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import (
    Order,
    OrderStatus,
    Payment,
    PaymentEvent,
    PaymentEventKind,
    RefundStatus,
    RefusedNotify,
    User,
)
from ..models.base import utcnow
from ..wechat import WeChatError, WeChatSettings
from ..wechat.pay import InvalidNotification, PayError, PayGateway, PayNotification
from . import NotFound, submissions
from .orders import (
    OrderError,
    cancel_order,
    cancel_unpaid,
    due_unpaid_orders,
    get_member_order,
    reached_wechat,
)
from .audit import record_audit
from . import payment_queries as queries
from .commissions import current_rule
from .settlement import on_order_paid

PICKUP_CODE_DIGITS = 12
REFUSED_DETAIL_CHARS = 1000
REFUSED_SHOWN = 20


def new_pickup_code(session: Session) -> str:
    """12 random digits from `secrets` (10^12 codes), unused by any order."""
    while True:
        code = f"{secrets.randbelow(10**PICKUP_CODE_DIGITS):0{PICKUP_CODE_DIGITS}d}"
        if not queries.pickup_code_taken(session, code):
            return code


def start_payment(session: Session, gateway: PayGateway, user: User, order_no: str, *, notify_url: str,
                  client_ip: str) -> dict:
    """Get a prepay id for the order (once; later taps reuse it) and return the JS-bridge parameters. Two taps
    racing each other both ask WeChat (which gives one prepay id per order number). No submission key is needed:
    the order's one Payment row (its out_trade_no is unique) already makes a repeat store nothing new, and a
    repeat after a v2↔v3 switch must store the new prepay id."""
    order = get_member_order(session, user.id, order_no)
    if order.status != OrderStatus.PENDING_PAYMENT:
        raise OrderError("订单已支付或已取消，无需再次支付。")
    payment = session.scalar(select(Payment).where(Payment.out_trade_no == order.order_no))
    if payment is not None and payment.prepay_id:
        # A prepay id is signed for the pay sheet by the API that made it (an order prepaid before a switch
        # between v2 and v3 cannot be ordered again through the other: WeChat refuses the number's new notify_url).
        own = gateway.for_api(payment.api, strict=True)
        if own is not None:
            return own.jsapi_params(payment.prepay_id)
    first_item = order.items[0].product_name if order.items else "商品"
    title = f"顶俏-{first_item}" + ("等" if len(order.items) > 1 else "")
    # The network call happens outside any transaction: no lock is held while WeChat thinks.
    prepay_id = gateway.create_jsapi_order(
        out_trade_no=order.order_no, body=title[:40], total_fee=order.total_fen, openid=user.openid,
        notify_url=notify_url, client_ip=client_ip, expires_at=order.expires_at,
    )
    try:
        with write_transaction(session):
            stored = queries.payment_of(session, order.order_no)
            if stored is None:
                queries.add_prepaid_payment(session, order_id=order.id, out_trade_no=order.order_no,
                                            amount_fen=order.total_fen, prepay_id=prepay_id, api=gateway.api)
            else:
                queries.set_prepay_id(session, stored.id, prepay_id=prepay_id, api=gateway.api)
    except IntegrityError:
        session.rollback()  # a second tap stored it first; WeChat gave both the same prepay id
    return gateway.jsapi_params(prepay_id)


def demo_pay(session: Session, gateway, user: User, order_no: str, submission_key: str | None = None) -> Order:
    """Demo mode's 模拟支付: the notify WeChat would send for the member's order, signed by the demo merchant
    (``gateway``, on API v3), through the real verify-decrypt-apply path. A repeat of ``submission_key`` (a
    double tap) sends nothing again and answers with the order as it now stands."""
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"member:{user.id}", action="demo_pay", target=order_no)
        order = get_member_order(session, user.id, order_no)
        if earlier is None:
            body, headers = gateway.signed_notification(out_trade_no=order.order_no,
                                                        transaction_id=f"DEMO{order.order_no[2:]}",
                                                        total_fee=order.total_fen, openid=user.openid)
            handle_pay_notification(session, gateway, body, headers)
            submissions.remember(session, submission_key, order.id)
    return get_member_order(session, user.id, order_no)


def handle_pay_notification(session: Session, gateway: PayGateway, body: bytes, headers=None) -> bool:
    """A pay notify's body from within the app (demo pay, tests), so a refused one has no sender address; the
    notify endpoint takes the same two steps with its rate limit between them. True: answer SUCCESS; False:
    answer FAIL (WeChat will retry)."""
    try:
        notification = gateway.parse_notification(body, headers)
    except InvalidNotification as exc:
        record_refused_notify(session, "", exc.reason, body, str(exc))
        return False
    return accept_pay_notification(session, gateway.settings, notification)


def record_refused_notify(session: Session, source: str, reason: str, body: bytes, detail: str = "") -> None:
    """Count a notify refused before any of it was believed (``RefusedNotifyReason``) against its sender's
    address; the last one's ``detail`` and the start of its body are kept for an admin to read."""
    # A NUL goes, as Postgres cannot store one in text.
    sample = f"{detail}\n{body[:REFUSED_DETAIL_CHARS].decode('utf-8', 'replace')}".replace("\x00", "\ufffd")
    with write_transaction(session):
        queries.count_refused_notify(session, source=source, reason=reason, now=utcnow(),
                                     detail=sample[:2 * REFUSED_DETAIL_CHARS])


def recent_refused_notifies(session: Session, limit: int = REFUSED_SHOWN) -> list[RefusedNotify]:
    """For finance's page: the senders of refused notifies seen most recently, with their counts."""
    return list(session.scalars(select(RefusedNotify).order_by(RefusedNotify.last_seen_at.desc(), RefusedNotify.id)
                                .limit(limit)))


def accept_pay_notification(session: Session, expected: WeChatSettings, notification: PayNotification) -> bool:
    """A notify signed with our merchant key. True: answer SUCCESS (handled, or nothing more to do); False:
    answer FAIL (nothing changed; WeChat will retry, and the event is recorded for an admin)."""
    if not notification.result_ok:
        return True  # WeChat reports a failed payment: the order simply stays unpaid
    return apply_payment(
        session, expected, out_trade_no=notification.out_trade_no,
        transaction_id=notification.transaction_id, total_fee=notification.total_fee,
        mch_id=notification.mch_id, appid=notification.appid, raw=notification.raw,
    )


def check_payment(session: Session, gateway: PayGateway, user_id: int, order_no: str) -> Order:
    """"I have paid": ask WeChat (order query) and apply the same transition as the notify would."""
    order = session.scalar(select(Order).where(Order.order_no == order_no, Order.user_id == user_id))
    if order is None:
        raise NotFound("订单不存在。")
    if order.status == OrderStatus.PENDING_PAYMENT:
        result = gateway.query_order(order.order_no)
        if result.paid:
            apply_payment(session, gateway.settings, out_trade_no=result.out_trade_no,
                          transaction_id=result.transaction_id, total_fee=result.total_fee or 0,
                          mch_id=result.mch_id, appid=result.appid, raw={"source": "orderquery"})
    return get_member_order(session, user_id, order_no)


def cancel_member_order(session: Session, gateway: PayGateway, user_id: int, order_no: str) -> Order:
    """Cancel an unpaid order; one that reached WeChat is closed there first, so a pay sheet still open on
    the phone can no longer take the money. If WeChat says it was paid after all, it is marked paid."""
    order = session.scalar(select(Order).where(Order.order_no == order_no, Order.user_id == user_id))
    if order is None:
        raise NotFound("订单不存在。")
    if order.status == OrderStatus.PENDING_PAYMENT and reached_wechat(session, order.id):
        try:
            gateway.close_order(order.order_no)
        except PayError as exc:
            if exc.err_code == "ORDERPAID":
                check_payment(session, gateway, user_id, order_no)
                raise OrderError("订单已支付，不能取消；如需退款请申请退款。") from exc
            raise OrderError("暂时无法取消订单，请稍后再试。") from exc
    return cancel_order(session, user_id, order_no)


def resolve_payment_event(session: Session, admin, event_id: int) -> None:
    """Finance has looked at an odd notify (forged, mismatched, …) and dealt with it outside the system.
    Finance only: closing a "paid after cancel" event this way ends the refund of that money — but not while a
    refund of it is with WeChat, whose result must still be seen."""
    from .refunds import _require_finance

    _require_finance(admin)
    with write_transaction(session):
        done = session.execute(
            update(PaymentEvent).where(PaymentEvent.id == event_id, PaymentEvent.resolved_at.is_(None),
                                       PaymentEvent.refund_state.is_distinct_from(RefundStatus.PROCESSING))
            .values(resolved_at=utcnow())
        ).rowcount
        if not done:
            raise OrderError("该记录已处理，或其退款正在微信处理中。")
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="payment.event_resolved",
                     target_type="payment_event", target_id=event_id)


def expire_unpaid_orders(session: Session, gateway: PayGateway | None, now=None, batch: int = 200) -> int:
    """For cron: cancel every unpaid order past its deadline and release its stock; returns how many.

    An order that reached WeChat is first asked about (order query): paid after all → it is marked PAID
    instead; otherwise it is closed at WeChat so it can never be paid later, then cancelled.
    """
    now = now or utcnow()
    cancelled = 0
    seen: set[int] = set()
    while True:
        due = [order for order in due_unpaid_orders(session, now, batch) if order.id not in seen]
        if not due:
            return cancelled
        for order in due:
            seen.add(order.id)
            reached_wechat = session.scalar(select(Payment.id).where(Payment.order_id == order.id)) is not None
            if reached_wechat and gateway is not None:
                try:
                    result = gateway.query_order(order.order_no)
                    if result.paid:
                        apply_payment(session, gateway.settings, out_trade_no=result.out_trade_no,
                                      transaction_id=result.transaction_id, total_fee=result.total_fee or 0,
                                      mch_id=result.mch_id, appid=result.appid, raw={"source": "expiry-query"})
                        continue
                    if result.awaiting_payment:
                        gateway.close_order(order.order_no)
                except WeChatError:
                    continue  # WeChat unreachable: decide on the next run rather than guess
            with write_transaction(session):
                cancelled += cancel_unpaid(session, order, now)


def apply_payment(session: Session, expected: WeChatSettings, *, out_trade_no: str, transaction_id: str,
                  total_fee: int, mch_id: str, appid: str, raw: dict) -> bool:
    """Mark the order PAID if — and only if — the money matches it. Idempotent: a duplicate finds the order
    paid with the same transaction and changes nothing. The commission rule in force is stamped on the order
    by the same UPDATE that marks it paid."""
    detail = json.dumps(raw, ensure_ascii=False, sort_keys=True)[:4000]
    with write_transaction(session):
        order = queries.order_to_pay(session, out_trade_no)

        def record(kind: PaymentEventKind, attention: bool) -> None:
            queries.add_event(session, kind, out_trade_no=out_trade_no, transaction_id=transaction_id,
                              amount_fen=total_fee, detail=detail, needs_attention=attention)

        if order is None:
            record(PaymentEventKind.UNKNOWN_ORDER, True)
            return False
        # A transaction that already paid another order is not this order's money (nor one to refund for it).
        # Two such notifies at once still cannot both be stored: transaction_id is unique.
        if (total_fee != order.total_fen or mch_id != expected.mch_id or appid != expected.app_id
                or queries.paid_by_another_order(session, transaction_id, order.id)):
            record(PaymentEventKind.MISMATCH, True)
            return False
        now = utcnow()
        rule = current_rule(session)
        marked = queries.mark_paid(session, order.id, now=now, pickup_code=new_pickup_code(session),
                                   rule_id=rule.id if rule else None)
        payment = queries.payment_of(session, out_trade_no)
        if marked:
            if payment is None:
                queries.add_paid_payment(session, order_id=order.id, out_trade_no=out_trade_no, amount_fen=total_fee,
                                         transaction_id=transaction_id, now=now,
                                         api="v3" if raw.get("api") == "v3" else "v2")
            else:
                queries.set_paid(session, payment.id, transaction_id=transaction_id, now=now)
            record(PaymentEventKind.ACCEPTED, False)
            record_audit(session, actor_kind="system", actor_id=None, action="payment.accepted", target_type="order",
                         target_id=order.order_no, detail={"amount": total_fee, "transaction_id": transaction_id})
            on_order_paid(session, order, rule)
            return True
        status = queries.order_status(session, order.id)
        if status == OrderStatus.CANCELLED:
            # Money for a cancelled order: an admin refunds it, from the one offer this transaction gets (a
            # unique index; a savepoint turns a repeated or concurrent delivery into a duplicate).
            try:
                with session.begin_nested():
                    record(PaymentEventKind.AFTER_CANCEL, True)
            except IntegrityError:
                record(PaymentEventKind.DUPLICATE, False)
        elif payment is not None and payment.transaction_id == transaction_id:
            record(PaymentEventKind.DUPLICATE, False)
        else:
            record(PaymentEventKind.DOUBLE_PAYMENT, True)
        return True


def record_late_result(session: Session, *, reference: str, wechat_id: str, amount_fen: int, detail: str) -> None:
    """WeChat says money moved that our books say did not (a refund succeeded after we marked it failed or
    rejected; a payout paid after its money went back to the wallet): never dropped silently, one event for
    finance per WeChat id. Joins the caller's transaction."""
    with write_transaction(session):
        if not queries.late_result_recorded(session, wechat_id[:64]):
            queries.add_event(session, PaymentEventKind.LATE_RESULT, out_trade_no=reference[:64],
                       transaction_id=wechat_id[:64], amount_fen=amount_fen, detail=detail, needs_attention=True)

