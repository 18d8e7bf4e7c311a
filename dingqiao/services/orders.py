"""Placing, cancelling and expiring orders. Each state change is one conditional UPDATE on the order's
status inside one write transaction, so a duplicate or concurrent change finds nothing to do."""
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.orm import Session, selectinload

from ..china_time import CHINA_TIME
from ..db import write_transaction
from ..models import (
    Order,
    OrderItem,
    OrderStatus,
    Outlet,
    Payment,
    Product,
    SiteStatus,
    User,
)
from ..models.base import utcnow
from . import Conflict, NotFound, submissions
from . import order_queries as queries
from .commissions import rule_published
from .stock import release_stock, reserve_stock

MAX_ORDER_LINES = 30
# No sale without a commission rule: a sale before one is published would owe commissions nobody could compute.
NOT_OPEN_YET = "本店还在筹备中，暂未开业，请稍后再来下单。"
EXPIRED_REASON = "超时未支付"


class OrderError(Conflict):
    pass


def new_number(prefix: str, now: datetime) -> str:
    """Prefix + China-time timestamp + 10 random digits — the shape of every business number (orders DQ…,
    withdrawals WD…, restock orders RS…, service cases SV…): sortable, readable on the phone, unguessable
    enough that it is no key to anything (ownership is checked on every access anyway). 26 characters: within
    WeChat's 32 for out_trade_no and partner_trade_no. With 6 random digits two orders in the same second
    collided about once in 5,000 at 500 orders/s (a 500 for that buyer); with 10, once in ~10^8 at that rate."""
    stamp = now.replace(tzinfo=timezone.utc).astimezone(CHINA_TIME).strftime("%Y%m%d%H%M%S")
    return f"{prefix}{stamp}{secrets.randbelow(10**10):010d}"


def new_order_no(now: datetime) -> str:
    return new_number("DQ", now)


def transition(session: Session, order_id: int, expected: OrderStatus, new: OrderStatus, **values) -> bool:
    """Move an order from ``expected`` to ``new`` in one conditional UPDATE; False when it was not in
    ``expected`` any more (someone else moved it first)."""
    changed = session.execute(
        update(Order).where(Order.id == order_id, Order.status == expected).values(status=new, **values)
    ).rowcount
    return changed == 1


# Prebuilt (an ORM select, built once): every checkout loads its products with it.
_PRODUCTS = select(Product).where(Product.id.in_(bindparam("ids", expanding=True)))


def place_order(session: Session, user: User, outlet_id: int, quantities: dict[int, int], *,
                timeout_minutes: int, from_cart: bool = True, now: datetime | None = None,
                submission_key: str | None = None) -> Order:
    """Create a PENDING_PAYMENT order at the member's identity price and reserve its stock at the outlet.

    The cart lines it came from are removed in the same transaction; when they are already gone (a second
    tap of the button), the order is refused instead of being placed twice. A buy-now order (``from_cart``
    False) leaves the cart alone; its form's ``submission_key`` makes a second tap answer with the first order.
    """
    now = now or utcnow()
    quantities = {int(pid): int(qty) for pid, qty in quantities.items() if int(qty) > 0}
    if not quantities:
        raise OrderError("购物车是空的。")
    if len(quantities) > MAX_ORDER_LINES:
        raise OrderError(f"一个订单最多 {MAX_ORDER_LINES} 种商品。")
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"member:{user.id}", action="order")
        if earlier is not None:
            first = session.get(Order, earlier)
            if first is None:
                raise OrderError("订单已提交，请到“我的订单”查看。")
            return first
        if not rule_published(session):
            raise OrderError(NOT_OPEN_YET)
        outlet = queries.pickup_outlet(session, outlet_id)
        if outlet is None or outlet.status != SiteStatus.ACTIVE:
            raise OrderError("请选择一个营业中的自提门店。")
        products = {p.id: p for p in session.execute(_PRODUCTS, {"ids": list(quantities)}).scalars()}
        for product_id in quantities:
            product = products.get(product_id)
            if product is None or not product.is_on_sale:
                raise OrderError("有商品已下架，请返回购物车查看。")
        if from_cart:
            if queries.take_from_cart(session, user.id, list(quantities)) != len(quantities):
                raise OrderError("购物车已变化（订单可能已提交），请到“我的订单”查看。")
        identity = user.identity
        lines = [(products[pid], qty, products[pid].price_for(identity)) for pid, qty in sorted(quantities.items())]
        order = Order(
            order_no=new_order_no(now),
            user_id=user.id,
            outlet_id=outlet.id,
            status=OrderStatus.PENDING_PAYMENT,
            price_identity=identity,
            total_fen=sum(price * qty for _, qty, price in lines),
            created_at=now,
            expires_at=now + timedelta(minutes=timeout_minutes),
        )
        session.add(order)
        session.flush()
        # Products in id order: concurrent orders lock stock rows in the same order (no deadlock on Postgres).
        for product, qty, price in lines:
            queries.add_item(session, order_id=order.id, product_id=product.id, product_name=product.name,
                             unit_price_fen=price, quantity=qty)
            reserve_stock(session, location_id=outlet.location_id, product_id=product.id, quantity=qty,
                          order_id=order.id, product_name=product.name)
        submissions.remember(session, submission_key, order.id)
    return order


