"""核销: outlet staff hand the goods over against the buyer's pickup code.

Redemption is one transaction: PAID → COMPLETED (a conditional update, so two scans of one code at the same
moment give exactly one success), the outlet's reserved stock deducted, the commission lines settled, the
buyer's message and an audit row written.
"""
import re
from dataclasses import dataclass
from datetime import timezone

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ..china_time import CHINA_TIME
from ..db import write_transaction
from ..models import Order, OrderStatus, Outlet, SiteStatus, User
from ..models.base import utcnow
from . import Conflict, Forbidden, NotFound, submissions
from . import pickup_queries as pickups
from .audit import record_audit
from .settlement import on_order_redeemed
from .stock import hand_over_stock

CODE_PATTERN = re.compile(r"^\d{12}$")


class RedeemError(Conflict):
    pass


@dataclass(frozen=True)
class PickupView:
    order: Order
    buyer_name: str  # masked
    outlet: Outlet


def clean_code(raw: str | None) -> str:
    code = re.sub(r"[\s-]", "", raw or "")
    if not CODE_PATTERN.fullmatch(code):
        raise RedeemError("核销码为 12 位数字，请核对后重新输入。")
    return code


def staff_outlet_ids(session: Session, user_id: int) -> set[int]:
    """Outlets this person may redeem for: their own, the one they are staff of, and every outlet in the
    region of a factory store they own."""
    return pickups.staff_outlet_ids(session, user_id)


def mask_name(name: str) -> str:
    if not name:
        return "顾客"
    return name[0] + "*" * min(max(len(name) - 1, 1), 3)


@dataclass(frozen=True)
class OutletOrders:
    waiting: list[Order]  # paid, to hand over, oldest first
    collected: list[Order]  # the latest handed over


def outlet_orders(session: Session, outlet_ids, waiting_limit: int = 100, collected_limit: int = 30) -> OutletOrders:
    """Orders to hand over at these outlets, and the latest collected there (the outlet's 订单 page)."""
    at = Order.outlet_id.in_(list(outlet_ids))
    waiting = session.scalars(select(Order).where(at, Order.status == OrderStatus.PAID)
                              .options(selectinload(Order.items)).order_by(Order.paid_at).limit(waiting_limit))
    collected = session.scalars(select(Order).where(at, Order.status == OrderStatus.COMPLETED)
                                .options(selectinload(Order.items)).order_by(Order.redeemed_at.desc())
                                .limit(collected_limit))
    return OutletOrders(list(waiting), list(collected))


def find_for_redemption(session: Session, staff_user_id: int, raw_code: str) -> PickupView:
    """Look the code up for the confirm screen; every reason it cannot be redeemed is a clear message."""
    code = clean_code(raw_code)
    order = session.scalar(select(Order).where(Order.pickup_code == code).options(selectinload(Order.items)))
    if order is None:
        raise NotFound("核销码不存在，请核对后重试。")
    outlet = session.get(Outlet, order.outlet_id)
    if order.outlet_id not in staff_outlet_ids(session, staff_user_id):
        raise Forbidden(f"该订单不在本店自提（自提门店：{outlet.name}），不能核销。")
    _check_redeemable(order)
    buyer = session.get(User, order.user_id)
    return PickupView(order, mask_name(buyer.nickname if buyer else ""), outlet)


def redeem(session: Session, staff_user_id: int, raw_code: str, submission_key: str | None = None) -> Order:
    """Hand the order over. A repeat of ``submission_key`` (a double tap on 确认核销) answers with the order the
    first one handed over, instead of "already used"."""
    code = clean_code(raw_code)
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"member:{staff_user_id}", action="redeem", target=raw_code)
        if earlier is not None:
            return session.get(Order, earlier, populate_existing=True)
        order = pickups.order_by_code(session, code)
        if order is None:
            raise NotFound("核销码不存在，请核对后重试。")
        if order.outlet_id not in staff_outlet_ids(session, staff_user_id):
            raise Forbidden(f"该订单不在本店自提（自提门店：{order.outlet_name}），不能核销。")
        if order.outlet_status != SiteStatus.ACTIVE:
            raise RedeemError("本店已暂停营业，暂不能核销。")
        if not pickups.mark_redeemed(session, order.id, now=utcnow(), staff_user_id=staff_user_id):
            _check_redeemable(session.get(Order, order.id, populate_existing=True))
            raise RedeemError("订单状态已变化，请刷新后重试。")
        for product_id, quantity in pickups.order_lines(session, order.id):
            hand_over_stock(session, location_id=order.location_id, product_id=product_id, quantity=quantity,
                            order_id=order.id)
        on_order_redeemed(session, order)
        record_audit(session, actor_kind="user", actor_id=staff_user_id, action="order.redeem", target_type="order",
                     target_id=order.order_no, detail={"outlet_id": order.outlet_id, "total_fen": order.total_fen})
        submissions.remember(session, submission_key, order.id)
    return session.get(Order, order.id)  # read after the commit, outside the write lock


def _check_redeemable(order: Order) -> None:
    if order.status == OrderStatus.COMPLETED:
        when = order.redeemed_at.replace(tzinfo=timezone.utc).astimezone(CHINA_TIME).strftime("%m-%d %H:%M")
        raise RedeemError(f"该核销码已于 {when} 使用过，不能重复核销。")
    if order.status == OrderStatus.REFUNDED:
        raise RedeemError("该订单已退款，不能核销。")
    if order.status != OrderStatus.PAID:
        raise RedeemError("该订单未支付或已取消，不能核销。")
    if order.after_sales_open:
        raise RedeemError("该订单有退款申请正在处理，暂不能核销。")
