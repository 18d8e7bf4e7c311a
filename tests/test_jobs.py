"""Jobs that run themselves (dingqiao/jobs.py, services/jobs.py): each due run happens once however many threads
and processes try, a live lease is respected and a dead one taken over, a failure is recorded and the loop goes
on, the nightly jobs keep China time, the real jobs do their work, and the dashboard shows it all. Clocks are
passed in; nothing waits on a timer, only on conditions with generous deadlines."""
import multiprocessing
import os
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from dingqiao import create_app, jobs
from dingqiao.extensions import db
from dingqiao.jobs import REGISTRY, Job, Outcome, run_due, run_forever, start_in_worker
from dingqiao.models import JobRun, Order, OrderStatus, ScheduledJob, StockLevel, User
from dingqiao.models.base import utcnow
from dingqiao.services.accounts import create_admin
from dingqiao.services.jobs import (
    SCHEDULE,
    DailyAt,
    Every,
    Finished,
    JobSpec,
    claim_run,
    finish_run,
    job_statuses,
)
from dingqiao.services.orders import place_order
from tests.conftest import Unexpected, empty_database, log_in_admin, make_config, run_concurrently, wait_for
from tests.factories import make_outlet, make_product, make_user, stock

T = datetime(2026, 3, 1, 20, 0)  # naive UTC: 04:00 on 2 March in China
NEXT_3AM = datetime(2026, 3, 2, 19, 0)  # 03:00 on 3 March in China
DEADLINE_SECONDS = 120

calls: list[str] = []  # what the test jobs below did, in this process


def counted(app, now) -> Outcome:
    calls.append("counted")
    return Outcome(True, "计数 / counted")


def broken(app, now) -> Outcome:
    calls.append("broken")
    raise RuntimeError("the disk is full")


COUNTED = Job(JobSpec("test-counted", "计数", Every(60), timedelta(minutes=5)), counted)
BROKEN = Job(JobSpec("test-broken", "出错", Every(60), timedelta(minutes=5)), broken)
REAL = {job.spec.name: job for job in REGISTRY}


@pytest.fixture(autouse=True)
def fresh_calls():
    calls.clear()


def job_row(app, name: str) -> ScheduledJob:
    with app.app_context():
        row = db.session.get(ScheduledJob, name)
        db.session.expunge(row)
        return row


def kept_runs(app, name: str) -> list[JobRun]:
    with app.app_context():
        runs = db.session.scalars(select(JobRun).where(JobRun.job_name == name).order_by(JobRun.id)).all()
        db.session.expunge_all()
        return runs


# ------------------------------------------------------------------------------------------------ schedules

def test_the_interval_jobs_keep_to_their_grid_and_the_nightly_ones_to_china_time():
    assert Every(60).next_after(datetime(2026, 3, 1, 20, 0, 59, 500)) == datetime(2026, 3, 1, 20, 1)
    assert Every(60).next_after(datetime(2026, 3, 1, 20, 1)) == datetime(2026, 3, 1, 20, 2)  # never "now"
    assert Every(3600).next_after(datetime(2026, 3, 1, 20, 59, 59)) == datetime(2026, 3, 1, 21, 0)
    assert Every(600).next_after(datetime(2026, 3, 1, 20, 0, 1)) == datetime(2026, 3, 1, 20, 10)
    three = DailyAt(3)
    assert three.next_after(datetime(2026, 3, 1, 18, 59)) == datetime(2026, 3, 1, 19, 0)  # 02:59 → 03:00 China
    assert three.next_after(datetime(2026, 3, 1, 19, 0)) == datetime(2026, 3, 2, 19, 0)
    assert three.next_after(datetime(2026, 3, 1, 15, 59)) == datetime(2026, 3, 1, 19, 0)  # 23:59 China, day before
    assert three.next_after(datetime(2026, 3, 1, 16, 0)) == datetime(2026, 3, 1, 19, 0)  # 00:00 China
    assert DailyAt(3, 30).next_after(T) == datetime(2026, 3, 2, 19, 30)
    assert [Every(5).describe(), Every(60).describe(), Every(600).describe(), Every(3600).describe(),
            DailyAt(3, 30).describe()] == ["每 5 秒", "每分钟", "每 10 分钟", "每小时", "每天 03:30"]


