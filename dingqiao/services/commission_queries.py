"""Commission lines' statements (who is paid for an order, its lines written, scheduled, settled), prebuilt once and
run through ``db.run`` behind named functions: the pay and pickup transactions and the settling cron run them.
services/commissions.py decides (rates, levels, who is left out, the ledger postings); this module only reads and
writes, rows by column name (``db.rows_as``)."""
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.orm import Session

from ..db import rows_as, run
from ..models import (CommissionLine, CommissionRuleVersion, CommissionStatus, FactoryStore, Order, OrderItem,
                      OrderStatus, Outlet, ReferralBinding, SiteStatus, User)

_UPLINE = select(ReferralBinding.upline_id).where(ReferralBinding.user_id == bindparam("user_id"))
_PAYEES = (
    select(Outlet.owner_user_id, FactoryStore.owner_user_id.label("factory_owner_id"))
    .outerjoin(FactoryStore, and_(FactoryStore.region_id == Outlet.region_id,
                                  FactoryStore.status == SiteStatus.ACTIVE))  # one per region at most
    .where(Outlet.id == bindparam("outlet_id"))
)
_ACTIVE_USERS = select(User.id).where(User.id.in_(bindparam("ids", expanding=True)), User.is_active.is_(True))
_ITEMS = (select(OrderItem.id, OrderItem.subtotal_fen).where(OrderItem.order_id == bindparam("order_id"))
          .order_by(OrderItem.id))
_ADD_LINE = insert(CommissionLine).returning(CommissionLine.id)
_RULE_COOLING_DAYS = select(CommissionRuleVersion.cooling_days).where(CommissionRuleVersion.id == bindparam("rule_id"))
_SCHEDULE = (update(CommissionLine)
             .where(CommissionLine.order_id == bindparam("order"), CommissionLine.status == CommissionStatus.FROZEN)
             .values(available_at=bindparam("from_when")))


def _settle_due(*conditions):
    """FROZEN → SETTLED for lines whose date has come, of orders picked up and without an open after-sales
    case; returns what the wallets need."""
    return (
        update(CommissionLine)
        .where(CommissionLine.status == CommissionStatus.FROZEN, CommissionLine.available_at <= bindparam("now"),
               CommissionLine.order_id.in_(select(Order.id).where(Order.status == OrderStatus.COMPLETED,
                                                                  Order.after_sales_open.is_(False))),
               *conditions)
        .values(status=CommissionStatus.SETTLED, settled_at=bindparam("now"))
        .returning(CommissionLine.id, CommissionLine.order_id, CommissionLine.beneficiary_user_id,
                   CommissionLine.amount_fen, CommissionLine.kind)
    )


_SETTLE_DUE = _settle_due()  # the cooling cron
_SETTLE_DUE_OF_ORDER = _settle_due(CommissionLine.order_id == bindparam("order"))  # a pickup
_ANY_RULE = select(CommissionRuleVersion.id).limit(1)


class Line(NamedTuple):
    id: int
    order_id: int
    beneficiary_user_id: int
    amount_fen: int
    kind: str


def any_rule(session: Session) -> bool:
    return run(session, _ANY_RULE).scalar() is not None


def upline_of(session: Session, user_id: int) -> int | None:
    return run(session, _UPLINE, {"user_id": user_id}).scalar()


def payees(session: Session, outlet_id: int) -> tuple[int, int | None]:
    """The outlet's owner and its region's open factory store's owner (None when there is none)."""
    row = run(session, _PAYEES, {"outlet_id": outlet_id}).one()
    return row.owner_user_id, row.factory_owner_id


def active_user_ids(session: Session, user_ids: list[int]) -> set[int]:
    return set(run(session, _ACTIVE_USERS, {"ids": user_ids}).scalars())


def item_subtotals(session: Session, order_id: int) -> list[tuple[int, int]]:
    """(order item id, subtotal in fen) of each of the order's lines, in id order."""
    return [(row.id, row.subtotal_fen) for row in run(session, _ITEMS, {"order_id": order_id})]


def add_line(session: Session, *, order_id: int, order_item_id: int, kind: str, level: int, beneficiary_user_id: int,
             rule_version_id: int, base_fen: int, rate_bps: int, amount_fen: int) -> int:
    """A FROZEN line; its id."""
    return run(session, _ADD_LINE, {
        "order_id": order_id, "order_item_id": order_item_id, "kind": kind, "level": level,
        "beneficiary_user_id": beneficiary_user_id, "rule_version_id": rule_version_id, "base_fen": base_fen,
        "rate_bps": rate_bps, "amount_fen": amount_fen, "status": CommissionStatus.FROZEN,
    }).scalar_one()


def cooling_days(session: Session, rule_id: int) -> int:
    return run(session, _RULE_COOLING_DAYS, {"rule_id": rule_id}).scalar() or 0


def schedule_frozen(session: Session, order_id: int, from_when: datetime) -> None:
    """The date from which each of the order's frozen lines may settle."""
    run(session, _SCHEDULE, {"order": order_id, "from_when": from_when})


def settle_due(session: Session, now: datetime, order_id: int | None = None) -> list[Line]:
    """FROZEN → SETTLED for due lines (of one order, or of all): what was settled, for the wallets."""
    if order_id is None:
        return rows_as(Line, run(session, _SETTLE_DUE, {"now": now}))
    return rows_as(Line, run(session, _SETTLE_DUE_OF_ORDER, {"order": order_id, "now": now}))
