"""The work the shop does by itself: what runs when (``SCHEDULE``), the lease that lets each due run happen once
however many processes and hosts try, the record of each run, and the dashboard's view of it.

A run is claimed by ONE conditional UPDATE of its ``scheduled_jobs`` row — due (``next_run_at <= now``) and no
live lease — in a write transaction (``BEGIN IMMEDIATE`` on SQLite; on Postgres the row lock and READ
COMMITTED's re-check of the WHERE clause): whoever changed the row (rowcount 1) runs the job; everyone else
sees a lease and passes by. The lease ends at ``lease_until``, long enough for the job, so a run whose process
died is taken over after it; a run that outlives its lease may meet a second one, which every job here takes
in its stride (each is built from conditional updates of its own). Finishing moves ``next_run_at`` to the
schedule's next time after the run (the next full minute, the next 03:00 in China), never "now + interval",
so runs do not drift and a nightly job missed while nothing ran is run once, late, then back on its time.
Times are naive UTC, as everywhere in the database.
"""
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from ..china_time import CHINA_TIME
from ..db import insert_or_ignore, write_transaction
from ..models import JobRun, ScheduledJob
from ..models.base import utcnow
from .periods import china_today, to_utc

EPOCH = datetime(2000, 1, 1)
SUMMARY_CHARS = 8000  # a check that finds thousands of problems keeps its first ones
KEEP_RUNS = timedelta(days=90)


@dataclass(frozen=True)
class Every:
    """On a fixed grid of ``seconds`` (every full minute, every full hour …); due at once when first seen."""

    seconds: int

    def first_run(self, now: datetime) -> datetime:
        return now

    def next_after(self, moment: datetime) -> datetime:
        step = timedelta(seconds=self.seconds)
        return moment - (moment - EPOCH) % step + step

    def describe(self) -> str:
        if self.seconds % 3600 == 0:
            return "每小时" if self.seconds == 3600 else f"每 {self.seconds // 3600} 小时"
        if self.seconds % 60 == 0:
            return "每分钟" if self.seconds == 60 else f"每 {self.seconds // 60} 分钟"
        return f"每 {self.seconds} 秒"


@dataclass(frozen=True)
class DailyAt:
    """Once a day at ``hour:minute`` China time (no daylight saving there, so a fixed UTC+8 is exact); first due
    at the next such time, so a new install does not back up or check at its first start."""

    hour: int
    minute: int = 0

    def first_run(self, now: datetime) -> datetime:
        return self.next_after(now)

    def next_after(self, moment: datetime) -> datetime:
        today = china_today(moment)
        candidate = self._on(today)
        return candidate if candidate > moment else self._on(today + timedelta(days=1))

    def _on(self, day: date) -> datetime:
        return to_utc(datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=CHINA_TIME))

    def describe(self) -> str:
        return f"每天 {self.hour:02d}:{self.minute:02d}"


@dataclass(frozen=True)
class JobSpec:
    name: str  # the CLI command doing the same work, where there is one
    label: str  # for the dashboard
    schedule: Every | DailyAt
    lease: timedelta  # comfortably longer than a run takes: after it, another process may take the run over


# In the order a pass runs them: the outbox first, it is what people wait for.
SCHEDULE: tuple[JobSpec, ...] = (
    JobSpec("deliver-messages", "发送微信消息", Every(5), timedelta(minutes=2)),
    JobSpec("cancel-expired-orders", "取消超时未付订单", Every(30), timedelta(minutes=5)),
    JobSpec("reconcile-wechat-pay", "微信支付对账（退款、打款）", Every(600), timedelta(minutes=10)),
    JobSpec("settle-commissions", "结算冷静期满的佣金", Every(3600), timedelta(minutes=10)),
    JobSpec("check-money", "资金核对", DailyAt(3), timedelta(minutes=30)),
    JobSpec("check-stock", "库存核对", DailyAt(3), timedelta(minutes=30)),
    JobSpec("audit-verify", "审计链校验", DailyAt(3), timedelta(minutes=30)),
    JobSpec("backup", "夜间备份", DailyAt(3, 30), timedelta(hours=2)),
    JobSpec("prune-job-runs", f"清理 {KEEP_RUNS.days} 天前的任务记录、过期提交码与旧海报", DailyAt(4), timedelta(minutes=10)),
)


def add_missing_jobs(session: Session, specs: tuple[JobSpec, ...], now: datetime) -> None:
    """Create the rows of jobs seen for the first time. INSERT … ON CONFLICT DO NOTHING: processes starting
    together all try, one row results, and nobody fails."""
    if not specs:
        return
    rows = [{"name": spec.name, "next_run_at": spec.schedule.first_run(now), "last_summary": "", "runs": 0,
             "failures": 0} for spec in specs]
    with write_transaction(session):
        insert_or_ignore(session, ScheduledJob, rows, "name")


