"""Dashboards for outlets and factory stores (pickups, sales and fees; regional sales by day and by outlet, the
outlet ranking and restock volume) and the operations team's overview. Each series is one query over the
period (``periods.bucket_sums``)."""
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..models import (
    EARNING_COMMISSION_STATES,
    MONEY_REVIEWERS,
    PAID_ORDER_STATES,
    AdminUser,
    AuditLog,
    CaseStatus,
    CommissionKind,
    CommissionLine,
    FactoryStore,
    IdentityApplication,
    Order,
    OrderStatus,
    Outlet,
    Product,
    Refund,
    RestockItem,
    ServiceCase,
    StockMovement,
    StockReason,
    User,
    Withdrawal,
)
from ..models.base import utcnow
from .catalog import PRICE_COLUMNS, PRICE_LABELS, change_bps
from .periods import Buckets, bucket_sums, china_midnight, china_today, days_between, last_months
from .queues import APPLICATIONS_WAITING, REFUNDS_WAITING, WITHDRAWALS_WAITING

DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Figures:
    pickups: int
    sales_fen: int
    service_fee_fen: int


def _outlet_figures(session: Session, outlet: Outlet, start: datetime, end: datetime) -> Figures:
    pickups, sales = session.execute(
        select(func.count(), func.coalesce(func.sum(Order.total_fen), 0))
        .where(Order.outlet_id == outlet.id, Order.redeemed_at >= start, Order.redeemed_at < end)
    ).one()
    fees = session.scalar(
        select(func.coalesce(func.sum(CommissionLine.amount_fen), 0))
        .where(CommissionLine.beneficiary_user_id == outlet.owner_user_id,
               CommissionLine.kind == CommissionKind.SERVICE_FEE, CommissionLine.status.in_(EARNING_COMMISSION_STATES),
               CommissionLine.created_at >= start, CommissionLine.created_at < end)
    )
    return Figures(int(pickups), int(sales), int(fees))


def outlet_summary(session: Session, outlet: Outlet, now: datetime | None = None) -> dict[str, Figures]:
    """Today's and this month's pickups, sales handed over and service fees earned (China time)."""
    now = now or utcnow()
    today, month = china_today(now), last_months(now, 1)
    return {
        "today": _outlet_figures(session, outlet, china_midnight(today), china_midnight(today + timedelta(days=1))),
        "month": _outlet_figures(session, outlet, month.start, month.end),
    }


def parse_day(raw: str | None) -> date | None:
    """A date picker's day (YYYY-MM-DD), or None when missing or not a day."""
    try:
        return date.fromisoformat(raw) if raw and len(raw) == 10 and raw.isascii() else None
    except ValueError:
        return None


def parse_range(first: str | None, last: str | None, now: datetime | None = None) -> Buckets:
    """A date-range picker's ``from``/``to`` (YYYY-MM-DD) → day buckets; the last 30 days when missing or bad;
    at most a quarter."""
    today = china_today(now or utcnow())
    end = parse_day(last) or today
    start = parse_day(first) or end - timedelta(days=DEFAULT_DAYS - 1)
    return days_between(start, min(end, today + timedelta(days=1)))


def outlet_trend(session: Session, outlet: Outlet, buckets: Buckets) -> dict:
    """Pickups and sales handed over per day, for the outlet's chart."""
    mine = (Order.outlet_id == outlet.id,)
    return {
        "pickups": {"labels": buckets.labels, "unit": "count",
                    "series": [{"label": "提货单数", "data": bucket_sums(session, buckets, Order.redeemed_at, 1, *mine)}]},
        "sales": {"labels": buckets.labels, "unit": "fen",
                  "series": [{"label": "提货金额", "data": bucket_sums(session, buckets, Order.redeemed_at,
                                                                    Order.total_fen, *mine)}]},
    }


@dataclass(frozen=True)
class OutletRank:
    outlet_id: int
    name: str
    orders: int
    sales_fen: int


