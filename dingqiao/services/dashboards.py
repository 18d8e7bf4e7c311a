"""Dashboards for outlets and factory stores (pickups, sales and fees; regional sales by day and by outlet, the
outlet ranking and restock volume) and the operations team's overview. Each series is one query over the
period (``periods.bucket_sums``)."""
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import (
    ApplicationStatus,
    CaseStatus,
    CommissionKind,
    CommissionLine,
    CommissionStatus,
    FactoryStore,
    IdentityApplication,
    Order,
    OrderStatus,
    Outlet,
    Refund,
    RefundStatus,
    RestockItem,
    ServiceCase,
    StockMovement,
    StockReason,
    User,
    Withdrawal,
    WithdrawalStatus,
)
from ..models.base import utcnow
from .periods import Buckets, bucket_sums, china_midnight, china_today, days_between, last_months

PAID = (OrderStatus.PAID, OrderStatus.COMPLETED)
EARNED = (CommissionStatus.FROZEN, CommissionStatus.SETTLED)
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
               CommissionLine.kind == CommissionKind.SERVICE_FEE, CommissionLine.status.in_(EARNED),
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


def parse_range(first: str | None, last: str | None, now: datetime | None = None) -> Buckets:
    """A date-range picker's ``from``/``to`` (YYYY-MM-DD) → day buckets; the last 30 days when missing or bad;
    at most a quarter."""
    today = china_today(now or utcnow())

    def parse(raw: str | None) -> date | None:
        try:
            return date.fromisoformat(raw) if raw and len(raw) == 10 and raw.isascii() else None
        except ValueError:
            return None

    end = parse(last) or today
    start = parse(first) or end - timedelta(days=DEFAULT_DAYS - 1)
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
    paid_in_region = (Order.outlet_id.in_(region_outlets), Order.status.in_(PAID))
    by_day = bucket_sums(session, buckets, Order.paid_at, Order.total_fen, *paid_in_region)
    ranking = [
        OutletRank(outlet_id, name, int(orders), int(sales))
        for outlet_id, name, orders, sales in session.execute(
            select(Outlet.id, Outlet.name, func.count(Order.id), func.coalesce(func.sum(Order.total_fen), 0))
            .join(Order, Order.outlet_id == Outlet.id)
            .where(Outlet.region_id == factory.region_id, Order.status.in_(PAID),
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
class AdminOverview:
    today: PeriodFigures
    month: PeriodFigures
    withdrawals_pending: int
    withdrawals_pending_fen: int
    refunds_pending: int
    orders_awaiting_pickup: int
    cases_open: int
    applications_in_review: int


def _period_figures(session: Session, start: datetime, end: datetime) -> PeriodFigures:
    orders, sales = session.execute(
        select(func.count(), func.coalesce(func.sum(Order.total_fen), 0))
        .where(Order.paid_at >= start, Order.paid_at < end, Order.status.in_(PAID))
    ).one()
    members = session.scalar(select(func.count()).select_from(User).where(User.created_at >= start, User.created_at < end))
    return PeriodFigures(int(sales), int(orders), int(members))


def admin_overview(session: Session, now: datetime | None = None) -> AdminOverview:
    """Today's and this month's sales (China time), orders and new members, and the queues waiting for someone."""
    now = now or utcnow()
    today, month = china_today(now), last_months(now, 1)
    waiting, waiting_fen = session.execute(
        select(func.count(), func.coalesce(func.sum(Withdrawal.amount_fen), 0))
        .where(Withdrawal.status == WithdrawalStatus.REQUESTED)
    ).one()

    def count(model, *conditions) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(*conditions)))

    return AdminOverview(
        today=_period_figures(session, china_midnight(today), china_midnight(today + timedelta(days=1))),
        month=_period_figures(session, month.start, month.end),
        withdrawals_pending=int(waiting), withdrawals_pending_fen=int(waiting_fen),
        refunds_pending=count(Refund, Refund.status == RefundStatus.REQUESTED),
        orders_awaiting_pickup=count(Order, Order.status == OrderStatus.PAID),
        cases_open=count(ServiceCase, ServiceCase.status == CaseStatus.OPEN),
        applications_in_review=count(IdentityApplication, IdentityApplication.status == ApplicationStatus.REVIEW),
    )


def sales_trend(session: Session, now: datetime | None = None, days: int = DEFAULT_DAYS) -> dict:
    """The last ``days`` China-time days: sales and paid orders per day, for the dashboard chart."""
    today = china_today(now or utcnow())
    buckets = days_between(today - timedelta(days=days - 1), today)
    paid = (Order.status.in_(PAID),)
    return {
        "sales": {"labels": buckets.labels, "unit": "fen",
                  "series": [{"label": "销售额", "data": bucket_sums(session, buckets, Order.paid_at, Order.total_fen, *paid)}]},
        "orders": {"labels": buckets.labels, "unit": "count",
                   "series": [{"label": "订单数", "data": bucket_sums(session, buckets, Order.paid_at, 1, *paid)}]},
    }
