"""Login sessions: one row per login of a member or an admin, so that each can be ended by the server."""
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import utcnow


class LoginSession(db.Model):
    """A login, named in the session and remember cookies by a random token of which only the SHA-256 is kept
    (a copy of this table logs nobody in). It is live while not revoked, not past ``expires_at`` (the absolute
    lifetime), seen after the idle cutoff, opened under the account's current ``session_version`` and the
    account is active — the login loader checks all of it in one query."""

    __tablename__ = "login_sessions"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (admin_user_id IS NULL)", name="one_principal"),
        Index("ix_login_sessions_user_id", "user_id", "revoked_at"),
        Index("ix_login_sessions_admin_user_id", "admin_user_id", "revoked_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    admin_user_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    principal_version: Mapped[int]  # the account's session_version when this login began
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Written at most once a minute per login (services/logins.py), never on every request.
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # Shown to the owner to tell their devices apart; never used to decide anything.
    user_agent: Mapped[str] = mapped_column(String(256), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
