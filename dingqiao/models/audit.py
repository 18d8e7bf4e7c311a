"""The audit log: append-only and hash-chained, so a change to history is detectable.

Each row's hash covers its own content and the previous row's hash. Appenders serialise on the single
``audit_chain_head`` row (an UPDATE takes its row lock on Postgres; SQLite writers are serialised anyway),
so two concurrent appends can never fork the chain.
"""
from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import utcnow


class AuditLog(db.Model):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))  # admin | user | system
    actor_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32), default="")
    target_id: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditChainHead(db.Model):
    """Exactly one row (id = 1): the hash of the newest audit row and a lock point for appenders."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_hash: Mapped[str] = mapped_column(String(64))
    last_id: Mapped[int | None]
