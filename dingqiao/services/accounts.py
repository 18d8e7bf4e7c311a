"""Accounts: members created from their WeChat identity, admin accounts, referral codes; a member account
as the operations team sees it, and disabling or enabling it."""
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import NoReturn

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ..china_time import CHINA_TIME
from ..db import run, write_transaction
from ..models import (
    AdminRole,
    AdminUser,
    AuditLog,
    BindingAttempt,
    Order,
    ReferralBinding,
    TeamPath,
    User,
    Wallet,
    Withdrawal,
    WithdrawalStatus,
)
from ..models.base import utcnow
from ..wechat.oauth import WeChatProfile
from . import DomainError, NotFound, Forbidden, NotAuthenticated, TooManyAttempts
from .audit import record_audit
from .logins import LoginClient, open_login_session
from .policy import Duty, require

# No 0/O, 1/I/L: codes are read aloud and typed from posters.
REFERRAL_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
REFERRAL_CODE_LENGTH = 8
REFERRAL_CODE_PATTERN = re.compile(r"^[0-9A-Za-z]{4,16}$")
USERNAME_PATTERN = re.compile(r"^[a-zA-Z0-9_.-]{3,64}$")
MIN_ADMIN_PASSWORD_LENGTH = 12  # every admin account, however it is made (wizard, command line, data page)
MAX_ADMIN_REASON_LENGTH = 200
DISABLED_MESSAGE = "该账号已停用，如有疑问请联系客服。"


class InvalidCredentials(NotAuthenticated):
    pass


class AccountDisabled(Forbidden):
    pass


class AccountLocked(TooManyAttempts):
    pass


def new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


def clean_referral_code(raw: str | None) -> str | None:
    """A referral code as it may arrive in a URL, or None when it cannot be one."""
    if not raw:
        return None
    code = raw.strip().upper()
    return code if REFERRAL_CODE_PATTERN.fullmatch(code) else None


def login_wechat_user(session: Session, profile: WeChatProfile, ref_code: str | None) -> User:
    """Find the member by openid or create them; refresh nickname and avatar. A disabled account is refused
    and left as it was. Safe against two first logins of the same person at once: the unique openid lets one
    insert win and the other reads it."""
    for _attempt in range(3):
        try:
            with write_transaction(session):
                user = session.execute(select(User).where(User.openid == profile.openid)).scalar_one_or_none()
                if user is None:
                    user = User(
                        openid=profile.openid,
                        referral_code=new_referral_code(),
                        signup_ref_code=ref_code,
                    )
                    session.add(user)
                elif not user.is_active:
                    raise AccountDisabled(DISABLED_MESSAGE)
                if profile.unionid:
                    user.unionid = profile.unionid
                if profile.nickname:
                    user.nickname = profile.nickname
                if profile.avatar_url:
                    user.avatar_url = profile.avatar_url
                user.last_login_at = utcnow()
            return user
        except IntegrityError:
            session.rollback()
    raise DomainError("登录繁忙，请稍后重试。")


def record_member_login(session: Session, user_id: int) -> User:
    """Demo login: the user exists already; only the login time changes."""
    with write_transaction(session):
        user = session.get(User, user_id)
        if user is None:
            raise InvalidCredentials("该用户不存在。")
        if not user.is_active:
            raise AccountDisabled(DISABLED_MESSAGE)
        user.last_login_at = utcnow()
    return user


def check_admin_password(password: str) -> None:
    """The one rule for an admin's password, wherever it is set."""
    if len(password) < MIN_ADMIN_PASSWORD_LENGTH:
        raise DomainError(f"密码至少 {MIN_ADMIN_PASSWORD_LENGTH} 位。")


