"""Jobs that run themselves: the work cron used to start (expire unpaid orders, reconcile WeChat Pay, settle
commissions, deliver the outbox, the nightly checks and backup), run by the app's own processes.

Every gunicorn worker (``start_in_worker``, from gunicorn's ``post_worker_init``) and every ``dingqiao worker``
runs the same loop (``run_forever``): every few seconds a pass (``run_due``) looks for due jobs and runs those it
claims, one after another. Which process runs a due job is decided in the database (``services.jobs``: a lease
taken by one conditional UPDATE), so each due run happens once however many workers and hosts loop.

Why our own loop rather than a scheduling library: the rule is "once across processes and hosts, by a lease in
the database". APScheduler 3 schedules inside one process — its documentation says a job store must never be
shared between schedulers — so N workers would run every job N times. APScheduler 4 shares a data store between
schedulers, but it is a pre-release its author warns against using in production. Celery beat and its kin need a
broker and one more long-running process, the opposite of a shop on one small server. What is left to write is a
claim, a finish and a sleep.

A pass runs its due jobs in turn, the outbox first. A slow job (the backup, a check) holds up the rest of its own
pass only: the other workers' loops see the outbox due and deliver it meanwhile.
"""
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

from flask import Flask

from .backup import create_backup, prune
from .extensions import db
from .models.base import utcnow
from .services.audit import verify_audit_chain
from .services.commissions import settle_due_lines
from .services.delivery import deliver_once
from .services.invariants import check_money, check_stock
from .services.jobs import (
    KEEP_RUNS,
    SCHEDULE,
    Finished,
    JobSpec,
    claim_run,
    due_jobs,
    finish_run,
    prune_job_runs,
)
from .services.payments import expire_unpaid_orders
from .services.posters import prune_posters
from .services import submissions
from .services.refunds import reconcile_refunds
from .services.withdrawals import reconcile_withdrawals
from .wechat import pay_gateways
from .worker import delivery_settings, wechat_sender, worker_name

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Outcome:
    ok: bool
    summary: str  # Chinese / English, for the dashboard and the log
    worked: bool = True  # False: nothing to do — a frequent job's idle run keeps no JobRun row


Body = Callable[[Flask, datetime], Outcome]  # (app, now) inside an app context


def deliver_messages(app: Flask, now: datetime) -> Outcome:
    """One pass over the outbox (``services.delivery``): each row claimed by one sender."""
    done = deliver_once(db.session, wechat_sender(app), delivery_settings(app), worker_name(), now)
    return Outcome(True, f"发送 {done.sent} 条，仅站内 {done.skipped} 条，待重试 {done.retried} 条，失败 {done.failed} 条 / "
                         f"{done.sent} sent, {done.skipped} in-app only, {done.retried} to retry, {done.failed} failed",
                   worked=done.claimed > 0)


def cancel_expired_orders(app: Flask, now: datetime) -> Outcome:
    """Unpaid orders past their deadline: asked about at WeChat, closed there, cancelled, stock released."""
    cancelled = expire_unpaid_orders(db.session, pay_gateways(app), now)
    return Outcome(True, f"取消 {cancelled} 个超时未付订单 / Cancelled {cancelled} expired order(s).",
                   worked=cancelled > 0)


def reconcile_wechat_pay(app: Flask, now: datetime) -> Outcome:
    """Refunds and payouts still without a result RECONCILE_AFTER_MINUTES after they were sent (a lost notify, a
    lost answer): WeChat is asked, and those it is certain about are finished."""
    gateway = pay_gateways(app)
    asked_before = now - timedelta(minutes=app.config["RECONCILE_AFTER_MINUTES"])
    refunds = reconcile_refunds(db.session, gateway, asked_before)
    payouts = reconcile_withdrawals(db.session, gateway, asked_before)
    return Outcome(True, f"按微信的结果完成 {refunds} 笔退款、{payouts} 笔打款 / "
                         f"Finished {refunds} refund(s) and {payouts} payout(s) from WeChat's answers.",
                   worked=refunds + payouts > 0)


