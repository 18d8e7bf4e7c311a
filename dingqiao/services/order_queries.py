"""Placing an order's Core statements (the pickup outlet, the cart lines taken, the order's lines), prebuilt once and
run through ``db.run`` behind named functions: every order runs them. services/orders.py decides; this module only
reads and writes, rows by column name (``db.row_as``). The order row itself and the products are the ORM's."""
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.orm import Session

from ..db import row_as, run
from ..models import CartItem, OrderItem, Outlet


@dataclass(frozen=True)
class PickupOutlet:
    id: int
    status: str
    location_id: int  # its stock location, where the order's goods are reserved


_OUTLET = select(Outlet.id, Outlet.status, Outlet.location_id).where(Outlet.id == bindparam("outlet_id"))
_TAKE_FROM_CART = delete(CartItem).where(CartItem.user_id == bindparam("user_id"),
                                         CartItem.product_id.in_(bindparam("ids", expanding=True)))
_ADD_ITEM = insert(OrderItem)


def pickup_outlet(session: Session, outlet_id: int) -> PickupOutlet | None:
    row = run(session, _OUTLET, {"outlet_id": outlet_id}).one_or_none()
    return row_as(PickupOutlet, row) if row is not None else None


def take_from_cart(session: Session, user_id: int, product_ids: list[int]) -> int:
    """Remove those products from the member's cart; how many lines were there to remove."""
    return run(session, _TAKE_FROM_CART, {"user_id": user_id, "ids": product_ids}).rowcount


def add_item(session: Session, *, order_id: int, product_id: int, product_name: str, unit_price_fen: int,
             quantity: int) -> None:
    run(session, _ADD_ITEM, {"order_id": order_id, "product_id": product_id, "product_name": product_name,
                             "unit_price_fen": unit_price_fen, "quantity": quantity,
                             "subtotal_fen": unit_price_fen * quantity})