def create_admin(session: Session, username: str, password: str, role: str = AdminRole.SUPERADMIN) -> AdminUser:
    username = username.strip()
    if not USERNAME_PATTERN.fullmatch(username):
        raise DomainError("用户名需为 3–64 位字母、数字或 _ . -")
    check_admin_password(password)
    if role not in set(AdminRole):
        raise DomainError("未知的管理员角色。")
    try:
        with write_transaction(session):
            admin = AdminUser(username=username, role=role)
            admin.set_password(password)
            session.add(admin)
            session.flush()
            record_audit(
                session,
                actor_kind="system",
                actor_id=None,
                action="admin.create",
                target_type="admin_user",
                target_id=admin.id,
                detail={"username": username, "role": role},
            )
    except IntegrityError:
        session.rollback()
        raise DomainError("该用户名已存在。") from None
    return admin


# Checked when the username is unknown, so that a wrong name costs as long as a wrong password.
_UNKNOWN_ADMIN_HASH = generate_password_hash("no such admin")
MAX_AUDITED_USERNAME = 64


@dataclass(frozen=True)
class LockoutPolicy:
    """``failures`` wrong passwords in a row lock an admin account for ``first_lock``; each further wrong
    password after that doubles it, up to ``longest_lock``. A right password resets the count."""

    failures: int = 5
    first_lock: timedelta = timedelta(minutes=1)
    longest_lock: timedelta = timedelta(hours=1)

    def lock_for(self, failures: int) -> timedelta | None:
        if failures < self.failures:
            return None
        doublings = min(failures - self.failures, 20)  # 2**20 minutes is far past any sane longest lock
        return min(self.first_lock * 2**doublings, self.longest_lock)


def _locked_message(until: datetime) -> str:
    local = until.replace(tzinfo=timezone.utc).astimezone(CHINA_TIME)
    return f"密码错误次数过多，该账号已暂时锁定，请于 {local:%H:%M} 后再试。"


_COUNT_FAILURE = (update(AdminUser).where(AdminUser.id == bindparam("admin_id"))
                  .values(failed_logins=AdminUser.failed_logins + 1).returning(AdminUser.failed_logins))
_LOCK = update(AdminUser).where(AdminUser.id == bindparam("admin_id")).values(locked_until=bindparam("until"))
# A right password counts only while the account is not locked, checked again under the write lock: of
# parallel guesses sent as the count crosses the limit, none that lands after the lock gets in.
_LOG_IN = (update(AdminUser)
           .where(AdminUser.id == bindparam("admin_id"), AdminUser.is_active.is_(True),
                  (AdminUser.locked_until.is_(None)) | (AdminUser.locked_until <= bindparam("now")))
           .values(failed_logins=0, locked_until=None, last_login_at=bindparam("now")))


def authenticate_admin(session: Session, username: str, password: str, client: LoginClient,
                       lockout: LockoutPolicy, lifetime: timedelta) -> AdminUser:
    """Check the password and open a login session of ``lifetime``. Check it first — a deliberately slow hash —
    and only then take the write lock, so a flood of wrong passwords never holds up payments on SQLite.

    Every refusal is audited with the name tried, the address and the reason. Wrong passwords count towards
    the account's lockout (``LockoutPolicy``); while it is locked even the right password is refused, unchecked,
    with the time to try again."""
    username, now = username.strip(), utcnow()
    admin = session.execute(select(AdminUser).where(AdminUser.username == username)).scalar_one_or_none()
    if admin is None:
        check_password_hash(_UNKNOWN_ADMIN_HASH, password)
        _refuse(session, None, username, client, "unknown_user")
    if admin.locked_until is not None and admin.locked_until > now:
        _refuse(session, admin.id, username, client, "locked", locked_until=admin.locked_until)
    if not admin.check_password(password):
        _refuse(session, admin.id, username, client, "wrong_password", lockout=lockout)
    if not admin.is_active:
        _refuse(session, admin.id, username, client, "disabled")
    with write_transaction(session):
        if not run(session, _LOG_IN, {"admin_id": admin.id, "now": now}).rowcount:
            admin = session.get(AdminUser, admin.id)
            locked_until = admin.locked_until if admin.is_active else None
            _audit_refusal(session, admin.id, username, client, "locked" if locked_until else "disabled",
                           locked_until)
        else:
            admin = session.get(AdminUser, admin.id)
            record_audit(session, actor_kind="admin", actor_id=admin.id, action="admin.login",
                         target_type="admin_user", target_id=admin.id, detail={"ip": client.ip})
            open_login_session(session, admin, lifetime, client)
            return admin
    raise AccountLocked(_locked_message(locked_until)) if locked_until else InvalidCredentials("用户名或密码错误。")