def settle_commissions(app: Flask, now: datetime) -> Outcome:
    """Commission lines whose after-sales cooling period has ended become available."""
    settled = settle_due_lines(db.session, now)
    return Outcome(True, f"结算 {settled} 条佣金 / Settled {settled} commission line(s).", worked=settled > 0)


def _invariants(problems: list[str], chinese: str, english: str) -> Outcome:
    if not problems:
        return Outcome(True, f"{chinese}通过 / {english} hold.")
    return Outcome(False, "\n".join([f"{chinese}发现 {len(problems)} 个问题 / {english} broken: {len(problems)} "
                                     "problem(s)", *problems]))


def money_check(app: Flask, now: datetime) -> Outcome:
    """Every money invariant over the whole database (``services.invariants``)."""
    return _invariants(check_money(db.session), "资金核对", "Money invariants")


def stock_check(app: Flask, now: datetime) -> Outcome:
    """Every stock invariant: levels = movements, reservations = open orders, restocks = movements."""
    return _invariants(check_stock(db.session), "库存核对", "Stock invariants")


def audit_check(app: Flask, now: datetime) -> Outcome:
    """The audit log's hash chain, naming the first broken row."""
    broken = verify_audit_chain(db.session)
    if broken is None:
        return Outcome(True, "审计链完整 / Audit chain intact.")
    return Outcome(False, f"审计链在第 {broken.row_id} 行断开 / Audit chain broken at row {broken.row_id}: "
                          f"{broken.reason}")


def backup(app: Flask, now: datetime, target: Path | None = None, keep_days: int | None = None) -> Outcome:
    """An archive of the live database and the uploads into ``target`` (a folder, default the instance's
    backups/, or a .tar.gz name), then that folder's archives older than ``keep_days`` (BACKUP_KEEP_DAYS)
    deleted. Raises ``BackupError`` when none can be made."""
    config = app.config
    made = create_backup(config["SQLALCHEMY_DATABASE_URI"], config["UPLOAD_FOLDER"],
                         target or Path(app.instance_path) / "backups")
    kept = config["BACKUP_KEEP_DAYS"] if keep_days is None else keep_days
    gone = prune(made.path.parent, kept)
    how = "pg_dump (plain SQL)" if made.database == "postgresql" else "SQLite online backup"
    return Outcome(True, f"备份已写入 / Backup written: {made.path} ({how}, {made.files} uploaded file(s), "
                         f"schema {made.revision or '?'})"
                         + (f"; 已删除 {len(gone)} 个超过 {kept} 天的备份 / {len(gone)} archive(s) older than "
                            f"{kept} days deleted" if gone else ""))


def prune_runs(app: Flask, now: datetime) -> Outcome:
    """Job runs are kept ``KEEP_RUNS`` (90 days); forms' one-time submission keys a week; share posters while
    someone asks for them (``posters.KEEP_UNUSED``, 30 days unused: they are drawn again when asked for)."""
    gone, days = prune_job_runs(db.session, now), KEEP_RUNS.days
    keys = submissions.sweep(db.session, now)
    posters = prune_posters(app.config["POSTER_FOLDER"], now.replace(tzinfo=timezone.utc).timestamp())
    return Outcome(True, f"删除 {gone} 条 {days} 天前的任务记录、{keys} 个过期表单提交码、{posters} 张久未使用的海报 / "
                         f"Deleted {gone} job run(s) older than {days} days, {keys} expired submission key(s) and "
                         f"{posters} unused poster file(s).")


@dataclass(frozen=True)
class Job:
    spec: JobSpec  # name, label, schedule, lease
    body: Body


BODIES: dict[str, Body] = {
    "deliver-messages": deliver_messages,
    "cancel-expired-orders": cancel_expired_orders,
    "reconcile-wechat-pay": reconcile_wechat_pay,
    "settle-commissions": settle_commissions,
    "check-money": money_check,
    "check-stock": stock_check,
    "audit-verify": audit_check,
    "backup": backup,
    "prune-job-runs": prune_runs,
}
REGISTRY: tuple[Job, ...] = tuple(Job(spec, BODIES[spec.name]) for spec in SCHEDULE)