def test_every_scheduled_job_has_a_body_and_the_nightly_ones_start_at_the_next_3am(app):
    assert [job.spec for job in REGISTRY] == list(SCHEDULE)
    run_due(app, "first", now=T, jobs=())  # nothing to run: rows appear only for the jobs passed
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ScheduledJob)) == 0
    nightly = tuple(REAL[name] for name in ("check-money", "check-stock", "audit-verify", "backup"))
    assert run_due(app, "first", now=T, jobs=nightly) == []  # a new install does not check or back up at once
    assert [job_row(app, name).next_run_at for name in ("check-money", "check-stock", "audit-verify")] == [NEXT_3AM] * 3
    assert job_row(app, "backup").next_run_at == NEXT_3AM + timedelta(minutes=30)


# ------------------------------------------------------------------------------------------------ once

def test_a_due_job_runs_once_when_many_threads_try_at_the_same_moment(app):
    outcomes = run_concurrently(app, lambda owner: run_due(app, owner, now=T, jobs=(COUNTED,)),
                                [(f"thread-{i}",) for i in range(8)])
    assert not [o for o in outcomes if isinstance(o, Unexpected)], outcomes
    winners = [runs for runs in outcomes if runs]
    assert len(winners) == 1 and calls == ["counted"]
    [run] = winners[0]
    assert run.ok and run.started_at == T
    row = job_row(app, "test-counted")
    assert (row.runs, row.last_ok, row.lease_owner, row.lease_until) == (1, True, None, None)
    assert row.next_run_at == T + timedelta(minutes=1)  # the next full minute, from the schedule
    assert [r.owner for r in kept_runs(app, "test-counted")] == [run.owner]

    assert run_due(app, "late-comer", now=T + timedelta(seconds=59), jobs=(COUNTED,)) == []
    assert len(run_due(app, "next-minute", now=T + timedelta(minutes=1), jobs=(COUNTED,))) == 1
    assert calls == ["counted", "counted"]


def _race_in_another_process(config: dict, owner: str, barrier, results) -> None:
    app = create_app(config)
    barrier.wait(timeout=DEADLINE_SECONDS)
    results.put([run.owner for run in run_due(app, owner, now=T, jobs=(COUNTED,))])


def test_a_due_job_runs_once_when_two_processes_try_at_the_same_moment(app, app_config):
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as two hosts would be
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_race_in_another_process, args=(app_config, f"process-{i}", barrier, results))
                 for i in range(2)]
    for process in processes:
        process.start()
    won = [results.get(timeout=DEADLINE_SECONDS) for _ in processes]
    for process in processes:
        process.join(timeout=DEADLINE_SECONDS)
        assert process.exitcode == 0
    assert sorted(len(owners) for owners in won) == [0, 1]
    [winner] = [owners[0] for owners in won if owners]
    assert [r.owner for r in kept_runs(app, "test-counted")] == [winner]
    assert job_row(app, "test-counted").runs == 1


# ------------------------------------------------------------------------------------------------ leases

def test_a_live_lease_is_respected_and_an_expired_one_taken_over(app):
    run_due(app, "first", now=T - timedelta(minutes=1), jobs=())
    with app.app_context():
        assert claim_run(db.session, COUNTED.spec, "crashed-process", T) is False  # no row yet: nothing to claim
    run_due(app, "first", now=T - timedelta(minutes=1), jobs=(COUNTED,))  # creates the row and runs once
    with app.app_context():
        assert claim_run(db.session, COUNTED.spec, "crashed-process", T)  # due again at T; then it dies
        assert not claim_run(db.session, COUNTED.spec, "another", T)  # the live lease keeps everyone out
    calls.clear()

    assert run_due(app, "still-alive", now=T + timedelta(minutes=4), jobs=(COUNTED,)) == []
    assert calls == [] and job_row(app, "test-counted").lease_owner == "crashed-process"

    [run] = run_due(app, "survivor", now=T + timedelta(minutes=5, seconds=1), jobs=(COUNTED,))
    assert run.owner == "survivor" and calls == ["counted"]
    row = job_row(app, "test-counted")
    assert (row.lease_owner, row.next_run_at) == (None, T + timedelta(minutes=6))

    # The crashed process's run, finishing after all, is kept on record but changes the job's row no more.
    with app.app_context():
        finish_run(db.session, COUNTED.spec, Finished("test-counted", "crashed-process", T, T + timedelta(hours=1),
                                                      False, "too late", kept=True))
    row = job_row(app, "test-counted")
    assert (row.next_run_at, row.last_ok, row.runs) == (T + timedelta(minutes=6), True, 2)
    assert [r.owner for r in kept_runs(app, "test-counted")] == ["first", "survivor", "crashed-process"]


