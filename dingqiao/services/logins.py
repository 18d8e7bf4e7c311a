"""Login sessions that the server can end: opened at each login, checked by the login loader on every request,
ended by logout, by "log out everywhere", by an admin, and — through the account's ``session_version`` — by any
change of password, role or active flag (models/users.py).

The id Flask-Login keeps in the session and the remember cookie is ``<kind>:<token>``: ``kind`` picks the
account table, ``token`` is random per login and stored only as its SHA-256.
"""
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.orm import Session

from ..db import run, write_transaction
from ..models import AdminUser, LoginSession, User
from ..models.base import utcnow
from . import NotFound
from .audit import record_audit
from .policy import Duty, may

TOKEN_BYTES = 32
# last_seen_at is written at most this often per login: reading pages costs no write, and the idle timeout is
# exact to within this much.
LAST_SEEN_WRITE_INTERVAL = timedelta(minutes=1)
MAX_USER_AGENT = 256
MAX_IP = 64


@dataclass(frozen=True)
class LoginClient:
    """Where a login comes from, kept only to show the owner which device is which."""

    user_agent: str = ""
    ip: str = ""


@dataclass(frozen=True)
class SessionPolicy:
    """How long a login lives: ``idle`` after the last request, ``lifetime`` after the login at most."""

    idle: timedelta
    lifetime: timedelta



def member_policy(config) -> SessionPolicy:
    """A member's login: idle and absolute lifetimes from the settings (days)."""
    return SessionPolicy(idle=timedelta(days=config["MEMBER_SESSION_IDLE_DAYS"]),
                         lifetime=timedelta(days=config["MEMBER_SESSION_MAX_DAYS"]))


def admin_policy(config) -> SessionPolicy:
    """An admin's login: shorter, in minutes idle and hours in all."""
    return SessionPolicy(idle=timedelta(minutes=config["ADMIN_SESSION_IDLE_MINUTES"]),
                         lifetime=timedelta(hours=config["ADMIN_SESSION_MAX_HOURS"]))


@dataclass(frozen=True)
class _Kind:
    model: type
    owner: object  # the LoginSession column naming the account


KINDS = {"user": _Kind(User, LoginSession.user_id), "admin": _Kind(AdminUser, LoginSession.admin_user_id)}
_KIND_OF = {User: "user", AdminUser: "admin"}


def _live(kind: _Kind) -> tuple:
    """The conditions of a live login of ``kind``, the account joined; ``now`` and ``idle_cutoff`` bound."""
    return (LoginSession.revoked_at.is_(None), LoginSession.expires_at > bindparam("now"),
            LoginSession.last_seen_at > bindparam("idle_cutoff"),
            LoginSession.principal_version == kind.model.session_version, kind.model.is_active.is_(True))


# Built once: the loader runs on every request of a logged-in person (one indexed query, account joined).
_LOAD = {name: select(kind.model, LoginSession.id, LoginSession.last_seen_at)
         .join(LoginSession, kind.owner == kind.model.id)
         .where(LoginSession.token_hash == bindparam("token_hash"), *_live(kind))
         for name, kind in KINDS.items()}
_TOUCH = (update(LoginSession)
          .where(LoginSession.id == bindparam("login_session_id"), LoginSession.last_seen_at < bindparam("stale"))
          .values(last_seen_at=bindparam("seen_at")))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def open_login_session(session: Session, principal: User | AdminUser, lifetime: timedelta,
                       client: LoginClient) -> str:
    """Record a new login (joining the caller's write transaction, if any) and return the id Flask-Login is to
    keep; ``principal.get_id()`` returns it from now on."""
    kind_name = _KIND_OF[type(principal)]
    owner = KINDS[kind_name].owner
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    with write_transaction(session):
        # The account's ended logins go now, so the table holds about one row per device, not one per login.
        session.execute(delete(LoginSession).where(
            owner == principal.id, or_(LoginSession.revoked_at.is_not(None), LoginSession.expires_at <= now,
                                       LoginSession.principal_version != principal.session_version)))
        row = LoginSession(token_hash=hash_token(token), principal_version=principal.session_version,
                           created_at=now, last_seen_at=now, expires_at=now + lifetime,
                           user_agent=client.user_agent[:MAX_USER_AGENT], ip=client.ip[:MAX_IP],
                           **{owner.key: principal.id})
        session.add(row)
        session.flush()
        principal.login_session_id = row.id
    principal.login_id = f"{kind_name}:{token}"
    return principal.login_id


