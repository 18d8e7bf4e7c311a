"""The stock aggregate's statements (levels and their movements), prebuilt once and run through ``db.run`` behind
named functions: every order reserves, every pickup hands over, every unpaid cancel releases, so the money path
needs them fast, and the rarer moves use the same ones. Each change of a level is one conditional UPDATE (never
read-then-write): the functions say whether it applied. services/stock.py decides; this module only reads and
writes. No ``StockLevel`` or ``StockMovement`` object is loaded or added while they are written, so none goes
stale."""
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from ..db import insert_or_ignore, run
from ..models import StockLevel, StockMovement, StockReason

_RESERVE = (update(StockLevel)
            .where(StockLevel.location_id == bindparam("at"), StockLevel.product_id == bindparam("product"),
                   StockLevel.available >= bindparam("units"))
            .values(reserved=StockLevel.reserved + bindparam("units")))
_RELEASE = (update(StockLevel)
            .where(StockLevel.location_id == bindparam("at"), StockLevel.product_id == bindparam("product"),
                   StockLevel.reserved >= bindparam("units"))
            .values(reserved=StockLevel.reserved - bindparam("units")))
_HAND_OVER = (update(StockLevel)
              .where(StockLevel.location_id == bindparam("at"),
                     StockLevel.product_id == bindparam("product"),
                     StockLevel.reserved >= bindparam("units"), StockLevel.on_hand >= bindparam("units"))
              .values(on_hand=StockLevel.on_hand - bindparam("units"),
                      reserved=StockLevel.reserved - bindparam("units")))
_TAKE = (update(StockLevel)
         .where(StockLevel.location_id == bindparam("at"), StockLevel.product_id == bindparam("product"),
                StockLevel.on_hand - StockLevel.reserved >= bindparam("units"))
         .values(on_hand=StockLevel.on_hand - bindparam("units")))
_ADD = (update(StockLevel)
        .where(StockLevel.location_id == bindparam("at"), StockLevel.product_id == bindparam("product"))
        .values(on_hand=StockLevel.on_hand + bindparam("units")))
_ADJUST = (update(StockLevel)  # by a signed delta, never below what is reserved
           .where(StockLevel.location_id == bindparam("at"), StockLevel.product_id == bindparam("product"),
                  StockLevel.on_hand + bindparam("delta") >= StockLevel.reserved)
           .values(on_hand=StockLevel.on_hand + bindparam("delta")))
_SET_THRESHOLD = (update(StockLevel)
                  .where(StockLevel.location_id == bindparam("at"), StockLevel.product_id == bindparam("product"))
                  .values(low_stock_threshold=bindparam("threshold")))
_AVAILABLE = select(StockLevel.on_hand - StockLevel.reserved).where(StockLevel.location_id == bindparam("at"),
                                                                    StockLevel.product_id == bindparam("product"))
_LEVEL_ID = select(StockLevel.id).where(StockLevel.location_id == bindparam("at"),
                                        StockLevel.product_id == bindparam("product"))
_ADD_MOVEMENT = insert(StockMovement)


def add_movement(session: Session, *, location_id: int, product_id: int, reason: StockReason, on_hand_delta: int = 0,
                 reserved_delta: int = 0, order_id: int | None = None, restock_order_id: int | None = None,
                 note: str = "") -> None:
    """The movement row that goes with every change of a level."""
    run(session, _ADD_MOVEMENT, {"location_id": location_id, "product_id": product_id, "reason": reason,
                                 "on_hand_delta": on_hand_delta, "reserved_delta": reserved_delta,
                                 "order_id": order_id, "restock_order_id": restock_order_id, "note": note})


def reserve(session: Session, location_id: int, product_id: int, units: int) -> bool:
    """Reserve ``units`` if that many are available (on hand − reserved)."""
    return run(session, _RESERVE, {"at": location_id, "product": product_id, "units": units}).rowcount == 1


def release(session: Session, location_id: int, product_id: int, units: int) -> bool:
    """Give back a reservation of ``units``; False if that much is not reserved."""
    return run(session, _RELEASE, {"at": location_id, "product": product_id, "units": units}).rowcount == 1


def hand_over(session: Session, location_id: int, product_id: int, units: int) -> bool:
    """Reserved goods leave with the buyer: on hand and reserved both down by ``units``."""
    return run(session, _HAND_OVER, {"at": location_id, "product": product_id, "units": units}).rowcount == 1


def take(session: Session, location_id: int, product_id: int, units: int) -> bool:
    """``units`` leave from what is on hand and not reserved."""
    return run(session, _TAKE, {"at": location_id, "product": product_id, "units": units}).rowcount == 1


def add(session: Session, location_id: int, product_id: int, units: int) -> None:
    run(session, _ADD, {"at": location_id, "product": product_id, "units": units})


def adjust(session: Session, location_id: int, product_id: int, delta: int) -> bool:
    """On hand changed by a signed ``delta``, never below what is reserved."""
    return run(session, _ADJUST, {"at": location_id, "product": product_id, "delta": delta}).rowcount == 1


def set_threshold(session: Session, location_id: int, product_id: int, threshold: int) -> None:
    run(session, _SET_THRESHOLD, {"at": location_id, "product": product_id, "threshold": threshold})


def available(session: Session, location_id: int, product_id: int) -> int:
    return run(session, _AVAILABLE, {"at": location_id, "product": product_id}).scalar() or 0


def ensure_level(session: Session, location_id: int, product_id: int) -> None:
    """The location's (empty) level row of the product, unless it has one: made once, however many try at once."""
    if run(session, _LEVEL_ID, {"at": location_id, "product": product_id}).scalar() is None:
        insert_or_ignore(session, StockLevel, [{"location_id": location_id, "product_id": product_id, "on_hand": 0,
                                                "reserved": 0, "low_stock_threshold": 0}], ("location_id", "product_id"))
