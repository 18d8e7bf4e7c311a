"""我的团队: the member's direct and second-level members (never deeper than the commission depth in force),
their paid sales and how the team grows. Every number is one indexed query over the closure table, so the
board stays fast for large teams; names are masked."""
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import PAID_ORDER_STATES, Order, ReferralBinding, TeamPath, User
from ..models.base import utcnow
from .commissions import DEFAULT_REFERRAL_DEPTH, current_rule
from .periods import bucket_sums, last_months, last_weeks
from .redemption import mask_name

LIST_LIMIT = 50


@dataclass(frozen=True)
class TeamMemberRow:
    name: str  # masked
    depth: int
    joined_at: datetime
    total_sales_fen: int


@dataclass(frozen=True)
class TeamBoard:
    depth_limit: int
    counts: dict[int, int]  # depth → members
    month_sales_fen: int
    total_sales_fen: int
    new_this_week: int
    members: list[TeamMemberRow]

    @property
    def size(self) -> int:
        return sum(self.counts.values())


def depth_in_force(session: Session) -> int:
    rule = current_rule(session)
    return rule.referral_depth if rule else DEFAULT_REFERRAL_DEPTH


def _team(user_id: int, depth_limit: int):
    return select(TeamPath.descendant_id).where(TeamPath.ancestor_id == user_id, TeamPath.depth <= depth_limit)


def team_board(session: Session, user_id: int, now: datetime | None = None) -> TeamBoard:
    now = now or utcnow()
    depth_limit = depth_in_force(session)
    team = _team(user_id, depth_limit)
    counts = dict(session.execute(
        select(TeamPath.depth, func.count()).where(TeamPath.ancestor_id == user_id, TeamPath.depth <= depth_limit)
        .group_by(TeamPath.depth)
    ).all())
    month_start = last_months(now, 1).start  # months are China-time months
    sales = select(func.coalesce(func.sum(Order.total_fen), 0)).where(Order.user_id.in_(team), Order.status.in_(PAID_ORDER_STATES))
    total = session.scalar(sales)
    month = session.scalar(sales.where(Order.paid_at >= month_start))
    new_this_week = session.scalar(
        select(func.count()).select_from(ReferralBinding)
        .where(ReferralBinding.user_id.in_(team), ReferralBinding.bound_at >= now - timedelta(days=7))
    )
    per_member = (
        select(Order.user_id, func.sum(Order.total_fen).label("sales"))
        .where(Order.user_id.in_(team), Order.status.in_(PAID_ORDER_STATES)).group_by(Order.user_id).subquery()
    )
    rows = session.execute(
        select(User.nickname, User.referral_code, TeamPath.depth, ReferralBinding.bound_at, per_member.c.sales)
        .join(TeamPath, TeamPath.descendant_id == User.id)
        .join(ReferralBinding, ReferralBinding.user_id == User.id)
        .outerjoin(per_member, per_member.c.user_id == User.id)
        .where(TeamPath.ancestor_id == user_id, TeamPath.depth <= depth_limit)
        .order_by(ReferralBinding.bound_at.desc()).limit(LIST_LIMIT)
    ).all()
    members = [TeamMemberRow(mask_name(nickname or f"用户{code}"), depth, bound_at, int(sales or 0))
               for nickname, code, depth, bound_at, sales in rows]
    return TeamBoard(depth_limit, {d: counts.get(d, 0) for d in range(1, depth_limit + 1)}, int(month), int(total),
                     int(new_this_week), members)



def team_trends(session: Session, user_id: int, now: datetime | None = None, weeks: int = 12,
                months: int = 6) -> dict:
    """Chart data for the team board: new members per week and the team's paid sales per month (China time),
    within the commission depth in force. Two queries, each one pass over the period."""
    now = now or utcnow()
    team = _team(user_id, depth_in_force(session))
    week_buckets = last_weeks(now, weeks)
    month_buckets = last_months(now, months)
    joined = bucket_sums(session, week_buckets, ReferralBinding.bound_at, 1, ReferralBinding.user_id.in_(team))
    sales = bucket_sums(session, month_buckets, Order.paid_at, Order.total_fen,
                        Order.user_id.in_(team), Order.status.in_(PAID_ORDER_STATES))
    return {
        "new_members": {"labels": week_buckets.labels, "series": [{"label": "新增成员", "data": joined}],
                        "unit": "people"},
        "sales": {"labels": month_buckets.labels, "series": [{"label": "团队业绩", "data": sales}], "unit": "fen"},
    }
