"""Append to the hash-chained audit log, and verify the chain."""
import hashlib
import json
from dataclasses import dataclass
from types import SimpleNamespace

from sqlalchemy import bindparam, event, func, insert, inspect, select, update
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from ..db import in_write_transaction, run
from ..models import AuditChainHead, AuditLog
from ..models.base import utcnow

GENESIS_HASH = "0" * 64


def _row_hash(row: AuditLog | SimpleNamespace) -> str:
    payload = json.dumps(
        [
            row.id,
            row.created_at.isoformat(timespec="microseconds"),
            row.actor_kind,
            row.actor_id,
            row.action,
            row.target_type,
            row.target_id,
            row.detail,
            row.prev_hash,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


PENDING = "dingqiao_pending_audit"


def record_audit(
    session: Session,
    *,
    actor_kind: str,
    actor_id: int | None,
    action: str,
    target_type: str = "",
    target_id: str | int = "",
    detail: dict | None = None,
) -> None:
    """Add one row to the caller's write transaction. It is chained when that transaction commits (and
    forgotten if it, or the savepoint it was recorded in, rolls back).

    Appending takes the lock on the single chain-head row. Taking it at commit — after every other row lock
    the transaction needs — means the head is always the last lock a transaction waits for, so appenders can
    never deadlock with each other over wallets, orders or stock (they did on Postgres when the head was
    locked mid-transaction), and the head is held only for the append itself."""
    if isinstance(session, scoped_session):
        session = session()
    if type(session) not in _CHAINED or not in_write_transaction(session):
        raise RuntimeError("record_audit needs a write transaction (dingqiao.db.write_transaction) of a session whose "
                           "commits append the chain (install_audit_chain, which create_app calls for the app's "
                           "session): the row would otherwise be lost or committed on the side")
    marker = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(PENDING, []).append((marker, dict(
        created_at=utcnow(), actor_kind=actor_kind, actor_id=actor_id, action=action, target_type=target_type,
        target_id=str(target_id),
        detail=json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
    )))


# Prebuilt (see db.run): every write transaction that records anything runs these three at commit.
_LOCK_HEAD = (update(AuditChainHead).where(AuditChainHead.id == 1).values(last_hash=AuditChainHead.last_hash)
              .returning(AuditChainHead.last_hash, AuditChainHead.last_id))
_ADD_ROWS = insert(AuditLog)
_MOVE_HEAD = (update(AuditChainHead).where(AuditChainHead.id == 1)
              .values(last_hash=bindparam("new_hash"), last_id=bindparam("new_id")))


def _append_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint is being released: its rows wait for the real commit
    pending = session.info.pop(PENDING, None)
    if not pending:
        return
    # The prebuilt statements below do not autoflush, and SQLAlchemy flushes only after this hook: flush now,
    # so every other row lock is taken before the head's and the head stays the last lock (no deadlock).
    session.flush()
    # Lock the head and read it in one statement. Every append holds this lock, so the ids that follow the
    # head's are free: the rows are written once, complete with their hashes, in one batch.
    head = run(session, _LOCK_HEAD).one_or_none()
    if head is None:
        session.add(AuditChainHead(id=1, last_hash=GENESIS_HASH, last_id=None))
        session.flush()
        last_hash, last_id = GENESIS_HASH, session.scalar(select(func.max(AuditLog.id)))
    else:
        last_hash, last_id = head
    rows = []
    for offset, (_marker, fields) in enumerate(pending, start=1):
        row = {**fields, "id": (last_id or 0) + offset, "prev_hash": last_hash}
        row["row_hash"] = last_hash = _row_hash(SimpleNamespace(**row))
        rows.append(row)
    run(session, _ADD_ROWS, rows)
    run(session, _MOVE_HEAD, {"new_hash": last_hash, "new_id": rows[-1]["id"]})


def _forget_rolled_back(session: Session, rolled_back) -> None:
    """Drop the rows recorded inside the transaction or savepoint that just rolled back."""
    pending = session.info.get(PENDING)
    if not pending:
        return

    def inside(marker) -> bool:
        while marker is not None:
            if marker is rolled_back:
                return True
            marker = marker.parent
        return False

    session.info[PENDING] = [(marker, fields) for marker, fields in pending if not inside(marker)]


_CHAINED: set[type] = set()  # the session classes whose commits append the chain


def install_audit_chain(sessions: scoped_session | sessionmaker) -> None:
    """Make every commit of ``sessions`` (a scoped session or a sessionmaker) append the audit rows its
    transaction recorded, and every rollback forget those of the transaction or savepoint rolled back.
    ``create_app`` calls it for the app's session (Flask-SQLAlchemy's, one per process); other sessions (the
    rate limiter's own, say) get no listener and cannot record audit rows. Installing twice changes nothing."""
    factory = sessions.session_factory if isinstance(sessions, scoped_session) else sessions
    for name, listener in (("before_commit", _append_pending), ("after_soft_rollback", _forget_rolled_back)):
        if not event.contains(factory.class_, name, listener):
            event.listen(factory.class_, name, listener)
    _CHAINED.add(factory.class_)


@dataclass(frozen=True)
class ChainBreak:
    row_id: int
    reason: str


def verify_audit_chain(session: Session) -> ChainBreak | None:
    """Walk the chain in id order; return the first row that does not fit, or None when it is whole."""
    expected_prev = GENESIS_HASH
    last_id = None
    for row in session.execute(select(AuditLog).order_by(AuditLog.id)).scalars().yield_per(1000):
        if row.prev_hash != expected_prev:
            return ChainBreak(row.id, "prev_hash does not match the row before it (a row was removed or inserted)")
        if _row_hash(row) != row.row_hash:
            return ChainBreak(row.id, "content does not match its hash (the row was changed)")
        expected_prev = row.row_hash
        last_id = row.id
    head = session.get(AuditChainHead, 1)
    if head is not None and (head.last_id != last_id or head.last_hash != expected_prev):
        return ChainBreak(last_id or 0, "the newest rows are missing (chain head points past the end)")
    return None


def snapshot(row, exclude: frozenset[str] = frozenset()) -> dict:
    """A row's column values as JSON-able text, for "what changed" in an audit row (secrets left out)."""
    values = {}
    for column in inspect(row).mapper.column_attrs:
        if column.key in exclude:
            continue
        value = getattr(row, column.key)
        values[column.key] = value if value is None or isinstance(value, (bool, int, str)) else str(value)
    return values


def changed_fields(before: dict, after: dict) -> dict:
    """{field: [old, new]} for every field whose value differs."""
    return {key: [before.get(key), value] for key, value in after.items() if before.get(key) != value}
