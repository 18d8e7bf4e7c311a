"""Database engine setup and the one way services open a write transaction.

SQLite: Python's sqlite3 begins transactions lazily as DEFERRED; a transaction that reads and then writes
cannot upgrade its lock after another connection committed and fails at once with "database is locked"
(busy_timeout does not help). So the driver's own transaction handling is switched off and we emit BEGIN
ourselves: ``BEGIN IMMEDIATE`` inside ``write_transaction`` (the write lock is taken up front and waits
politely on busy_timeout), plain ``BEGIN`` for reads so that readers stay concurrent under WAL.
Postgres needs none of this: conditional updates re-check their WHERE clause under READ COMMITTED.

SQLite runs one writer at a time, and a writer that finds the lock taken sleeps in SQLite's busy handler,
in steps that grow to 100 ms, before it looks again: under load the freed lock sat idle while the next
writer slept, and the waiting threads of a worker competed for the GIL with the one holding the lock
(docs/performance.md). So writers first queue in Python (``WriterQueue``): one thread per process at a
time, and across the workers on an ``flock`` of a file beside the database, polled at sub-millisecond
steps. BEGIN IMMEDIATE then finds the lock free. The queue only orders writers that SQLite would serialise
anyway — correctness still rests on SQLite's own lock, and a writer that waited half the busy timeout in
the queue goes on to BEGIN IMMEDIATE and SQLite decides, as before (so the queue can never deadlock).
It buys a bounded tail, not throughput: without it, under contention, p99 was 4–6× higher and some writers
met "database is locked" (bench/concurrent_writers.py; DINGQIAO_WRITER_QUEUE=0 switches it off to measure).
"""
import dataclasses
import fcntl
import os
import sqlite3
import threading
import time
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable
from sqlalchemy.orm import Session, scoped_session

_write_intent: ContextVar[bool] = ContextVar("dingqiao_write_intent", default=False)


class WriterQueue:
    """The order in which this process's write transactions take SQLite's write lock (see the module doc)."""

    POLL_SECONDS = (0.0002, 0.0005, 0.001)  # then 1 ms steps: a freed lock waits at most about that long

    def __init__(self, database_path: str | None, timeout_seconds: float):
        self.lock_path = f"{database_path}-writers.lock" if database_path else None
        self.timeout = timeout_seconds
        self._pid, self._thread_lock, self._file = None, None, None

    def _for_this_process(self):
        # Created lazily per process: a gunicorn worker forked from a master that imported the app gets its own.
        if self._pid != os.getpid():
            self._pid, self._thread_lock, self._file = os.getpid(), threading.Lock(), None
            if self.lock_path:
                try:
                    self._file = open(self.lock_path, "a+b")  # noqa: SIM115 (kept open for the process's life)
                except OSError:
                    self._file = None  # a read-only directory: the thread lock alone still helps
        return self._thread_lock, self._file

    @contextmanager
    def turn(self) -> Iterator[None]:
        thread_lock, lock_file = self._for_this_process()
        deadline = time.monotonic() + self.timeout
        holds_thread = thread_lock.acquire(timeout=self.timeout)
        holds_file = False
        try:
            if holds_thread and lock_file is not None:
                holds_file = self._lock_file(lock_file, deadline)
            yield
        finally:
            if holds_file:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
            if holds_thread:
                thread_lock.release()

    def _lock_file(self, lock_file, deadline: float) -> bool:
        attempt = 0
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(self.POLL_SECONDS[min(attempt, len(self.POLL_SECONDS) - 1)])
                attempt += 1
            except OSError:
                return False  # no flock here (say, a network filesystem): SQLite's own lock still decides


_writer_queues: "WeakKeyDictionary[Engine, WriterQueue]" = WeakKeyDictionary()


def writer_queue(engine: Engine) -> WriterQueue | None:
    """The engine's writer queue; None on Postgres."""
    return _writer_queues.get(engine)


def configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """Install the pragmas, the BEGIN handling and the writer queue on a SQLite engine (no-op for other
    dialects)."""
    if engine.dialect.name != "sqlite":
        return
    database = engine.url.database
    on_disk = database and database != ":memory:" and not database.startswith("file:")
    # Half the busy timeout in the queue, so a writer behind a stuck one meets "database is locked" after at
    # most 1.5 × SQLITE_BUSY_TIMEOUT_MS (queue, then SQLite's own wait), well inside gunicorn's timeout.
    if os.environ.get("DINGQIAO_WRITER_QUEUE", "1") != "0":  # "0": off, for the A/B in docs/performance.md
        _writer_queues[engine] = WriterQueue(os.path.abspath(database) if on_disk else None, busy_timeout_ms / 2000)

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
        # Straight to the driver: every request begins at least one transaction, and this is the cheapest way.
        # Its errors ("database is locked" after the busy timeout, a full disk) still reach callers as
        # SQLAlchemy's OperationalError and friends.
        statement = "BEGIN IMMEDIATE" if _write_intent.get() else "BEGIN"
        try:
            connection.connection.driver_connection.execute(statement)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc


class PendingChanges(RuntimeError):
    """A programming error: changes were made to the session outside a write transaction. They are never
    committed on the side; make them inside ``write_transaction``."""


def _refuse_pending_changes(session: Session) -> None:
    if session.new or session.dirty or session.deleted:
        changed = sorted({type(obj).__name__ for obj in (*session.new, *session.dirty, *session.deleted)})
        raise PendingChanges(
            f"write_transaction found changes made outside a write transaction ({', '.join(changed)}): "
            f"{len(session.new)} new, {len(session.dirty)} changed, {len(session.deleted)} deleted. Make them "
            "inside write_transaction, or roll them back, rather than have them committed on the side.")


def in_write_transaction(session: Session) -> bool:
    """Whether ``session`` is inside ``write_transaction`` now."""
    if isinstance(session, scoped_session):
        session = session()
    return _write_intent.get() and session.in_transaction()


@contextmanager
def write_transaction(session: Session) -> Iterator[Session]:
    """Run one write transaction: commit once at the end, roll back on any exception.

    A read transaction left open by the request (the login lookup, say) is ended first, so the write
    transaction starts fresh and, on SQLite, with the write lock already held; a session holding changes
    made outside a write transaction is refused (``PendingChanges``) instead, as committing them would write
    what no write transaction decided. A call nested inside another write transaction joins it, so services
    compose into one transaction.
    """
    if isinstance(session, scoped_session):
        session = session()
    if _write_intent.get() and session.in_transaction():
        # Called from inside another write transaction: join it, the outer one commits.
        yield session
        return
    _refuse_pending_changes(session)
    if session.in_transaction():
        session.commit()  # a clean read transaction: nothing to write, only its snapshot (and SQLite lock) ends
    queue = writer_queue(session.get_bind())
    token = _write_intent.set(True)
    try:
        with queue.turn() if queue else nullcontext(), session.begin():
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


def insert_or_ignore(session: Session, model, rows, key: str | tuple[str, ...], *, returning=None):
    """INSERT … ON CONFLICT (key) DO NOTHING for the session's database: rows that processes starting together all
    try to create end up made once, and nobody fails. SQLite and Postgres spell it alike, in their own dialects.
    ``key`` is the unique column, or the columns of a unique constraint. ``returning`` (a column) makes the result
    list the rows actually inserted — the way to ask "was it me?" (the driver's rowcount is -1 for this statement
    on psycopg)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite_dialect.insert
    index_elements = [key] if isinstance(key, str) else list(key)
    statement = insert(model).values(rows).on_conflict_do_nothing(index_elements=index_elements)
    if returning is not None:
        statement = statement.returning(returning)
    return session.execute(statement)


R = TypeVar("R")
_PICKERS: dict[tuple[type, tuple[str, ...]], Callable[[Any], tuple]] = {}


def _picker(cls: type, columns: tuple[str, ...]) -> Callable[[Any], tuple]:
    """Picks, from a row with these ``columns``, the values of ``cls``'s fields in the fields' order, each from
    the column of the same name. Worked out once per class and column list (a handful in the whole app)."""
    picker = _PICKERS.get((cls, columns))
    if picker is None:
        names = cls._fields if hasattr(cls, "_fields") else tuple(f.name for f in dataclasses.fields(cls) if f.init)
        unmatched = [name for name in names if columns.count(name) != 1]
        if unmatched:
            raise KeyError(f"{cls.__name__}: {', '.join(unmatched)} not exactly one column of {columns}")
        getter = itemgetter(*(columns.index(name) for name in names))
        picker = getter if len(names) > 1 else (lambda row: (getter(row),))
        _PICKERS[cls, columns] = picker
    return picker


def row_as(cls: type[R], row) -> R:
    """A result row as a ``cls`` (a dataclass or NamedTuple), every field from the column of its own name (label
    computed columns so): never by position, so reordering fields or columns cannot swap two prices. Columns
    no field names are ignored; a field without its column is a KeyError."""
    return cls(*_picker(cls, row._fields)(row))


def rows_as(cls: type[R], rows: Iterable) -> list[R]:
    """``row_as`` over a result or a list of rows."""
    made, pick = [], None
    for row in rows:
        if pick is None:
            pick = _picker(cls, row._fields)
        made.append(cls(*pick(row)))
    return made