def due_jobs(session: Session, specs: tuple[JobSpec, ...], now: datetime) -> list[JobSpec]:
    """The jobs worth trying to claim, by a plain read: most passes find nothing due and write nothing. The
    rows of jobs seen for the first time are created first."""
    rows = _schedule_rows(session)
    if missing := tuple(spec for spec in specs if spec.name not in rows):
        add_missing_jobs(session, missing, now)
        rows = _schedule_rows(session)
    return [spec for spec in specs if _claimable(rows[spec.name], now)]


def _claimable(row, now: datetime) -> bool:
    """What ``claim_run``'s WHERE says, read ahead of it."""
    return row.next_run_at <= now and (row.lease_until is None or row.lease_until < now)


def _schedule_rows(session: Session) -> dict:
    return {row.name: row for row in session.execute(
        select(ScheduledJob.name, ScheduledJob.next_run_at, ScheduledJob.lease_until))}


def claim_run(session: Session, spec: JobSpec, owner: str, now: datetime) -> bool:
    """Take the due run of ``spec`` for ``owner``: True for the one caller whose UPDATE changed the row."""
    with write_transaction(session):
        return session.execute(
            update(ScheduledJob)
            .where(ScheduledJob.name == spec.name, ScheduledJob.next_run_at <= now,
                   or_(ScheduledJob.lease_until.is_(None), ScheduledJob.lease_until < now))
            .values(lease_owner=owner, lease_until=now + spec.lease, last_started_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount == 1


@dataclass(frozen=True)
class Finished:
    """One run as it ended: ``kept`` when it was worth a JobRun row (it failed, or did something)."""

    name: str
    owner: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    summary: str
    kept: bool


def finish_run(session: Session, spec: JobSpec, run: Finished) -> None:
    """Record the run, give the lease back and set the next run from the schedule. Only while the lease is
    still the owner's: a run taken over after its lease ran out leaves the row to the one that took it."""
    summary = run.summary[:SUMMARY_CHARS]
    with write_transaction(session):
        session.execute(
            update(ScheduledJob)
            .where(ScheduledJob.name == run.name, ScheduledJob.lease_owner == run.owner)
            .values(next_run_at=spec.schedule.next_after(run.finished_at), lease_owner=None, lease_until=None,
                    last_finished_at=run.finished_at, last_ok=run.ok, last_summary=summary,
                    runs=ScheduledJob.runs + 1, failures=0 if run.ok else ScheduledJob.failures + 1)
            .execution_options(synchronize_session=False)
        )
        if run.kept:
            session.add(JobRun(job_name=run.name, owner=run.owner, started_at=run.started_at,
                               finished_at=run.finished_at, ok=run.ok, summary=summary))


def prune_job_runs(session: Session, now: datetime | None = None) -> int:
    """Delete the runs kept longer than ``KEEP_RUNS``; returns how many went."""
    with write_transaction(session):
        return session.execute(
            delete(JobRun).where(JobRun.started_at < (now or utcnow()) - KEEP_RUNS)
            .execution_options(synchronize_session=False)
        ).rowcount


@dataclass(frozen=True)
class JobStatus:
    name: str
    label: str
    schedule: str
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_ok: bool | None  # None: never finished
    summary: str
    failures: int  # in a row
    next_run_at: datetime | None  # None: no process has seen the job yet
    running: bool
    late: bool  # due for a while and nobody took it: is any process running the jobs?

    @property
    def failed(self) -> bool:
        return self.last_ok is False


LATE_AFTER = timedelta(minutes=10)


def job_statuses(session: Session, now: datetime | None = None) -> list[JobStatus]:
    """Each scheduled job's last run, result and next run, in ``SCHEDULE`` order, for the admin dashboard."""
    now = now or utcnow()
    rows = {row.name: row for row in session.scalars(select(ScheduledJob))}
    statuses = []
    for spec in SCHEDULE:
        row = rows.get(spec.name)
        running = bool(row and row.lease_until and row.lease_until >= now)
        statuses.append(JobStatus(
            name=spec.name, label=spec.label, schedule=spec.schedule.describe(),
            last_started_at=row.last_started_at if row else None,
            last_finished_at=row.last_finished_at if row else None,
            last_ok=row.last_ok if row else None, summary=row.last_summary if row else "",
            failures=row.failures if row else 0, next_run_at=row.next_run_at if row else None,
            running=running, late=bool(row and not running and row.next_run_at < now - LATE_AFTER),
        ))
    return statuses
