"""The database layer: SQLite tuned for concurrent writers, write transactions, constraints in the database."""
import fcntl
import threading
import time

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from dingqiao.db import write_transaction, writer_queue
from dingqiao.extensions import db
from dingqiao.models import FactoryStore, LocationKind, StockLevel, StockLocation, Wallet
from tests.conftest import on_postgres
from tests.factories import make_product, make_region, make_user


@pytest.mark.skipif(on_postgres(), reason="SQLite pragmas")
def test_sqlite_file_runs_in_wal_with_foreign_keys_and_a_busy_timeout(session):
    assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert session.execute(text("PRAGMA busy_timeout")).scalar() == 10000
    assert session.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL


def _stock_row(session, quantity: int) -> int:
    location = StockLocation(kind=LocationKind.OUTLET, name="并发测试")
    session.add(location)
    session.flush()
    product = make_product()
    level = StockLevel(location_id=location.id, product_id=product.id, on_hand=quantity)
    session.add(level)
    session.commit()
    return level.id


def test_concurrent_read_then_write_transactions_never_fail_and_never_oversell(app, session):
    """8 threads × 25 attempts to take one unit each, every attempt reading before it writes — the
    pattern that makes plain SQLite fail at once with "database is locked"."""
    level_id = _stock_row(session, 100)
    session.remove()
    sold, errors = [], []

    def buyer():
        with app.app_context():
            for _ in range(25):
                try:
                    with write_transaction(db.session):
                        db.session.execute(select(StockLevel.on_hand).where(StockLevel.id == level_id)).scalar_one()
                        taken = db.session.execute(
                            update(StockLevel)
                            .where(StockLevel.id == level_id, StockLevel.on_hand - StockLevel.reserved >= 1)
                            .values(reserved=StockLevel.reserved + 1)
                        ).rowcount
                    if taken:
                        sold.append(1)
                except Exception as exc:  # any failure is the bug this test is about
                    errors.append(repr(exc))
            db.session.remove()

    threads = [threading.Thread(target=buyer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(sold) == 100  # 200 attempts, 100 units: exactly all of them, never more
    level = session.get(StockLevel, level_id)
    assert (level.on_hand, level.reserved) == (100, 100)


def _writers_lock_file(app) -> str:
    return db.engine.url.database + "-writers.lock"


@pytest.mark.skipif(on_postgres(), reason="SQLite writer queue")
def test_writers_queue_across_processes_on_a_lock_file_beside_the_database(app, session):
    """Another process (here: another open file description) holding the writers' flock makes a writer wait
    in the queue, not in SQLite; when it lets go, the writer goes on at once."""
    level_id = _stock_row(session, 5)
    session.remove()
    done = threading.Event()
    cpu_seconds = []

    def writer():
        started = time.thread_time()
        with app.app_context():
            with write_transaction(db.session):
                db.session.execute(update(StockLevel).where(StockLevel.id == level_id).values(on_hand=6))
            db.session.remove()
        cpu_seconds.append(time.thread_time() - started)
        done.set()

    with open(_writers_lock_file(app), "a+b") as other_process:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        thread = threading.Thread(target=writer)
        thread.start()
        assert not done.wait(0.3)  # queued behind the other process, though SQLite's own lock is free
        fcntl.flock(other_process, fcntl.LOCK_UN)
    assert done.wait(5)
    thread.join()
    assert db.session.get(StockLevel, level_id).on_hand == 6
    assert cpu_seconds[0] < 0.15  # it slept while queued for those 0.3 s, it did not spin on the lock file


@pytest.mark.skipif(on_postgres(), reason="SQLite writer queue")
def test_a_writer_queued_past_the_busy_timeout_goes_on_to_sqlite_rather_than_deadlock(app, session):
    level_id = _stock_row(session, 5)
    session.remove()
    queue = writer_queue(db.engine)
    queue_timeout, queue.timeout = queue.timeout, 0.2
    try:
        with open(_writers_lock_file(app), "a+b") as stuck_process:
            fcntl.flock(stuck_process, fcntl.LOCK_EX)  # never let go while the writer runs
            with write_transaction(db.session):
                db.session.execute(update(StockLevel).where(StockLevel.id == level_id).values(on_hand=7))
    finally:
        queue.timeout = queue_timeout
    db.session.remove()
    assert db.session.get(StockLevel, level_id).on_hand == 7


def test_a_failing_write_transaction_leaves_nothing_behind(session):
    level_id = _stock_row(session, 5)
    with pytest.raises(RuntimeError):
        with write_transaction(session):
            session.execute(update(StockLevel).where(StockLevel.id == level_id).values(reserved=3))
            raise RuntimeError("boom")
    assert session.get(StockLevel, level_id).reserved == 0


def test_nested_write_transactions_are_one_transaction(session):
    level_id = _stock_row(session, 5)
    with pytest.raises(RuntimeError):
        with write_transaction(session):
            session.execute(update(StockLevel).where(StockLevel.id == level_id).values(reserved=1))
            with write_transaction(session):  # a service called by a service joins the outer transaction
                session.execute(update(StockLevel).where(StockLevel.id == level_id).values(on_hand=9))
            raise RuntimeError("the outer step fails after the inner one finished")
    level = session.get(StockLevel, level_id)
    assert (level.on_hand, level.reserved) == (5, 0)


def test_one_factory_store_per_region_is_enforced_by_the_database(session):
    region = make_region("独占区域")
    owners = [make_user("甲"), make_user("乙")]
    for index, owner in enumerate(owners):
        location = StockLocation(kind=LocationKind.FACTORY, name=f"工厂店{index}")
        session.add(location)
        session.flush()
        session.add(FactoryStore(region_id=region.id, owner_user_id=owner.id, location_id=location.id, name=f"店{index}"))
        if index == 0:
            session.commit()
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


@pytest.mark.parametrize(
    "values",
    [{"on_hand": -1}, {"reserved": 6}, {"reserved": -1}],
    ids=["negative on hand", "reserved above on hand", "negative reserved"],
)
def test_stock_can_never_go_negative_or_be_over_reserved(session, values):
    level_id = _stock_row(session, 5)
    with pytest.raises(IntegrityError):
        session.execute(update(StockLevel).where(StockLevel.id == level_id).values(**values))
        session.commit()
    session.rollback()


def test_wallet_frozen_balance_cannot_go_negative_but_available_may_hold_a_receivable(session):
    wallet = Wallet(user_id=make_user("钱包").id)
    session.add(wallet)
    session.commit()
    session.execute(update(Wallet).where(Wallet.id == wallet.id).values(available_fen=-500))
    session.commit()
    with pytest.raises(IntegrityError):
        session.execute(update(Wallet).where(Wallet.id == wallet.id).values(frozen_fen=-1))
        session.commit()
    session.rollback()


@pytest.mark.skipif(on_postgres(), reason="SQLite BEGIN handling")
def test_a_write_lock_that_never_frees_is_an_operational_error_not_a_hang(app, session):
    """BEGIN IMMEDIATE goes straight to the driver; when another connection keeps the write lock past the
    busy timeout, callers still get SQLAlchemy's OperationalError (a 500 "系统繁忙", or 503 on /healthz)."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    level_id = _stock_row(session, 5)
    session.remove()
    holder = sqlite3.connect(db.engine.url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    session.execute(text("PRAGMA busy_timeout=100"))
    session.commit()
    queue = writer_queue(db.engine)
    queue_timeout, queue.timeout = queue.timeout, 0.1
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            with write_transaction(db.session):
                db.session.execute(update(StockLevel).where(StockLevel.id == level_id).values(on_hand=9))
    finally:
        queue.timeout = queue_timeout
        holder.rollback()
        holder.close()
    db.session.remove()
    assert db.session.get(StockLevel, level_id).on_hand == 5
