"""Who may see what. Each blueprint names its rule once (``before_request``); views never repeat it."""
from flask import abort, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import select

from ..extensions import db, htmx
from ..web import current_path
from ..models import AdminRole, AdminUser, User


def current_member() -> User | None:
    principal = current_user._get_current_object()
    return principal if isinstance(principal, User) else None


def current_admin() -> AdminUser | None:
    principal = current_user._get_current_object()
    return principal if isinstance(principal, AdminUser) else None


def _to_login(endpoint: str):
    target = url_for(endpoint, next=current_path() if request.method == "GET" else None)
    if htmx:
        # An htmx request cannot follow a redirect to a whole page usefully; ask htmx to navigate.
        return "", 401, {"HX-Redirect": target}
    return redirect(target)


def require_member():
    """``before_request`` for member areas: a logged-in, active member, else the login page."""
    if current_member() is None:
        return _to_login("auth.login")
    return None


def require_admin(*roles: AdminRole):
    """Build a ``before_request`` for admin areas; with ``roles``, only those roles (superadmin always)."""

    def check():
        admin = current_admin()
        if admin is None:
            return _to_login("admin.login")
        if roles and admin.role not in {*roles, AdminRole.SUPERADMIN}:
            abort(403)
        return None

    return check


def owned_or_404(model, owner_column, owner_id: int, **lookup):
    """Load one row by ``lookup`` that belongs to ``owner_id``. Someone else's row is indistinguishable
    from a missing one: 404, never 403, so ids cannot be probed."""
    statement = select(model).filter_by(**lookup).where(owner_column == owner_id)
    row = db.session.execute(statement).scalar_one_or_none()
    if row is None:
        abort(404)
    return row
