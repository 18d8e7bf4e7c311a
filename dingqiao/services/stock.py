"""Stock changes at one location. Each is one conditional UPDATE (never read-then-write) plus its movement row,
in the caller's transaction; ``flask check-stock`` checks that every level is the sum of its movements.

Levels and movements are written one way only: the stock aggregate's query module (services/stock_queries.py:
prebuilt statements behind named functions, for the money path's speed)."""
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import FactoryStore, Outlet, Product, StockLevel, StockLocation, StockMovement, StockReason
from . import Conflict, DomainError, NotFound
from . import stock_queries as queries
from .audit import record_audit

MAX_ADJUSTMENT = 100_000
MAX_THRESHOLD = 100_000


class OutOfStock(Conflict):
    pass


def reserve_stock(session: Session, *, location_id: int, product_id: int, quantity: int, order_id: int,
                  product_name: str = "") -> None:
    if not queries.reserve(session, location_id, product_id, quantity):
        raise OutOfStock(f"{product_name or '商品'}在该门店库存不足，请减少数量或换一家门店。")
    queries.add_movement(session, location_id=location_id, product_id=product_id, reserved_delta=quantity,
                  reason=StockReason.RESERVE, order_id=order_id)


def release_stock(session: Session, *, location_id: int, product_id: int, quantity: int, order_id: int) -> None:
    if not queries.release(session, location_id, product_id, quantity):
        # The reservation this order made is gone: stock bookkeeping is broken, stop rather than guess.
        raise RuntimeError(f"no reservation of {quantity} for product {product_id} at location {location_id}")
    queries.add_movement(session, location_id=location_id, product_id=product_id, reserved_delta=-quantity,
                  reason=StockReason.RELEASE, order_id=order_id)


def hand_over_stock(session: Session, *, location_id: int, product_id: int, quantity: int, order_id: int) -> None:
    """Redemption: the reserved goods leave the outlet with the buyer."""
    if not queries.hand_over(session, location_id, product_id, quantity):
        raise RuntimeError(f"order {order_id}: no reservation of {quantity} × product {product_id} to hand over")
    queries.add_movement(session, location_id=location_id, product_id=product_id, on_hand_delta=-quantity,
                  reserved_delta=-quantity, reason=StockReason.REDEEM, order_id=order_id)


def take_stock(session: Session, *, location_id: int, product_id: int, quantity: int, reason: StockReason,
               restock_order_id: int | None = None, note: str = "", product_name: str = "") -> None:
    """Goods leave a location (shipped to another): only from what is on hand and not reserved for buyers."""
    if not queries.take(session, location_id, product_id, quantity):
        available = queries.available(session, location_id, product_id)
        raise OutOfStock(f"{product_name or '商品'}可发库存只有 {available} 件，不够发 {quantity} 件。")
    queries.add_movement(session, location_id=location_id, product_id=product_id, on_hand_delta=-quantity, reason=reason,
                  restock_order_id=restock_order_id, note=note)


def add_stock(session: Session, *, location_id: int, product_id: int, quantity: int, reason: StockReason,
              restock_order_id: int | None = None, note: str = "") -> None:
    """Goods arrive at a location; its level row is created on first arrival."""
    queries.ensure_level(session, location_id, product_id)
    queries.add(session, location_id, product_id, quantity)
    queries.add_movement(session, location_id=location_id, product_id=product_id, on_hand_delta=quantity, reason=reason,
                  restock_order_id=restock_order_id, note=note)


# ---------------------------------------------------------------- the owner's stock page

def owned_location_id(session: Session, user_id: int) -> int | None:
    """The stock location this person runs: their factory store's, else their outlet's."""
    factory = session.scalar(select(FactoryStore.location_id).where(FactoryStore.owner_user_id == user_id))
    return factory or session.scalar(select(Outlet.location_id).where(Outlet.owner_user_id == user_id))


@dataclass(frozen=True)
class StockRow:
    product: Product
    on_hand: int
    reserved: int
    threshold: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @property
    def low(self) -> bool:
        return self.available <= self.threshold


def location_stock(session: Session, location_id: int) -> list[StockRow]:
    """Every product on sale with this location's levels (zero where it never had any); low stock first."""
    levels = {level.product_id: level for level in session.scalars(
        select(StockLevel).where(StockLevel.location_id == location_id))}
    products = session.scalars(select(Product).order_by(Product.sort_order, Product.id)).all()
    rows = []
    for product in products:
        level = levels.get(product.id)
        if level is None and not product.is_on_sale:
            continue
        rows.append(StockRow(product, level.on_hand if level else 0, level.reserved if level else 0,
                             level.low_stock_threshold if level else 0))
    return sorted(rows, key=lambda row: (not row.low, row.product.sort_order, row.product.id))


def recent_movements(session: Session, location_id: int, limit: int = 30) -> list[tuple[StockMovement, str]]:
    return list(session.execute(
        select(StockMovement, Product.name).join(Product, Product.id == StockMovement.product_id)
        .where(StockMovement.location_id == location_id)
        .order_by(StockMovement.id.desc()).limit(limit)
    ).all())


def adjust_stock(session: Session, *, location_id: int, product_id: int, delta: int, note: str,
                 actor_kind: str, actor_id: int) -> None:
    """手动调整 (breakage, a count, a gift): with a note, never below what is reserved for buyers; audited."""
    note = " ".join((note or "").split())[:200]
    if not note:
        raise StockError("请填写调整原因（如盘点、破损）。")
    if delta == 0 or abs(delta) > MAX_ADJUSTMENT:
        raise StockError(f"调整数量需为 1 到 {MAX_ADJUSTMENT} 之间的正数或负数。")
    with write_transaction(session):
        if session.get(Product, product_id) is None or session.get(StockLocation, location_id) is None:
            raise NotFound("商品不存在。")
        queries.ensure_level(session, location_id, product_id)
        if not queries.adjust(session, location_id, product_id, delta):
            raise StockError("调整后库存会少于已被订单预留的数量，不能调整。")
        queries.add_movement(session, location_id=location_id, product_id=product_id, on_hand_delta=delta,
                      reason=StockReason.ADJUST, note=note)
        record_audit(session, actor_kind=actor_kind, actor_id=actor_id, action="stock.adjust",
                     target_type="stock_location", target_id=location_id,
                     detail={"product_id": product_id, "delta": delta, "note": note})


def set_low_stock_threshold(session: Session, *, location_id: int, product_id: int, threshold: int) -> None:
    if not 0 <= threshold <= MAX_THRESHOLD:
        raise StockError(f"预警数量需在 0 到 {MAX_THRESHOLD} 之间。")
    with write_transaction(session):
        if session.get(Product, product_id) is None:
            raise NotFound("商品不存在。")
        queries.ensure_level(session, location_id, product_id)
        queries.set_threshold(session, location_id, product_id, threshold)


class StockError(DomainError):
    pass