# ------------------------------------------------------------------------------------------------ failures

def test_a_failing_job_is_recorded_failed_and_the_pass_goes_on(app):
    runs = run_due(app, "owner", now=T, jobs=(BROKEN, COUNTED))
    assert [(r.name, r.ok) for r in runs] == [("test-broken", False), ("test-counted", True)]
    assert calls == ["broken", "counted"]
    row = job_row(app, "test-broken")
    assert (row.last_ok, row.failures, row.lease_owner) == (False, 1, None)
    assert "RuntimeError: the disk is full" in row.last_summary
    assert row.next_run_at == T + timedelta(minutes=1)  # tried again on schedule, not in a tight loop
    [kept] = kept_runs(app, "test-broken")
    assert not kept.ok and "the disk is full" in kept.summary

    run_due(app, "owner", now=T + timedelta(minutes=1), jobs=(BROKEN,))
    assert job_row(app, "test-broken").failures == 2  # in a row


def test_the_loop_outlives_failing_jobs_until_it_is_stopped(app):
    fast_broken = Job(JobSpec("test-broken", "出错", Every(1), timedelta(minutes=1)), broken)
    fast_counted = Job(JobSpec("test-counted", "计数", Every(1), timedelta(minutes=1)), counted)
    stop = threading.Event()
    loop = threading.Thread(target=run_forever, args=(app, stop, 0.01, (fast_broken, fast_counted)), daemon=True)
    loop.start()
    try:
        wait_for(lambda: calls.count("counted") >= 2 and calls.count("broken") >= 2, "two passes with both jobs",
                 DEADLINE_SECONDS, step=0.02)
        assert loop.is_alive()
    finally:
        stop.set()
        loop.join(timeout=DEADLINE_SECONDS)
    assert not loop.is_alive()
    assert job_row(app, "test-broken").failures >= 2 and job_row(app, "test-counted").last_ok


def test_the_worker_thread_starts_once_per_process_and_only_when_jobs_are_on(app, monkeypatch):
    monkeypatch.setattr(jobs, "_started", {})
    app.config["DINGQIAO_JOBS"] = False
    assert start_in_worker(app) is None
    app.config["DINGQIAO_JOBS"] = True
    started = start_in_worker(app)
    try:
        assert start_in_worker(app) is started and started.thread.daemon
        wait_for(lambda: job_row_or_none(app, "cancel-expired-orders") is not None
                 and job_row_or_none(app, "cancel-expired-orders").runs >= 1, "the worker's loop ran the jobs",
                 DEADLINE_SECONDS, step=0.02)
    finally:
        started.stop.set()
        started.thread.join(timeout=DEADLINE_SECONDS)
    assert not started.thread.is_alive()


def job_row_or_none(app, name: str) -> ScheduledJob | None:
    with app.app_context():
        row = db.session.get(ScheduledJob, name)
        if row is not None:
            db.session.expunge(row)
        return row


# ------------------------------------------------------------------------------------------------ the real jobs

