"""Writes made from the data pages (数据管理, Flask-Admin): a row created, edited or deleted is one
``write_transaction`` with its audit row, which names every changed field (old, new) and what the view adds
(a password changed, pictures added or removed). The page hands in what fills the row — Flask-Admin's form
and the view's own rules — as a callable that runs inside the transaction and returns those extras.

The reads a list page needs for a whole page of rows (members' names, wallet owners, the team's usernames)
are here too, so the page reads each once.
"""
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import AdminRole, AdminUser, AuditLog, Order, User, Wallet
from . import DomainError, cache_versions
from .accounts import MIN_ADMIN_PASSWORD_LENGTH, check_admin_password  # noqa: F401  (the data page labels its field)
from .audit import changed_fields, record_audit, snapshot


Fill = Callable[[], dict | None]


# Tables whose rows the shop's pages cache: a save bumps the version, so every worker shows it at once.
CACHED_TABLES = {"products": cache_versions.CATALOG, "categories": cache_versions.CATALOG}


def _audit(session: Session, admin_id: int, row, action: str, detail: dict) -> None:
    """Every data-page write ends here, inside its transaction: the audit row, and the cache version bumped."""
    record_audit(session, actor_kind="admin", actor_id=admin_id, action=f"{row.__tablename__}.{action}",
                 target_type=row.__tablename__, target_id=row.id, detail=detail)
    if row.__tablename__ in CACHED_TABLES:
        cache_versions.bump(session, CACHED_TABLES[row.__tablename__])


def create_row(session: Session, admin_id: int, row, fill: Fill, *, exclude: frozenset[str] = frozenset()):
    """``fill`` puts the form's values in the new ``row`` (and adds it to the session); it and the audit row
    commit together, or neither does."""
    with write_transaction(session):
        extra = fill() or {}
        session.add(row)
        session.flush()
        _audit(session, admin_id, row, "create", {"values": snapshot(row, exclude), **extra})
    return row


def update_row(session: Session, admin_id: int, row, fill: Fill, *, exclude: frozenset[str] = frozenset()) -> bool:
    """Apply ``fill`` to ``row``; audited when a field changed or ``fill`` reports something. Returns whether
    an audit row was written."""
    with write_transaction(session):
        before = snapshot(row, exclude)  # read inside the write transaction
        extra = fill() or {}
        session.flush()
        changes = changed_fields(before, snapshot(row, exclude))
        if not (changes or extra):
            return False
        _audit(session, admin_id, row, "update", {"changes": changes, **extra})
    return True


def delete_row(session: Session, admin_id: int, row, before: Callable[[], None] | None = None, *,
               exclude: frozenset[str] = frozenset()) -> None:
    with write_transaction(session):
        values = snapshot(row, exclude)
        if before is not None:
            before()
        _audit(session, admin_id, row, "delete", {"values": values})
        session.delete(row)
        session.flush()


def apply_admin_account(account: AdminUser, *, password: str, is_created: bool,
                        acting_admin_id: int | None) -> dict:
    """A team account as the superadmin edits it: a new account needs a password, a password is long enough,
    and nobody takes their own superadmin rights or switches themselves off. Returns the audit extra (the
    fact that the password changed, never the password)."""
    if is_created and not password:
        raise DomainError("新账号需要设置密码。")
    extra = {}
    if password:
        check_admin_password(password)
        account.set_password(password)
        extra = {"password_changed": True}
    if not is_created and account.id == acting_admin_id and (
            account.role != AdminRole.SUPERADMIN or not account.is_active):
        raise DomainError("不能取消自己的超级管理员权限或停用自己。")
    return extra


# ---------------------------------------------------------------- what a page of rows shows

def display_names(session: Session, user_ids) -> dict[int, str]:
    ids = {user_id for user_id in user_ids if user_id is not None}
    if not ids:
        return {}
    return {user.id: user.display_name for user in session.scalars(select(User).where(User.id.in_(ids)))}


def order_numbers(session: Session, order_ids) -> dict[int, str]:
    ids = {order_id for order_id in order_ids if order_id is not None}
    if not ids:
        return {}
    return dict(session.execute(select(Order.id, Order.order_no).where(Order.id.in_(ids))).all())


def wallet_owners(session: Session, wallet_ids) -> dict[int, int]:
    ids = {wallet_id for wallet_id in wallet_ids if wallet_id is not None}
    if not ids:
        return {}
    return dict(session.execute(select(Wallet.id, Wallet.user_id).where(Wallet.id.in_(ids))).all())


def admin_usernames(session: Session) -> dict[int, str]:
    """A team of a few accounts: all of them."""
    return dict(session.execute(select(AdminUser.id, AdminUser.username)).all())


def audit_row_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditLog))
