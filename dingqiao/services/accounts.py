"""Accounts: members created from their WeChat identity, admin accounts, referral codes; a member account
as the operations team sees it, and disabling or enabling it."""
import json
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ..db import write_transaction
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
from . import DomainError, NotFound
from .audit import record_audit

# No 0/O, 1/I/L: codes are read aloud and typed from posters.
REFERRAL_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
REFERRAL_CODE_LENGTH = 8
REFERRAL_CODE_PATTERN = re.compile(r"^[0-9A-Za-z]{4,16}$")
USERNAME_PATTERN = re.compile(r"^[a-zA-Z0-9_.-]{3,64}$")
MIN_ADMIN_PASSWORD_LENGTH = 10
MAX_ADMIN_REASON_LENGTH = 200
DISABLED_MESSAGE = "该账号已停用，如有疑问请联系客服。"


class InvalidCredentials(DomainError):
    status = 401


class AccountDisabled(DomainError):
    status = 403


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


def create_admin(session: Session, username: str, password: str, role: str = AdminRole.SUPERADMIN) -> AdminUser:
    username = username.strip()
    if not USERNAME_PATTERN.fullmatch(username):
        raise DomainError("用户名需为 3–64 位字母、数字或 _ . -")
    if len(password) < MIN_ADMIN_PASSWORD_LENGTH:
        raise DomainError(f"密码至少 {MIN_ADMIN_PASSWORD_LENGTH} 位。")
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


def authenticate_admin(session: Session, username: str, password: str) -> AdminUser:
    """Check the password first — a deliberately slow hash — and only then take the write lock to record
    the login, so a flood of wrong passwords never holds up payments on SQLite."""
    admin = session.execute(select(AdminUser).where(AdminUser.username == username.strip())).scalar_one_or_none()
    if admin is None:
        check_password_hash(_UNKNOWN_ADMIN_HASH, password)
        raise InvalidCredentials("用户名或密码错误。")
    if not admin.is_active or not admin.check_password(password):
        raise InvalidCredentials("用户名或密码错误。")
    with write_transaction(session):
        admin = session.get(AdminUser, admin.id)
        admin.last_login_at = utcnow()
        record_audit(
            session, actor_kind="admin", actor_id=admin.id, action="admin.login", target_type="admin_user",
            target_id=admin.id,
        )
    return admin


def admin_reason(raw: str | None, missing: str = "") -> str:
    """The reason an admin gives for an audited change, spaces folded. Too long is refused rather than cut, so
    the audit keeps what was written; with ``missing`` given, an empty reason is refused with that message."""
    reason = " ".join((raw or "").split())
    if len(reason) > MAX_ADMIN_REASON_LENGTH:
        raise DomainError(f"原因最多 {MAX_ADMIN_REASON_LENGTH} 字。")
    if missing and not reason:
        raise DomainError(missing)
    return reason


def set_member_active(session: Session, admin: AdminUser, user_id: int, active: bool, reason: str) -> bool:
    """Disable or enable a member account, audited. Returns False, writing nothing, when it already was so.

    A disabled member's session ends at their next request (the login loader refuses inactive accounts) and
    both login paths refuse them. Money is left alone: the wallet stays and pending withdrawals are not
    cancelled — finance reviews them."""
    reason = admin_reason(reason, "" if active else "请填写停用原因。")
    with write_transaction(session):
        if session.get(User, user_id) is None:
            raise NotFound("会员不存在。")
        changed = session.execute(
            update(User).where(User.id == user_id, User.is_active == (not active)).values(is_active=active)
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