def test_the_expiry_job_cancels_an_expired_unpaid_order_and_releases_its_stock(app):
    with app.app_context():
        buyer, outlet, product = make_user("买家"), make_outlet(make_user("店主")), make_product(3990)
        level = stock(outlet, product, 10)
        placed = utcnow()
        stale = place_order(db.session, db.session.get(User, buyer.id), outlet.id, {product.id: 2}, timeout_minutes=15,
                            from_cart=False, now=placed - timedelta(minutes=30)).order_no
        fresh = place_order(db.session, db.session.get(User, buyer.id), outlet.id, {product.id: 1}, timeout_minutes=15,
                            from_cart=False, now=placed).order_no
        level_id = level.id
    runs = {run.name: run for run in run_due(app, "owner", now=placed + timedelta(seconds=1))}
    assert runs["cancel-expired-orders"].ok and "Cancelled 1 expired order(s)" in runs["cancel-expired-orders"].summary
    assert all(run.ok for run in runs.values()), runs  # the other interval jobs ran too, with nothing to do
    assert set(runs) == {"deliver-messages", "cancel-expired-orders", "reconcile-wechat-pay", "settle-commissions"}
    with app.app_context():
        states = dict(db.session.execute(select(Order.order_no, Order.status)).all())
        assert states == {stale: OrderStatus.CANCELLED, fresh: OrderStatus.PENDING_PAYMENT}
        assert db.session.get(StockLevel, level_id).reserved == 1
    # Only the run that did something is kept; the idle ones update their job's row alone.
    assert len(kept_runs(app, "cancel-expired-orders")) == 1 and kept_runs(app, "settle-commissions") == []
    assert job_row(app, "settle-commissions").runs == 1


def test_the_nightly_checks_run_at_3am_china_time_and_keep_their_results(app):
    with app.app_context():
        outlet, product = make_outlet(make_user("店主")), make_product(3990)
        stock(outlet, product, 10)
        db.session.execute(update(StockLevel).values(on_hand=999))
        db.session.commit()
    nightly = tuple(REAL[name] for name in ("check-money", "check-stock", "audit-verify"))
    run_due(app, "owner", now=T, jobs=nightly)
    assert run_due(app, "owner", now=NEXT_3AM - timedelta(seconds=1), jobs=nightly) == []
    runs = {run.name: run for run in run_due(app, "owner", now=NEXT_3AM + timedelta(seconds=5), jobs=nightly)}
    assert set(runs) == {"check-money", "check-stock", "audit-verify"}
    assert runs["check-money"].ok and "Money invariants hold" in runs["check-money"].summary
    assert runs["audit-verify"].ok and "Audit chain intact" in runs["audit-verify"].summary
    assert not runs["check-stock"].ok and "999" in runs["check-stock"].summary
    assert "库存核对发现 1 个问题" in runs["check-stock"].summary
    for name in runs:  # kept, ok or not: the nightly record
        [kept] = kept_runs(app, name)
        assert kept.ok == runs[name].ok and kept.summary == runs[name].summary
        assert job_row(app, name).next_run_at == NEXT_3AM + timedelta(days=1)


def test_a_nightly_job_missed_while_nothing_ran_runs_once_late_then_back_on_time(app):
    backup_free = tuple(REAL[name] for name in ("check-money",))
    run_due(app, "owner", now=T, jobs=backup_free)
    two_days_late = NEXT_3AM + timedelta(days=2, hours=5)
    assert len(run_due(app, "owner", now=two_days_late, jobs=backup_free)) == 1
    assert run_due(app, "owner", now=two_days_late + timedelta(minutes=1), jobs=backup_free) == []
    assert job_row(app, "check-money").next_run_at == NEXT_3AM + timedelta(days=3)


def test_the_nightly_backup_writes_into_the_instance_and_old_job_runs_are_pruned(database_url, tmp_path, fake_wechat):
    shop = create_app(make_config(database_url, tmp_path, fake_wechat), instance_path=str(tmp_path / "instance"))
    with shop.app_context():
        db.create_all()
        db.session.add(JobRun(job_name="check-money", owner="old", started_at=T - timedelta(days=91),
                              finished_at=T - timedelta(days=91), ok=True, summary=""))
        db.session.add(JobRun(job_name="check-money", owner="recent", started_at=T - timedelta(days=89),
                              finished_at=T - timedelta(days=89), ok=True, summary=""))
        db.session.commit()
    posters = tmp_path / "instance" / "posters"
    posters.mkdir()
    unused, asked_for = posters / "0123456789abcdef.png", posters / "fedcba9876543210.png"
    for path, last_use in ((unused, NEXT_3AM - timedelta(days=31)), (asked_for, NEXT_3AM - timedelta(days=29))):
        path.write_bytes(b"png")
        stamp = last_use.replace(tzinfo=timezone.utc).timestamp()
        os.utime(path, (stamp, stamp))
    try:
        nightly = (REAL["backup"], REAL["prune-job-runs"])
        run_due(shop, "owner", now=T, jobs=nightly)
        runs = {run.name: run for run in run_due(shop, "owner", now=NEXT_3AM + timedelta(hours=1), jobs=nightly)}
        assert runs["backup"].ok, runs["backup"].summary
        [archive] = (tmp_path / "instance" / "backups").glob("dingqiao-*.tar.gz")
        assert str(archive) in runs["backup"].summary
        assert runs["prune-job-runs"].ok and "Deleted 1 job run(s)" in runs["prune-job-runs"].summary
        assert "1 unused poster file(s)" in runs["prune-job-runs"].summary
        assert sorted(path.name for path in posters.iterdir()) == [asked_for.name]  # 30 days unused: drawn again
        assert [r.owner for r in kept_runs(shop, "check-money")] == ["recent"]
    finally:
        empty_database(shop)