def factory_dashboard(session: Session, factory: FactoryStore, buckets: Buckets) -> dict:
    """The region's paid sales by day, per outlet (the ranking) and the restock volume shipped by day."""
    region_outlets = select(Outlet.id).where(Outlet.region_id == factory.region_id)
    paid_in_region = (Order.outlet_id.in_(region_outlets), Order.status.in_(PAID_ORDER_STATES))
    by_day = bucket_sums(session, buckets, Order.paid_at, Order.total_fen, *paid_in_region)
    ranking = [
        OutletRank(row.outlet_id, row.name, int(row.orders), int(row.sales_fen))
        for row in session.execute(
            select(Outlet.id.label("outlet_id"), Outlet.name, func.count(Order.id).label("orders"),
                   func.coalesce(func.sum(Order.total_fen), 0).label("sales_fen"))
            .join(Order, Order.outlet_id == Outlet.id)
            .where(Outlet.region_id == factory.region_id, Order.status.in_(PAID_ORDER_STATES),
                   Order.paid_at >= buckets.start, Order.paid_at < buckets.end)
            .group_by(Outlet.id, Outlet.name).order_by(func.sum(Order.total_fen).desc(), Outlet.id)
        )
    ]
    shipped_value = -StockMovement.on_hand_delta * RestockItem.unit_price_fen
    restock = _restock_volume(session, factory, buckets, shipped_value)
    return {
        "sales": {"labels": buckets.labels, "unit": "fen", "series": [{"label": "区域销售额", "data": by_day}]},
        "ranking": {"labels": [r.name for r in ranking[:10]], "unit": "fen",
                    "series": [{"label": "销售额", "data": [r.sales_fen for r in ranking[:10]]}]},
        "restock": {"labels": buckets.labels, "unit": "fen", "series": [{"label": "进货发货额", "data": restock}]},
        "table": [r.__dict__ for r in ranking],
        "totals": {"sales_fen": sum(by_day), "orders": sum(r.orders for r in ranking), "restock_fen": sum(restock)},
    }


def _restock_volume(session: Session, factory: FactoryStore, buckets: Buckets, value) -> list[int]:
    """Value of the goods the factory store shipped to its outlets, by day of shipment."""
    line = (RestockItem.restock_order_id == StockMovement.restock_order_id) & (
        RestockItem.product_id == StockMovement.product_id)
    return bucket_sums(session, buckets, StockMovement.created_at, value,
                       StockMovement.location_id == factory.location_id,
                       StockMovement.reason == StockReason.RESTOCK_OUT, joins=[(RestockItem, line)])


# ---------------------------------------------------------------- the operations team's overview

@dataclass(frozen=True)
class PeriodFigures:
    sales_fen: int  # paid in the period and not refunded since
    orders: int
    new_members: int


@dataclass(frozen=True)
class MoneyChange:
    """A change of what money comes in or where it goes, as the dashboard lists it: a product's prices (a new
    product's have no old value) or a member's upline (id and name, None for nobody)."""

    at: datetime
    admin: str
    kind: str  # "price", "new_product" or "upline"
    target_id: int
    target_name: str
    prices: tuple[tuple[str, int | None, int], ...] = ()  # (label, old fen, new fen)
    old_upline: tuple[int, str] | None = None
    new_upline: tuple[int, str] | None = None


MONEY_CHANGE_DAYS = 7
MONEY_CHANGES_SHOWN = 50
# A smaller move than an operator may make alone (PRICE_CHANGE_OPERATOR_MAX_BPS) is already worth a look.
PRICE_NOTICE_BPS = 500
# The audit actions they are read from (the product table's writes, services/referrals.correct_upline).
NEW_PRODUCT, PRODUCT_EDITED, UPLINE_CORRECTED = "products.create", "products.update", "member.upline_corrected"


@dataclass(frozen=True)
class AdminOverview:
    today: PeriodFigures
    month: PeriodFigures
    withdrawals_pending: int
    withdrawals_pending_fen: int
    refunds_pending: int
    orders_awaiting_pickup: int
    cases_open: int
    applications_in_review: int
    money_changes: list[MoneyChange]


def _period_figures(session: Session, start: datetime, end: datetime) -> PeriodFigures:
    orders, sales = session.execute(
        select(func.count(), func.coalesce(func.sum(Order.total_fen), 0))
        .where(Order.paid_at >= start, Order.paid_at < end, Order.status.in_(PAID_ORDER_STATES))
    ).one()
    members = session.scalar(select(func.count()).select_from(User).where(User.created_at >= start, User.created_at < end))
    return PeriodFigures(int(sales), int(orders), int(members))