def _refuse(session: Session, admin_id: int | None, username: str, client: LoginClient, reason: str, *,
            lockout: LockoutPolicy | None = None, locked_until: datetime | None = None) -> NoReturn:
    """Audit a refused admin login, count a wrong password towards the lockout, and raise the refusal."""
    with write_transaction(session):
        if lockout is not None:
            failures = run(session, _COUNT_FAILURE, {"admin_id": admin_id}).scalar_one()
            if (lock := lockout.lock_for(failures)) is not None:
                locked_until = utcnow() + lock
                run(session, _LOCK, {"admin_id": admin_id, "until": locked_until})
        _audit_refusal(session, admin_id, username, client, reason, locked_until)
    if locked_until is not None:
        raise AccountLocked(_locked_message(locked_until))
    raise InvalidCredentials("用户名或密码错误。")


def _audit_refusal(session: Session, admin_id: int | None, username: str, client: LoginClient, reason: str,
                   locked_until: datetime | None) -> None:
    detail = {"username": username[:MAX_AUDITED_USERNAME], "ip": client.ip, "reason": reason}
    if locked_until is not None:
        detail["locked_until"] = locked_until.isoformat(timespec="seconds")
    record_audit(session, actor_kind="system", actor_id=None, action="admin.login_failed",
                 target_type="admin_user", target_id=admin_id or "", detail=detail)


def locked_admins(session: Session) -> list[AdminUser]:
    """Admin accounts locked now by wrong passwords, for the superadmin's login page."""
    return list(session.scalars(select(AdminUser).where(AdminUser.locked_until > utcnow())
                                .order_by(AdminUser.username)))


def unlock_admin(session: Session, actor: AdminUser, admin_id: int) -> None:
    """A superadmin lifts a lockout (the real admin locked out by someone guessing). Audited."""
    require(actor, Duty.ACCOUNTS, "只有超级管理员可以解除锁定。")
    with write_transaction(session):
        changed = session.execute(update(AdminUser).where(AdminUser.id == admin_id)
                                  .values(failed_logins=0, locked_until=None)).rowcount
        if not changed:
            raise NotFound("该管理员不存在。")
        record_audit(session, actor_kind="admin", actor_id=actor.id, action="admin.unlock",
                     target_type="admin_user", target_id=admin_id)


def admin_reason(raw: str | None, missing: str = "") -> str:
    """The reason an admin gives for an audited change, spaces folded. Too long is refused rather than cut, so
    the audit keeps what was written; with ``missing`` given, an empty reason is refused with that message."""
    reason = " ".join((raw or "").split())
    if len(reason) > MAX_ADMIN_REASON_LENGTH:
        raise DomainError(f"原因最多 {MAX_ADMIN_REASON_LENGTH} 字。", field="reason")
    if missing and not reason:
        raise DomainError(missing, field="reason")
    return reason


def set_member_active(session: Session, admin: AdminUser, user_id: int, active: bool, reason: str) -> bool:
    """Disable or enable a member account, audited. Returns False, writing nothing, when it already was so.

    Every login of the member ends at once (a new ``session_version``, as ``User.is_active`` bumps it on any
    change through the ORM; this UPDATE bypasses that, so it bumps it itself), and both login paths refuse a
    disabled member. Money is left alone: the wallet stays and pending withdrawals are not cancelled — finance
    reviews them."""
    reason = admin_reason(reason, "" if active else "请填写停用原因。")
    with write_transaction(session):
        if session.get(User, user_id) is None:
            raise NotFound("会员不存在。")
        changed = session.execute(
            update(User).where(User.id == user_id, User.is_active == (not active))
            .values(is_active=active, session_version=User.session_version + 1)
        ).rowcount
        if changed:
            record_audit(session, actor_kind="admin", actor_id=admin.id,
                         action="member.enabled" if active else "member.disabled", target_type="user",
                         target_id=user_id, detail={"reason": reason})
    return bool(changed)


