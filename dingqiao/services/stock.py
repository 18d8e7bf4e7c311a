"""Stock changes at one location. Each is one conditional UPDATE (never read-then-write) plus its movement row."""
from sqlalchemy import update
from sqlalchemy.orm import Session

from ..models import StockLevel, StockMovement, StockReason
from . import DomainError


class OutOfStock(DomainError):
    status = 409


def reserve_stock(session: Session, *, location_id: int, product_id: int, quantity: int, order_id: int,
                  product_name: str = "") -> None:
    taken = session.execute(
        update(StockLevel)
        .where(
            StockLevel.location_id == location_id,
            StockLevel.product_id == product_id,
            StockLevel.on_hand - StockLevel.reserved >= quantity,
        )
        .values(reserved=StockLevel.reserved + quantity)
    ).rowcount
    if taken != 1:
        raise OutOfStock(f"{product_name or '商品'}在该门店库存不足，请减少数量或换一家门店。")
    session.add(StockMovement(location_id=location_id, product_id=product_id, reserved_delta=quantity,
                              reason=StockReason.RESERVE, order_id=order_id))


def release_stock(session: Session, *, location_id: int, product_id: int, quantity: int, order_id: int) -> None:
    released = session.execute(
        update(StockLevel)
        .where(
            StockLevel.location_id == location_id,
            StockLevel.product_id == product_id,
            StockLevel.reserved >= quantity,
        )
        .values(reserved=StockLevel.reserved - quantity)
    ).rowcount
    if released != 1:
        # The reservation this order made is gone: stock bookkeeping is broken, stop rather than guess.
        raise RuntimeError(f"no reservation of {quantity} for product {product_id} at location {location_id}")
    session.add(StockMovement(location_id=location_id, product_id=product_id, reserved_delta=-quantity,
                              reason=StockReason.RELEASE, order_id=order_id))