def run_due(app: Flask, owner: str, now: datetime | None = None, jobs: tuple[Job, ...] = REGISTRY,
            stop: threading.Event | None = None) -> list[Finished]:
    """One pass: every due job that ``owner`` claims, run in turn, until ``stop`` is set; returns those runs.
    ``now`` fixes the clock (tests); without it each claim reads the time afresh, so a job after a slow one is
    not started in the past."""
    clock = (lambda: now) if now is not None else utcnow
    by_name = {job.spec.name: job for job in jobs}
    finished = []
    with app.app_context():
        try:
            for spec in due_jobs(db.session, tuple(job.spec for job in jobs), clock()):
                if stop is not None and stop.is_set():
                    break  # the rest stays due for the next process that looks
                started = clock()
                if claim_run(db.session, spec, owner, started):
                    finished.append(_run(app, by_name[spec.name], owner, started, clock))
        finally:
            db.session.remove()
    return finished


def _run(app: Flask, job: Job, owner: str, started: datetime, clock: Callable[[], datetime]) -> Finished:
    """Run a claimed job. Its exception is the run's result (logged, recorded as failed), never the loop's end."""
    try:
        outcome = job.body(app, started)
    except Exception as exc:  # noqa: BLE001 - any failure of a job is recorded and shown on the dashboard
        log.exception("scheduled job %s failed", job.spec.name)
        outcome = Outcome(False, f"出错 / Error: {type(exc).__name__}: {exc}")
    finally:
        db.session.remove()  # a failed job may leave its transaction broken; the record needs a clean session
    run = Finished(job.spec.name, owner, started, clock(), outcome.ok, outcome.summary,
                   kept=outcome.worked or not outcome.ok)
    finish_run(db.session, job.spec, run)
    if run.kept:
        log.log(logging.INFO if run.ok else logging.WARNING, "scheduled job %s: %s", run.name, run.summary)
    return run


def run_forever(app: Flask, stop: threading.Event, poll_seconds: float = POLL_SECONDS,
                jobs: tuple[Job, ...] = REGISTRY) -> None:
    """Passes every ``poll_seconds`` until ``stop`` is set (a job under way is finished first). A pass that fails
    as a whole (the database away) is logged and the next one tried."""
    owner = f"{worker_name()}/{threading.get_native_id()}"
    while not stop.is_set():
        try:
            run_due(app, owner, jobs=jobs, stop=stop)
        except Exception:  # noqa: BLE001 - the loop outlives a database restart
            log.exception("scheduled jobs: the pass failed; the next one in %s s", poll_seconds)
        stop.wait(poll_seconds)


def stop_on_signals() -> threading.Event:
    """For a loop in the foreground: an event SIGTERM and SIGINT set, so the job at hand is finished first."""
    stop = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: stop.set())
    return stop


class Started(NamedTuple):
    thread: threading.Thread
    stop: threading.Event


_started: dict[int, Started] = {}
_starting = threading.Lock()


def start_in_worker(app: Flask) -> Started | None:
    """This process's job loop in a daemon thread, started once per process (gunicorn's ``post_worker_init``
    calls it in each worker). None when DINGQIAO_JOBS is off: a web tier whose jobs ``dingqiao worker`` runs
    elsewhere. Never called by ``create_app``: tests, the CLI and the migrations run no jobs behind their back."""
    if not app.config["DINGQIAO_JOBS"]:
        return None
    with _starting:
        if os.getpid() not in _started:  # keyed by process: a forked child starts its own
            stop = threading.Event()
            thread = threading.Thread(target=run_forever, args=(app, stop), name="dingqiao-jobs", daemon=True)
            thread.start()
            _started[os.getpid()] = Started(thread, stop)
        return _started[os.getpid()]


def stop_in_worker(timeout: float) -> None:
    """Ask this process's job loop to stop and wait up to ``timeout`` for the job at hand (gunicorn's
    ``worker_exit``): a worker recycled or stopped mid-job finishes it and gives its lease back, instead of
    leaving the job stalled until the lease runs out."""
    started = _started.get(os.getpid())
    if started is not None:
        started.stop.set()
        started.thread.join(timeout)
