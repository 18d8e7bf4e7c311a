"""Accounts: members created from their WeChat identity, admin accounts, referral codes."""
import re
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ..db import write_transaction
from ..models import AdminRole, AdminUser, User
from ..models.base import utcnow
from ..wechat.oauth import WeChatProfile
from . import DomainError
from .audit import record_audit

# No 0/O, 1/I/L: codes are read aloud and typed from posters.
REFERRAL_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
REFERRAL_CODE_LENGTH = 8
REFERRAL_CODE_PATTERN = re.compile(r"^[0-9A-Za-z]{4,16}$")
USERNAME_PATTERN = re.compile(r"^[a-zA-Z0-9_.-]{3,64}$")
MIN_ADMIN_PASSWORD_LENGTH = 10


class InvalidCredentials(DomainError):
    status = 401


def new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


def clean_referral_code(raw: str | None) -> str | None:
    """A referral code as it may arrive in a URL, or None when it cannot be one."""
    if not raw:
        return None
    code = raw.strip().upper()
    return code if REFERRAL_CODE_PATTERN.fullmatch(code) else None


def login_wechat_user(session: Session, profile: WeChatProfile, ref_code: str | None) -> User:
    """Find the member by openid or create them; refresh nickname and avatar. Safe against two first logins
    of the same person at once: the unique openid lets one insert win and the other reads it."""
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
        if user is None or not user.is_active:
            raise InvalidCredentials("该用户不存在或已停用。")
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