def admin_overview(session: Session, now: datetime | None = None) -> AdminOverview:
    """Today's and this month's sales (China time), orders and new members, and the queues waiting for someone."""
    now = now or utcnow()
    today, month = china_today(now), last_months(now, 1)
    waiting, waiting_fen = session.execute(
        select(func.count(), func.coalesce(func.sum(Withdrawal.amount_fen), 0))
        .where(WITHDRAWALS_WAITING)
    ).one()

    def count(model, *conditions) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(*conditions)))

    return AdminOverview(
        today=_period_figures(session, china_midnight(today), china_midnight(today + timedelta(days=1))),
        month=_period_figures(session, month.start, month.end),
        withdrawals_pending=int(waiting), withdrawals_pending_fen=int(waiting_fen),
        refunds_pending=count(Refund, REFUNDS_WAITING),
        orders_awaiting_pickup=count(Order, Order.status == OrderStatus.PAID),
        cases_open=count(ServiceCase, ServiceCase.status == CaseStatus.OPEN),
        applications_in_review=count(IdentityApplication, APPLICATIONS_WAITING),
        money_changes=money_changes(session, now),
    )


def money_changes(session: Session, now: datetime) -> list[MoneyChange]:
    """The last week's changes that move money, newest first, from the audit log: every price change an
    operator made (however small: many small steps add up), finance's of at least PRICE_NOTICE_BPS, new
    products and every upline correction, each with who made it and old → new."""
    rows = session.execute(
        select(AuditLog, AdminUser.username, AdminUser.role).join(AdminUser, AdminUser.id == AuditLog.actor_id)
        .where(AuditLog.created_at >= now - timedelta(days=MONEY_CHANGE_DAYS), AuditLog.actor_kind == "admin",
               or_(AuditLog.action.in_([NEW_PRODUCT, UPLINE_CORRECTED]),
                   (AuditLog.action == PRODUCT_EDITED) & AuditLog.detail.contains("_price_fen")))
        .order_by(AuditLog.id.desc())
    ).all()
    picked = []
    for row, admin, role in rows:
        detail = json.loads(row.detail)
        if row.action == PRODUCT_EDITED and role in MONEY_REVIEWERS and not any(
                change_bps(*detail["changes"][column]) >= PRICE_NOTICE_BPS
                for column in PRICE_COLUMNS if column in detail["changes"]):
            continue
        picked.append((row, admin, detail))
        if len(picked) == MONEY_CHANGES_SHOWN:
            break
    corrections = [detail for row, _admin, detail in picked if row.action == UPLINE_CORRECTED]
    user_ids = {int(row.target_id) for row, _admin, _detail in picked if row.action == UPLINE_CORRECTED} | {
        detail[key] for detail in corrections for key in ("old_upline_id", "new_upline_id") if detail[key]}
    product_ids = {int(row.target_id) for row, _admin, _detail in picked if row.action != UPLINE_CORRECTED}
    users = {user.id: user.display_name for user in session.scalars(select(User).where(User.id.in_(user_ids)))}
    products = dict(session.execute(select(Product.id, Product.name).where(Product.id.in_(product_ids))).all())

    def member(user_id: int | None) -> tuple[int, str] | None:
        return (user_id, users.get(user_id, f"#{user_id}")) if user_id else None

    def change(row: AuditLog, admin: str, detail: dict) -> MoneyChange:
        target_id = int(row.target_id)
        if row.action == UPLINE_CORRECTED:
            return MoneyChange(row.created_at, admin, "upline", target_id, member(target_id)[1],
                               old_upline=member(detail["old_upline_id"]), new_upline=member(detail["new_upline_id"]))
        if row.action == NEW_PRODUCT:
            kind, prices = "new_product", tuple((label, None, detail["values"][column])
                                                for label, column in zip(PRICE_LABELS, PRICE_COLUMNS))
        else:
            kind, prices = "price", tuple((label, *detail["changes"][column])
                                          for label, column in zip(PRICE_LABELS, PRICE_COLUMNS)
                                          if column in detail["changes"])
        return MoneyChange(row.created_at, admin, kind, target_id, products.get(target_id, f"#{target_id}"),
                           prices=prices)

    return [change(*picked_row) for picked_row in picked]


def sales_trend(session: Session, now: datetime | None = None, days: int = DEFAULT_DAYS) -> dict:
    """The last ``days`` China-time days: sales and paid orders per day, for the dashboard chart."""
    today = china_today(now or utcnow())
    buckets = days_between(today - timedelta(days=days - 1), today)
    paid = (Order.status.in_(PAID_ORDER_STATES),)
    return {
        "sales": {"labels": buckets.labels, "unit": "fen",
                  "series": [{"label": "销售额", "data": bucket_sums(session, buckets, Order.paid_at, Order.total_fen, *paid)}]},
        "orders": {"labels": buckets.labels, "unit": "count",
                   "series": [{"label": "订单数", "data": bucket_sums(session, buckets, Order.paid_at, 1, *paid)}]},
    }
