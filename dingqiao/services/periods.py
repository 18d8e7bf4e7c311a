"""Time buckets for charts: China-time days, weeks and months, summed in one pass over the rows.

Each bucket is a ``SUM(CASE WHEN t >= start AND t < end THEN value ELSE 0 END)`` column of one SELECT, so a
chart of N buckets is one indexed scan of the period, and the SQL is the same on SQLite and Postgres (no
dialect date functions). Times in the database are naive UTC; bucket edges are China-time midnights.
"""
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.orm import Session

from ..china_time import CHINA_TIME

MAX_BUCKETS = 92  # a quarter of days; the date-range pickers are clamped to it


@dataclass(frozen=True)
class Buckets:
    labels: list[str]
    edges: list[datetime]  # naive UTC, len(labels) + 1, ascending
    first_day: date | None = None  # for day buckets: the range as picked (China-time dates)
    last_day: date | None = None

    @property
    def start(self) -> datetime:
        return self.edges[0]

    @property
    def end(self) -> datetime:
        return self.edges[-1]


def to_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def china_today(now: datetime) -> date:
    return now.replace(tzinfo=timezone.utc).astimezone(CHINA_TIME).date()


def china_midnight(day: date) -> datetime:
    """The start of a China-time day, as naive UTC."""
    return to_utc(datetime(day.year, day.month, day.day, tzinfo=CHINA_TIME))


def last_months(now: datetime, count: int) -> Buckets:
    """The ``count`` China-time months up to and including the current one."""
    today = china_today(now)
    months = []
    year, month = today.year, today.month
    for _ in range(count):
        months.append((year, month))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    months.reverse()
    edges = [china_midnight(date(y, m, 1)) for y, m in months]
    y, m = months[-1]
    edges.append(china_midnight(date(y + (m == 12), m % 12 + 1, 1)))
    return Buckets([f"{y}-{m:02d}" for y, m in months], edges)


def last_weeks(now: datetime, count: int) -> Buckets:
    """The ``count`` China-time weeks (Monday to Sunday) up to and including the current one."""
    today = china_today(now)
    monday = today - timedelta(days=today.weekday())
    starts = [monday - timedelta(weeks=count - 1 - i) for i in range(count)]
    edges = [china_midnight(day) for day in starts] + [china_midnight(monday + timedelta(weeks=1))]
    return Buckets([day.strftime("%m-%d") for day in starts], edges)


def days_between(first: date, last: date) -> Buckets:
    """One bucket per China-time day from ``first`` to ``last`` inclusive (at most MAX_BUCKETS)."""
    if last < first:
        first, last = last, first
    first = max(first, last - timedelta(days=MAX_BUCKETS - 1))
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return Buckets([day.strftime("%m-%d") for day in days],
                   [china_midnight(day) for day in days] + [china_midnight(last + timedelta(days=1))], first, last)


def bucket_sums(session: Session, buckets: Buckets, time_column, value, *conditions, joins=()) -> list[int]:
    """Sum ``value`` (a column expression, or 1 to count rows) per bucket of ``time_column`` over rows matching
    ``conditions`` (``joins``: (target, on) pairs when ``value`` needs another table). One query; rows outside
    the buckets are not read beyond the period's range filter."""
    amount = value if not isinstance(value, int) else literal(value)
    columns = [
        func.coalesce(func.sum(case((and_(time_column >= low, time_column < high), amount), else_=0)), 0)
        for low, high in zip(buckets.edges, buckets.edges[1:])
    ]
    query = select(*columns).select_from(time_column.table)
    for target, on in joins:
        query = query.join(target, on)
    row = session.execute(query.where(time_column >= buckets.start, time_column < buckets.end, *conditions)).one()
    return [int(v) for v in row]
