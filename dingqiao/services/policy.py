"""Who among the admins may do what: the one place an admin's role is compared. Services call ``require``
before they act (the rule holds whatever page or job calls them); blueprints, Flask-Admin views and templates
ask ``may`` to decide what to show, and ``require_admin`` (blueprints/common.py) uses ``has_role`` to guard a
whole area. A superadmin holds every duty."""
from enum import StrEnum

from ..models import MONEY_REVIEWERS, AdminRole, AdminUser
from . import Forbidden


class Duty(StrEnum):
    MONEY = "money"  # money leaves or is redirected: refunds, withdrawals, stray payments, uplines, identities, rules
    APPLICATIONS = "applications"  # identity applications are judged by operations
    ACCOUNTS = "accounts"  # admin accounts, lockouts, everyone's logins, the setup wizard


HOLDERS: dict[Duty, frozenset[AdminRole]] = {
    Duty.MONEY: MONEY_REVIEWERS,
    Duty.APPLICATIONS: frozenset({AdminRole.OPERATOR, AdminRole.SUPERADMIN}),
    Duty.ACCOUNTS: frozenset({AdminRole.SUPERADMIN}),
}

REFUSALS = {
    Duty.MONEY: "只有财务或超级管理员可以进行此操作。",
    Duty.APPLICATIONS: "只有运营或超级管理员可以审核身份申请。",
    Duty.ACCOUNTS: "只有超级管理员可以进行此操作。",
}


def may(admin: AdminUser | None, duty: Duty) -> bool:
    return admin is not None and admin.role in HOLDERS[duty]


def require(admin: AdminUser | None, duty: Duty, refusal: str | None = None) -> None:
    """Refuse (``Forbidden``, with ``refusal`` or the duty's own message) unless ``admin`` holds ``duty``."""
    if not may(admin, duty):
        raise Forbidden(refusal or REFUSALS[duty])


def has_role(admin: AdminUser | None, roles) -> bool:
    """For an area open to some roles (none named: every admin); a superadmin is always let in."""
    return admin is not None and (not roles or admin.role in {*roles, AdminRole.SUPERADMIN})
