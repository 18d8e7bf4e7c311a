"""Append to the hash-chained audit log, and verify the chain."""
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Session

from ..models import AuditChainHead, AuditLog
from ..models.base import utcnow

GENESIS_HASH = "0" * 64


def _row_hash(row: AuditLog) -> str:
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


def record_audit(
    session: Session,
    *,
    actor_kind: str,
    actor_id: int | None,
    action: str,
    target_type: str = "",
    target_id: str | int = "",
    detail: dict | None = None,
) -> AuditLog:
    """Append one row. Call inside the caller's write transaction, so the row commits with the change."""
    touched = session.execute(
        update(AuditChainHead).where(AuditChainHead.id == 1).values(last_hash=AuditChainHead.last_hash)
    ).rowcount
    if not touched:
        session.add(AuditChainHead(id=1, last_hash=GENESIS_HASH, last_id=None))
        session.flush()
    head = session.execute(select(AuditChainHead).where(AuditChainHead.id == 1)).scalar_one()
    row = AuditLog(
        created_at=utcnow(),
        actor_kind=actor_kind,
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        detail=json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
        prev_hash=head.last_hash,
        row_hash="",
    )
    session.add(row)
    session.flush()  # assigns the id the hash covers
    row.row_hash = _row_hash(row)
    head.last_hash = row.row_hash
    head.last_id = row.id
    session.flush()
    return row


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
