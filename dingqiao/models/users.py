"""People: members (with their identity), admin accounts, and the referral relation between members."""
from datetime import datetime
from enum import StrEnum

from flask_login import UserMixin
from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from .base import one_of, utcnow


class Identity(StrEnum):
    MEMBER = "member"
    OUTLET = "outlet"
    FACTORY = "factory"

    @property
    def label(self) -> str:
        return {"member": "会员", "outlet": "核销网点", "factory": "工厂店"}[self.value]


class LoginPrincipal(UserMixin):
    """What Flask-Login sees of a member or an admin. The id it keeps in the session and the remember cookie
    (``get_id``) names the login session the request came with (``LoginSession``), not the person: every login
    gets its own id, which the server can end. ``login_id`` and ``login_session_id`` are set when a login
    session is opened or loaded; ``session_version`` is bumped whenever what the account may do changes, which
    ends every login session opened before."""

    login_id: str | None = None
    login_session_id: int | None = None

    def get_id(self) -> str | None:
        return self.login_id

    # UserMixin compares get_id(): two objects for one person from two logins must still be equal.
    def __eq__(self, other):
        if isinstance(other, LoginPrincipal):
            return type(self) is type(other) and self.id == other.id
        return NotImplemented

    __hash__ = object.__hash__

    def _end_sessions_on_change(self, key: str, value):
        if getattr(self, key) != value:
            self.session_version = (self.session_version or 0) + 1
        return value


class User(LoginPrincipal, db.Model):
    """A person using the H5. One identity at a time; the menu and the price tier follow it."""

    __tablename__ = "users"
    __table_args__ = (
        one_of("identity", Identity, "identity"),
        Index("ix_users_created_at", "created_at"),  # new members per day on the admin dashboard
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    nickname: Mapped[str] = mapped_column(String(64), default="")
    avatar_url: Mapped[str] = mapped_column(String(512), default="")
    phone: Mapped[str | None] = mapped_column(String(20))
    identity: Mapped[str] = mapped_column(String(16), default=Identity.MEMBER)
    referral_code: Mapped[str] = mapped_column(String(16), unique=True)
    # The referral code this person arrived with (a share link before their first login); the binding
    # service decides what it means.
    signup_ref_code: Mapped[str | None] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    binding: Mapped["ReferralBinding | None"] = relationship(
        foreign_keys="ReferralBinding.user_id", back_populates="user", uselist=False
    )

    @validates("is_active")
    def _account_changed(self, key: str, value):
        return self._end_sessions_on_change(key, value)

    @property
    def identity_enum(self) -> Identity:
        return Identity(self.identity)

    @property
    def display_name(self) -> str:
        return self.nickname or f"用户{self.referral_code}"

    def __str__(self) -> str:
        return self.display_name


class AdminRole(StrEnum):
    OPERATOR = "operator"
    FINANCE = "finance"
    SUPERADMIN = "superadmin"

    @property
    def label(self) -> str:
        return {"operator": "运营", "finance": "财务", "superadmin": "超级管理员"}[self.value]


# Money leaves the business only with finance's approval (refunds, withdrawals, stray payments).
MONEY_REVIEWERS = frozenset({AdminRole.FINANCE, AdminRole.SUPERADMIN})


class AdminUser(LoginPrincipal, db.Model):
    """An operations-team account for the desktop admin pages. Username and hashed password; consecutive wrong
    passwords lock the account for a while (services/accounts.py)."""

    __tablename__ = "admin_users"
    __table_args__ = (one_of("role", AdminRole, "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default=AdminRole.OPERATOR)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_version: Mapped[int] = mapped_column(default=0)
    failed_logins: Mapped[int] = mapped_column(default=0)  # wrong passwords since the last good one
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    @validates("password_hash", "role", "is_active")
    def _account_changed(self, key: str, value):
        return self._end_sessions_on_change(key, value)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class BindingSource(StrEnum):
    LINK = "link"  # a share link (?ref=CODE), before or after login
    QRCODE = "qrcode"  # scan event of the parametric QR by a follower
    FOLLOW = "follow"  # subscribe through the parametric QR
    ADMIN = "admin"  # an audited admin correction


class ReferralBinding(db.Model):
    """锁粉: who brought whom. The primary key on user_id makes the first binding win at the database."""

    __tablename__ = "referral_bindings"
    __table_args__ = (
        CheckConstraint("user_id <> upline_id", name="not_self"),
        one_of("source", BindingSource, "source"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    upline_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    bound_at: Mapped[datetime] = mapped_column(default=utcnow)
    # None: locked for good. A time: replaceable after it (the protection-period setting).
    locked_until: Mapped[datetime | None]

    user: Mapped[User] = relationship(foreign_keys=[user_id], back_populates="binding")
    upline: Mapped[User] = relationship(foreign_keys=[upline_id])


class BindingAttempt(db.Model):
    """Provenance: every binding attempt, accepted or refused, with its source and reason."""

    __tablename__ = "binding_attempts"
    __table_args__ = (one_of("source", BindingSource, "source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    referral_code: Mapped[str] = mapped_column(String(32))
    upline_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    source: Mapped[str] = mapped_column(String(16))
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamPath(db.Model):
    """Closure table of the referral tree: one row per (ancestor, descendant) at its depth.

    "My team to depth 2" is one indexed range scan on (ancestor_id, depth) on SQLite and Postgres alike.
    """

    __tablename__ = "team_paths"
    __table_args__ = (
        CheckConstraint("depth >= 1", name="depth_positive"),
        Index("ix_team_paths_ancestor_depth", "ancestor_id", "depth"),
    )

    ancestor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    descendant_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    depth: Mapped[int]
