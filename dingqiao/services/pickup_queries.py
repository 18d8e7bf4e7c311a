"""The pickup's statements (an order found by its code, marked handed over, its lines; who may hand over where),
prebuilt once and run through ``db.run`` behind named functions: every pickup and every outlet page runs them.
services/redemption.py decides; this module only reads and writes, rows by column name (``db.row_as``)."""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, union, update
from sqlalchemy.orm import Session

from ..db import row_as, run
from ..models import FactoryStore, Order, OrderItem, OrderStatus, Outlet, OutletStaff


@dataclass(frozen=True)
class OrderToRedeem:
    """What a pickup checks and what settling it needs (``settlement.on_order_redeemed``)."""
    id: int
    order_no: str
    user_id: int
    outlet_id: int
    rule_version_id: int | None
    total_fen: int
    location_id: int  # the outlet's stock location
    outlet_status: str
    outlet_name: str


_STAFF_OUTLETS = union(
    select(Outlet.id).where(Outlet.owner_user_id == bindparam("user_id")),
    select(OutletStaff.outlet_id).where(OutletStaff.user_id == bindparam("user_id")),
    select(Outlet.id).where(Outlet.region_id.in_(
        select(FactoryStore.region_id).where(FactoryStore.owner_user_id == bindparam("user_id")))),
)
_ORDER_BY_CODE = (select(Order.id, Order.order_no, Order.user_id, Order.outlet_id, Order.rule_version_id,
                         Order.total_fen, Outlet.location_id, Outlet.status.label("outlet_status"),
                         Outlet.name.label("outlet_name"))
                  .join(Outlet, Outlet.id == Order.outlet_id).where(Order.pickup_code == bindparam("code")))
_COMPLETE = (update(Order)
             .where(Order.id == bindparam("order_id"), Order.status == OrderStatus.PAID,
                    Order.after_sales_open.is_(False))
             .values(status=OrderStatus.COMPLETED, redeemed_at=bindparam("now"),
                     redeemed_by_user_id=bindparam("staff_user_id")))
_ITEMS = (select(OrderItem.product_id, OrderItem.quantity).where(OrderItem.order_id == bindparam("order_id"))
          .order_by(OrderItem.product_id))


def staff_outlet_ids(session: Session, user_id: int) -> set[int]:
    """Outlets this person may redeem for: their own, the one they are staff of, and every outlet in the
    region of a factory store they own."""
    return set(run(session, _STAFF_OUTLETS, {"user_id": user_id}).scalars())


def order_by_code(session: Session, code: str) -> OrderToRedeem | None:
    row = run(session, _ORDER_BY_CODE, {"code": code}).one_or_none()
    return row_as(OrderToRedeem, row) if row is not None else None


def mark_redeemed(session: Session, order_id: int, *, now: datetime, staff_user_id: int) -> bool:
    """PAID (with no after-sales case open) → COMPLETED; False if the order was not in that state."""
    return run(session, _COMPLETE, {"order_id": order_id, "now": now, "staff_user_id": staff_user_id}).rowcount == 1


def order_lines(session: Session, order_id: int) -> list[tuple[int, int]]:
    """(product id, quantity) of each line, by product id."""
    return [(row.product_id, row.quantity) for row in run(session, _ITEMS, {"order_id": order_id})]