_MEMBER_ORDER = (select(Order).where(Order.order_no == bindparam("order_no"), Order.user_id == bindparam("user_id"))
                 .options(selectinload(Order.items)))  # prebuilt: the order page, the pickup QR, paying


def get_member_order(session: Session, user_id: int, order_no: str) -> Order:
    """The member's own order (another person's is NotFound, like a missing one), expired if it is due."""
    order = session.execute(_MEMBER_ORDER, {"order_no": order_no, "user_id": user_id}).scalar()
    if order is None:
        raise NotFound("订单不存在。")
    if cancel_if_expired(session, order):
        session.refresh(order)
    return order


def cancel_order(session: Session, user_id: int, order_no: str) -> Order:
    """The member cancels an unpaid order. One that reached WeChat goes through
    ``payments.cancel_member_order``, which closes it at WeChat first."""
    order = session.scalar(select(Order).where(Order.order_no == order_no, Order.user_id == user_id))
    if order is None:
        raise NotFound("订单不存在。")
    with write_transaction(session):
        if not _cancel(session, order, "用户取消"):
            session.refresh(order)
            if order.status == OrderStatus.CANCELLED:
                return order  # already cancelled: the same answer again
            raise OrderError("订单已支付，不能取消；如需退款请申请退款。")
    session.refresh(order)
    return order


def reached_wechat(session: Session, order_id: int) -> bool:
    return session.scalar(select(Payment.id).where(Payment.order_id == order_id)) is not None


def cancel_if_expired(session: Session, order: Order, now: datetime | None = None) -> bool:
    """Lazy expiry: an unpaid order past its deadline is cancelled when anyone looks at it — unless it
    reached WeChat: only the cron job, which asks WeChat first, may cancel those (a late notify may be on
    its way, and a cancelled order cannot take the money)."""
    now = now or utcnow()
    if order.status != OrderStatus.PENDING_PAYMENT or order.expires_at > now:
        return False
    if reached_wechat(session, order.id):
        return False
    with write_transaction(session):
        return cancel_unpaid(session, order, now)


def member_orders(session: Session, user_id: int, status: str = "", *, limit: int,
                  now: datetime | None = None) -> list[Order]:
    """The member's latest orders, newest first, only those in ``status`` when it names one. Their unpaid orders
    past the deadline are expired first (``expire_member_orders``), so the list shows them as they are."""
    expire_member_orders(session, user_id, now)
    statement = select(Order).where(Order.user_id == user_id).order_by(Order.created_at.desc()).limit(limit)
    if status in set(OrderStatus):
        statement = statement.where(Order.status == status)
    return list(session.scalars(statement))


def _due_for_lazy_expiry(now: datetime):
    """Unpaid, past the deadline, and never sent to WeChat (those are the cron job's: it asks WeChat first)."""
    return (Order.status == OrderStatus.PENDING_PAYMENT, Order.expires_at <= now,
            ~exists().where(Payment.order_id == Order.id))


def expire_member_orders(session: Session, user_id: int, now: datetime | None = None) -> int:
    """Lazy expiry of one member's orders at once: one read finds whether any is due (usually none, and then
    nothing is written); if so one conditional UPDATE cancels them all ("超时未支付") and their reservations are
    released in the same write transaction. An order paid or sent to WeChat meanwhile no longer matches the
    UPDATE and is left alone. Returns how many were cancelled."""
    now = now or utcnow()
    if session.scalar(select(Order.id).where(Order.user_id == user_id, *_due_for_lazy_expiry(now)).limit(1)) is None:
        return 0
    with write_transaction(session):
        cancelled = session.execute(
            update(Order).where(Order.user_id == user_id, *_due_for_lazy_expiry(now))
            .values(status=OrderStatus.CANCELLED, cancelled_at=now, cancel_reason=EXPIRED_REASON)
            .returning(Order.id, Order.outlet_id).execution_options(synchronize_session=False)
        ).all()
        for order_id, outlet_id in sorted(cancelled):  # a fixed order: stock rows are locked the same way each time
            _release(session, order_id, outlet_id)
    return len(cancelled)


def due_unpaid_orders(session: Session, now: datetime, batch: int) -> list[Order]:
    return list(session.scalars(
        select(Order).where(Order.status == OrderStatus.PENDING_PAYMENT, Order.expires_at <= now)
        .order_by(Order.id).limit(batch)
    ))


def cancel_unpaid(session: Session, order: Order, now: datetime | None = None) -> bool:
    """Inside a write transaction: PENDING_PAYMENT → CANCELLED (timed out) and release the reservation."""
    return _cancel(session, order, EXPIRED_REASON, now)


def release_order_stock(session: Session, order: Order) -> None:
    _release(session, order.id, order.outlet_id)


def _release(session: Session, order_id: int, outlet_id: int) -> None:
    location_id = session.scalar(select(Outlet.location_id).where(Outlet.id == outlet_id))
    items = session.scalars(select(OrderItem).where(OrderItem.order_id == order_id).order_by(OrderItem.product_id))
    for item in items:
        release_stock(session, location_id=location_id, product_id=item.product_id, quantity=item.quantity,
                      order_id=order_id)


def _cancel(session: Session, order: Order, reason: str, now: datetime | None = None) -> bool:
    if not transition(session, order.id, OrderStatus.PENDING_PAYMENT, OrderStatus.CANCELLED,
                      cancelled_at=now or utcnow(), cancel_reason=reason):
        return False
    release_order_stock(session, order)
    return True