# ------------------------------------------------------------------------------------------------ dashboard, CLI

def test_the_dashboard_shows_each_job_and_a_failed_check_stands_out(app, client):
    with app.app_context():
        admin = create_admin(db.session, "ops", "long-enough-password", "operator")
        outlet, product = make_outlet(make_user("店主")), make_product(3990)
        stock(outlet, product, 10)
        db.session.execute(update(StockLevel).values(on_hand=999))
        db.session.commit()
        admin_id = admin.id
    log_in_admin(client, admin_id)
    page = client.get("/admin/").get_data(as_text=True)
    assert "定时任务" in page and "还没有进程运行过定时任务" in page and 'class="dq-jobs__failed"' not in page

    now = utcnow()
    run_due(app, "owner", now=now, jobs=REGISTRY)
    with app.app_context():
        db.session.execute(update(ScheduledJob).where(ScheduledJob.name.in_(["check-money", "check-stock"]))
                           .values(next_run_at=now))
        db.session.commit()
    run_due(app, "owner", now=now + timedelta(seconds=1), jobs=(REAL["check-money"], REAL["check-stock"]))
    page = client.get("/admin/").get_data(as_text=True)
    assert "还没有进程运行过定时任务" not in page
    failed_row = page.split('data-job="check-stock"')[1].split("</tr>")[0]
    assert 'class="dq-jobs__failed"' in failed_row and "失败" in failed_row and "999" in failed_row
    ok_row = page.split('data-job="check-money"')[1].split("</tr>")[0]
    assert "dq-jobs__failed" not in ok_row and "成功" in ok_row and "Money invariants hold" in ok_row
    with app.app_context():
        statuses = {status.name: status for status in job_statuses(db.session, now + timedelta(seconds=2))}
    assert statuses["check-stock"].failed and not statuses["check-money"].failed
    expiry = statuses["cancel-expired-orders"]  # every 30 s, on the half-minute grid
    assert expiry.next_run_at == Every(30).next_after(expiry.last_started_at)
    assert expiry.next_run_at.second in (0, 30) and timedelta(0) < expiry.next_run_at - expiry.last_started_at <= timedelta(seconds=30)
    assert statuses["backup"].last_ok is None and not statuses["backup"].late


def test_a_job_long_past_due_says_nobody_runs_the_jobs(app):
    run_due(app, "owner", now=T, jobs=(REAL["check-money"],))
    with app.app_context():
        [status] = [s for s in job_statuses(db.session, NEXT_3AM + timedelta(minutes=11)) if s.name == "check-money"]
        assert status.late
        [status] = [s for s in job_statuses(db.session, NEXT_3AM + timedelta(minutes=9)) if s.name == "check-money"]
        assert not status.late


def test_flask_run_jobs_once_runs_the_due_jobs_in_the_foreground(app):
    result = app.test_cli_runner().invoke(args=["run-jobs", "--once"])
    assert result.exit_code == 0, result.output
    assert "cancel-expired-orders: ok" in result.output and "Cancelled 0 expired order(s)" in result.output
    assert "check-money" not in result.output  # nightly: not due on first sight
    with app.app_context():
        names = set(db.session.scalars(select(ScheduledJob.name)))
        owners = set(db.session.scalars(select(ScheduledJob.lease_owner)))
    assert names == {spec.name for spec in SCHEDULE} and owners == {None}

