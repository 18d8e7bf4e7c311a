"""The payment aggregate's statements (orders being paid, payments, payment events, refused notifies), prebuilt
once and run through ``db.run`` behind named functions: every pay notify runs them, and building them per call
through the ORM cost the pay path most of its time (docs/performance.md). Rows come back as dataclasses filled by
column name (``db.row_as``). services/payments.py decides; this module only reads and writes.

What ``db.run`` gives up: ORM objects already loaded in the session do not see these writes until the commit
refreshes them. The ORM is used for everything else about payments (finance's pages, the expiry job).
"""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..db import row_as, run
from ..models import (Order, OrderStatus, Payment, PaymentEvent, PaymentEventKind, PaymentStatus,
                      RefusedNotify)


@dataclass(frozen=True)
class OrderToPay:
    """What a pay notify is checked against and what settling an order needs (``settlement.on_order_paid``)."""
    id: int
    order_no: str
    user_id: int
    outlet_id: int
    total_fen: int


@dataclass(frozen=True)
class StoredPayment:
    id: int
    transaction_id: str | None


_ORDER_TO_PAY = (select(Order.id, Order.order_no, Order.user_id, Order.outlet_id, Order.total_fen)
                 .where(Order.order_no == bindparam("order_no")))
_PAID_BY_ANOTHER = select(Payment.id).where(Payment.transaction_id == bindparam("transaction_id"),
                                            Payment.order_id != bindparam("order_id"))
_CODE_TAKEN = select(Order.id).where(Order.pickup_code == bindparam("code"))
_MARK_PAID = (update(Order).where(Order.id == bindparam("order_id"), Order.status == OrderStatus.PENDING_PAYMENT)
              .values(status=OrderStatus.PAID, paid_at=bindparam("now"), pickup_code=bindparam("code"),
                      rule_version_id=bindparam("rule_id")))
_ORDER_STATUS = select(Order.status).where(Order.id == bindparam("order_id"))
_PAYMENT_OF = select(Payment.id, Payment.transaction_id).where(Payment.out_trade_no == bindparam("out_trade_no"))
_ADD_PAYMENT = insert(Payment)
_PAYMENT_PREPAID = (update(Payment).where(Payment.id == bindparam("payment_id"))
                    .values(prepay_id=bindparam("prepay_id"), api=bindparam("api")))
_PAYMENT_PAID = (update(Payment).where(Payment.id == bindparam("payment_id"))
                 .values(status=PaymentStatus.PAID, transaction_id=bindparam("paid_by"), paid_at=bindparam("now")))
_ADD_EVENT = insert(PaymentEvent)
_LATE_RESULT_OF = select(PaymentEvent.id).where(PaymentEvent.kind == PaymentEventKind.LATE_RESULT,
                                                PaymentEvent.transaction_id == bindparam("transaction_id"))


def _count_refused(dialect_insert):
    """One statement per refused notify, whatever the flood: the row of its (source, reason) is created or counted
    up atomically, so concurrent refusals never lose a count nor collide on the unique key."""
    return dialect_insert(RefusedNotify).values(
        source=bindparam("source"), reason=bindparam("reason"), count=1, first_seen_at=bindparam("now"),
        last_seen_at=bindparam("now"), last_detail=bindparam("detail"),
    ).on_conflict_do_update(
        index_elements=[RefusedNotify.source, RefusedNotify.reason],
        set_={"count": RefusedNotify.count + 1, "last_seen_at": bindparam("now"), "last_detail": bindparam("detail")},
    )


_COUNT_REFUSED = {"sqlite": _count_refused(sqlite.insert), "postgresql": _count_refused(postgresql.insert)}


# ---------------------------------------------------------------- orders being paid

def order_to_pay(session: Session, order_no: str) -> OrderToPay | None:
    row = run(session, _ORDER_TO_PAY, {"order_no": order_no}).one_or_none()
    return row_as(OrderToPay, row) if row is not None else None


def order_status(session: Session, order_id: int) -> str | None:
    return run(session, _ORDER_STATUS, {"order_id": order_id}).scalar()


def pickup_code_taken(session: Session, code: str) -> bool:
    return run(session, _CODE_TAKEN, {"code": code}).scalar() is not None


def mark_paid(session: Session, order_id: int, *, now: datetime, pickup_code: str, rule_id: int | None) -> bool:
    """PENDING_PAYMENT → PAID with its pickup code and commission rule; False if the order was not waiting."""
    return run(session, _MARK_PAID, {"order_id": order_id, "now": now, "code": pickup_code,
                                     "rule_id": rule_id}).rowcount == 1


# ---------------------------------------------------------------- payments

def payment_of(session: Session, out_trade_no: str) -> StoredPayment | None:
    row = run(session, _PAYMENT_OF, {"out_trade_no": out_trade_no}).one_or_none()
    return row_as(StoredPayment, row) if row is not None else None


def paid_by_another_order(session: Session, transaction_id: str, order_id: int) -> bool:
    """Whether WeChat's transaction already paid a different order."""
    return run(session, _PAID_BY_ANOTHER, {"transaction_id": transaction_id, "order_id": order_id}).scalar() is not None


def add_prepaid_payment(session: Session, *, order_id: int, out_trade_no: str, amount_fen: int, prepay_id: str,
                        api: str) -> None:
    run(session, _ADD_PAYMENT, {"order_id": order_id, "out_trade_no": out_trade_no, "amount_fen": amount_fen,
                                "prepay_id": prepay_id, "api": api})


def add_paid_payment(session: Session, *, order_id: int, out_trade_no: str, amount_fen: int, transaction_id: str,
                     now: datetime, api: str) -> None:
    run(session, _ADD_PAYMENT, {"order_id": order_id, "out_trade_no": out_trade_no, "amount_fen": amount_fen,
                                "status": PaymentStatus.PAID, "transaction_id": transaction_id, "paid_at": now,
                                "api": api})


def set_prepay_id(session: Session, payment_id: int, *, prepay_id: str, api: str) -> None:
    run(session, _PAYMENT_PREPAID, {"payment_id": payment_id, "prepay_id": prepay_id, "api": api})


def set_paid(session: Session, payment_id: int, *, transaction_id: str, now: datetime) -> None:
    run(session, _PAYMENT_PAID, {"payment_id": payment_id, "paid_by": transaction_id, "now": now})


# ---------------------------------------------------------------- events and refused notifies

def add_event(session: Session, kind: PaymentEventKind, *, out_trade_no: str, transaction_id: str, amount_fen: int,
              detail: str, needs_attention: bool) -> None:
    """One row of what happened to a payment, for finance."""
    run(session, _ADD_EVENT, {"kind": kind, "out_trade_no": out_trade_no, "transaction_id": transaction_id,
                              "amount_fen": amount_fen, "detail": detail, "needs_attention": needs_attention})


def late_result_recorded(session: Session, transaction_id: str) -> bool:
    return run(session, _LATE_RESULT_OF, {"transaction_id": transaction_id}).scalar() is not None


def count_refused_notify(session: Session, *, source: str, reason: str, now: datetime, detail: str) -> None:
    run(session, _COUNT_REFUSED[session.get_bind().dialect.name],
        {"source": source, "reason": reason, "now": now, "detail": detail})