def load_principal(session: Session, login_id: str, idle: dict[str, timedelta]) -> User | AdminUser | None:
    """The member or admin of a live login, or None. ``idle`` is each kind's idle timeout. Refreshes the
    login's last-seen time when it is more than a minute old."""
    kind, _, token = login_id.partition(":")
    statement = _LOAD.get(kind)
    if statement is None or not token:
        return None
    now = utcnow()
    row = session.execute(statement, {"token_hash": hash_token(token), "now": now,
                                      "idle_cutoff": now - idle[kind]}).one_or_none()
    if row is None:
        return None
    principal, login_session_id, last_seen_at = row
    if last_seen_at < now - LAST_SEEN_WRITE_INTERVAL:
        with write_transaction(session):
            run(session, _TOUCH, {"login_session_id": login_session_id, "seen_at": now,
                                  "stale": now - LAST_SEEN_WRITE_INTERVAL})
    principal.login_id, principal.login_session_id = login_id, login_session_id
    return principal


def _revoke(session: Session, *conditions) -> int:
    return session.execute(
        update(LoginSession).where(LoginSession.revoked_at.is_(None), *conditions).values(revoked_at=utcnow())
    ).rowcount


def end_login_session(session: Session, principal: User | AdminUser) -> None:
    """Logout: the login this request came with ends; a copied cookie of it stops working at once."""
    if principal.login_session_id is None:
        return
    with write_transaction(session):
        _revoke(session, LoginSession.id == principal.login_session_id)


def end_member_session(session: Session, member: User, login_session_id: int) -> None:
    """A member ends one of their own logins (another device). Someone else's is a missing one."""
    with write_transaction(session):
        if not _revoke(session, LoginSession.id == login_session_id, LoginSession.user_id == member.id):
            raise NotFound("该登录设备不存在或已退出。")


def end_other_member_sessions(session: Session, member: User) -> int:
    """退出其他设备: every login of the member but this one ends. Returns how many."""
    with write_transaction(session):
        return _revoke(session, LoginSession.user_id == member.id, LoginSession.id != member.login_session_id)


@dataclass(frozen=True)
class LiveLogin:
    row: LoginSession
    account: User | AdminUser
    current: bool  # the login this request came with

    @property
    def device(self) -> str:
        """A few words telling the owner's devices apart, from the browser's User-Agent."""
        agent = self.row.user_agent
        app = "微信" if "MicroMessenger" in agent else "浏览器"
        system = next((name for marker, name in _SYSTEMS if marker in agent), "未知设备")
        return f"{system} · {app}"


# The first marker found names the system: iPad before Mac (iPadOS says "Macintosh" too), Android before Linux.
_SYSTEMS = (("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "安卓"), ("HarmonyOS", "鸿蒙"),
            ("Windows", "Windows"), ("Macintosh", "Mac"), ("Linux", "Linux"))


def live_logins(session: Session, principal: User | AdminUser, policy: SessionPolicy,
                all_admins: bool = False) -> list[LiveLogin]:
    """The principal's live logins, newest first; with ``all_admins`` (a superadmin's page) every admin's."""
    kind_name = _KIND_OF[type(principal)]
    kind = KINDS[kind_name]
    now = utcnow()
    statement = (select(LoginSession, kind.model).join(kind.model, kind.owner == kind.model.id).where(*_live(kind))
                 .order_by(LoginSession.last_seen_at.desc(), LoginSession.id.desc()))
    if not all_admins:
        statement = statement.where(kind.owner == principal.id)
    rows = session.execute(statement, {"now": now, "idle_cutoff": now - policy.idle}).all()
    return [LiveLogin(row, account, row.id == principal.login_session_id) for row, account in rows]


def _may_manage(actor: AdminUser, admin_user_id: int) -> bool:
    return may(actor, Duty.ACCOUNTS) or actor.id == admin_user_id


def end_admin_session(session: Session, actor: AdminUser, login_session_id: int) -> None:
    """An admin ends one admin login: their own, or — a superadmin — anyone's. Audited."""
    with write_transaction(session):
        row = session.get(LoginSession, login_session_id)
        if row is None or row.admin_user_id is None or not _may_manage(actor, row.admin_user_id):
            raise NotFound("该登录不存在，或您无权结束它。")
        if _revoke(session, LoginSession.id == login_session_id):
            record_audit(session, actor_kind="admin", actor_id=actor.id, action="admin_session.end",
                         target_type="admin_user", target_id=row.admin_user_id,
                         detail={"login_session_id": login_session_id})


def end_all_admin_sessions(session: Session, actor: AdminUser, admin_user_id: int) -> int:
    """Every login of one admin ends (the actor's own included, when it is them). Audited; returns how many."""
    with write_transaction(session):
        if session.get(AdminUser, admin_user_id) is None or not _may_manage(actor, admin_user_id):
            raise NotFound("该管理员不存在，或您无权操作。")
        ended = _revoke(session, LoginSession.admin_user_id == admin_user_id)
        record_audit(session, actor_kind="admin", actor_id=actor.id, action="admin_session.end_all",
                     target_type="admin_user", target_id=admin_user_id, detail={"ended": ended})
    return ended
