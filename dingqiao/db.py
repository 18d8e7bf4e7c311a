"""Database engine setup and the one way services open a write transaction.

SQLite: Python's sqlite3 begins transactions lazily as DEFERRED; a transaction that reads and then writes
cannot upgrade its lock after another connection committed and fails at once with "database is locked"
(busy_timeout does not help). So the driver's own transaction handling is switched off and we emit BEGIN
ourselves: ``BEGIN IMMEDIATE`` inside ``write_transaction`` (the write lock is taken up front and waits
politely on busy_timeout), plain ``BEGIN`` for reads so that readers stay concurrent under WAL.
Postgres needs none of this: conditional updates re-check their WHERE clause under READ COMMITTED.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from sqlalchemy import event, text
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.sql import Executable
from sqlalchemy.orm import Session, scoped_session

_write_intent: ContextVar[bool] = ContextVar("dingqiao_write_intent", default=False)


def configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """Install the pragmas and the BEGIN handling on a SQLite engine (no-op for other dialects)."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _write_intent.get() else "BEGIN")


@contextmanager
def write_transaction(session: Session) -> Iterator[Session]:
    """Run one write transaction: commit once at the end, roll back on any exception.

    A read transaction left open by the request (the login lookup, say) is ended first, so the write
    transaction starts fresh and, on SQLite, with the write lock already held. A call nested inside another
    write transaction joins it, so services compose into one transaction.
    """
    if isinstance(session, scoped_session):
        session = session()
    if _write_intent.get() and session.in_transaction():
        # Called from inside another write transaction: join it, the outer one commits.
        yield session
        return
    if session.in_transaction():
        session.commit()
    token = _write_intent.set(True)
    try:
        with session.begin():
            yield session
    finally:
        _write_intent.reset(token)


def serialize_writers(session: Session, key: int) -> None:
    """Inside a write transaction: make writers that use the same ``key`` run one at a time. Postgres takes a
    transaction-scoped advisory lock; SQLite needs nothing, BEGIN IMMEDIATE already serialises all writers."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def run(session: Session, statement: Executable, params: dict | list[dict] | None = None) -> CursorResult:
    """Execute a prebuilt statement on the session's own connection, inside its transaction.

    The money paths (pay, redeem, ledger, audit) build their statements once, at import, with ``bindparam``
    placeholders, and run them here. That skips the two costs that made SQLAlchemy ~8× slower than the
    driver per statement (docs/performance.md): building the statement and its cache key on every call
    (a prebuilt one memoises its key), and the ORM's per-statement work (session synchronisation of
    UPDATEs, the unit of work for INSERTs). What it gives up: ORM objects already loaded in the session are
    not updated by these statements — they are refreshed at commit (expire_on_commit), so read a row again,
    rather than through an object loaded earlier, inside the same transaction.
    """
    if isinstance(session, scoped_session):
        session = session()
    return session.connection().execute(statement, params)
