"""Rate-limit counters in the app's own database (``RATELIMIT_STORAGE_URI=database://``, the default).

Flask-Limiter's default, memory://, counts in each process: with gunicorn's two workers a limit of 20 a
minute let through about twice that. Counters in the database are seen by every worker, and by every host
on one database, with nothing else to run; Redis (redis://…) does the same where it is available.

Only the fixed-window strategy (Flask-Limiter's default) is supported: one counter row per limit and key,
moved by one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` that also starts a new window once the old one
ended. Every call uses its own connection and transaction, never the request's session, so a count is
committed whatever the view does next. The engine is the current app's: the limiter is one object for
every app in a process (the tests build many), each with its own database.
"""
import time

from limits.storage import Storage
from sqlalchemy import bindparam, case, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .db import run, write_transaction
from .extensions import db
from .models.security import RateLimitCounter


def _hit_statement(insert):
    counter = RateLimitCounter.__table__
    upsert = insert(counter).values(name=bindparam("name"), hits=bindparam("amount"),
                                    expires_at_ms=bindparam("expires_at_ms"))
    window_ended = counter.c.expires_at_ms <= bindparam("now")
    return upsert.on_conflict_do_update(
        index_elements=[counter.c.name],
        set_={"hits": case((window_ended, upsert.excluded.hits), else_=counter.c.hits + upsert.excluded.hits),
              "expires_at_ms": case((window_ended, upsert.excluded.expires_at_ms), else_=counter.c.expires_at_ms)},
    ).returning(counter.c.hits)


# The two dialects spell the upsert alike but SQLAlchemy builds it per dialect; both built once, at import.
_HIT = {"sqlite": _hit_statement(sqlite.insert), "postgresql": _hit_statement(postgresql.insert)}
_PURGE = delete(RateLimitCounter).where(RateLimitCounter.expires_at_ms <= bindparam("now"))
_LIVE = select(RateLimitCounter.hits, RateLimitCounter.expires_at_ms).where(
    RateLimitCounter.name == bindparam("name"), RateLimitCounter.expires_at_ms > bindparam("now"))
_CLEAR = delete(RateLimitCounter).where(RateLimitCounter.name == bindparam("name"))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class DatabaseStorage(Storage):
    """A ``limits`` storage over the current Flask app's database (see the module doc)."""

    STORAGE_SCHEME = ["database"]  # RATELIMIT_STORAGE_URI=database://

    @property
    def base_exceptions(self):
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = _now_ms()
        with Session(db.engine) as session, write_transaction(session):
            hits = run(session, _HIT[session.get_bind().dialect.name],
                       {"name": key, "amount": amount, "expires_at_ms": now + expiry * 1000, "now": now}).scalar_one()
            if hits == amount:
                # This call opened a window: so now and then (once per window and key) drop the ended ones.
                run(session, _PURGE, {"now": now})
        return hits

    def get(self, key: str) -> int:
        row = self._live(key)
        return row.hits if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._live(key)
        return row.expires_at_ms / 1000 if row else time.time()

    def _live(self, key: str):
        with db.engine.connect() as connection:
            return connection.execute(_LIVE, {"name": key, "now": _now_ms()}).one_or_none()

    def check(self) -> bool:
        try:
            with db.engine.connect() as connection:
                connection.execute(select(literal(1)))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with Session(db.engine) as session, write_transaction(session):
            return run(session, delete(RateLimitCounter)).rowcount

    def clear(self, key: str) -> None:
        with Session(db.engine) as session, write_transaction(session):
            run(session, _CLEAR, {"name": key})
