"""Shared column helpers.

Money is ``Mapped[int]`` named ``*_fen`` (64-bit integer fen, see ``Base.type_annotation_map``); rates are
``*_bps`` basis points. Times are naive UTC in the database; templates show Asia/Shanghai.
"""
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def one_of(column: str, values: type[StrEnum], name: str) -> CheckConstraint:
    """A CHECK constraint keeping a string column inside an enum's values."""
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name)