@dataclass(frozen=True)
class AuditEntry:
    row: AuditLog
    actor: str  # the admin's username; empty for the system
    detail: dict


@dataclass(frozen=True)
class MemberOverview:
    member: User
    binding: ReferralBinding | None
    direct_count: int
    team_size: int
    wallet: Wallet | None
    open_withdrawals: int
    orders: list[Order]
    attempts: list[BindingAttempt]
    audit: list[AuditEntry]


OVERVIEW_ROWS = 10
AUDIT_ROWS = 50


def member_overview(session: Session, user_id: int) -> MemberOverview:
    """One member for the admin detail page: identity, upline and team, money, latest orders, how they were
    bound and what admins did to the account."""
    member = session.get(User, user_id)
    if member is None:
        raise NotFound("会员不存在。")
    direct_count, team_size = session.execute(
        select(func.count(case((TeamPath.depth == 1, 1))), func.count()).where(TeamPath.ancestor_id == user_id)
    ).one()
    audit_rows = session.execute(
        select(AuditLog, AdminUser.username)
        .outerjoin(AdminUser, (AuditLog.actor_kind == "admin") & (AdminUser.id == AuditLog.actor_id))
        .where(AuditLog.target_type == "user", AuditLog.target_id == str(user_id))
        .order_by(AuditLog.id.desc()).limit(AUDIT_ROWS)
    ).all()
    return MemberOverview(
        member=member,
        binding=member.binding,
        direct_count=direct_count,
        team_size=team_size,
        wallet=session.scalar(select(Wallet).where(Wallet.user_id == user_id)),
        open_withdrawals=session.scalar(
            select(func.count()).select_from(Withdrawal).where(
                Withdrawal.user_id == user_id,
                Withdrawal.status.in_([WithdrawalStatus.REQUESTED, WithdrawalStatus.APPROVED]))
        ),
        orders=list(session.scalars(
            select(Order).where(Order.user_id == user_id).order_by(Order.created_at.desc(), Order.id.desc())
            .limit(OVERVIEW_ROWS)
        )),
        attempts=list(session.scalars(
            select(BindingAttempt).where(BindingAttempt.user_id == user_id).order_by(BindingAttempt.id.desc())
            .limit(OVERVIEW_ROWS)
        )),
        audit=[AuditEntry(row, username or "", json.loads(row.detail)) for row, username in audit_rows],
    )


MOBILE = re.compile(r"1[3-9]\d{9}")


class PhoneError(DomainError):
    pass


def normalise_mobile(raw: str | None) -> str:
    """A mainland mobile number as 11 digits: spaces, dashes and a +86 / 86 prefix are forgiven, nothing else."""
    text = re.sub(r"[\s\-()（）]", "", (raw or "").strip())[:20]
    if text.startswith("+86"):
        text = text[3:]
    elif text.startswith("86") and len(text) == 13:
        text = text[2:]
    if not (text.isascii() and MOBILE.fullmatch(text)):
        raise PhoneError("请输入正确的手机号（11 位数字，1 开头）。")
    return text


def set_member_phone(session: Session, user_id: int, raw: str | None) -> str:
    """Record (or change) the member's mobile number — asked at the first checkout (the outlet may call about the
    pickup) and before the first withdrawal, editable in 我的, searchable by admins."""
    phone = normalise_mobile(raw)
    with write_transaction(session):
        if not session.execute(update(User).where(User.id == user_id).values(phone=phone)).rowcount:
            raise NotFound("账户不存在。")
    return phone


def member_phone(session: Session, user_id: int) -> str | None:
    return session.scalar(select(User.phone).where(User.id == user_id))
