"""What every blueprint package may use, and the only blueprint module one package may import from another:
who may see what (each blueprint names its rule once, in ``before_request``; views never repeat it), where a
form may send the browser next, the client of a login, and a form's uploaded photos."""
from urllib.parse import urlsplit

from flask import abort, current_app, redirect, request, url_for
from flask_login import current_user

from ..extensions import htmx
from ..web import current_path
from ..models import AdminRole, AdminUser, Identity, User
from ..services.logins import LoginClient
from ..services.policy import has_role


def current_member() -> User | None:
    principal = current_user._get_current_object()
    return principal if isinstance(principal, User) else None


def identity_of(member: User | None) -> Identity:
    """The prices and tabs a viewer gets: their identity, or a member's for a visitor."""
    return member.identity_enum if member else Identity.MEMBER


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
        if not has_role(admin, roles):
            abort(403)
        return None

    return check


def safe_next(target: str | None) -> str:
    """Only same-site paths; anything else (``//evil``, ``https://…``) goes home."""
    if not target:
        return url_for("shop.home")
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//")
            # browsers read "/\evil.example" as "//evil.example"; control characters hide such tricks
            or "\\" in target or any(ord(c) < 32 for c in target)):
        return url_for("shop.home")
    return target


def login_client() -> LoginClient:
    return LoginClient(user_agent=request.user_agent.string, ip=request.remote_addr or "")


def uploaded_photos() -> list:
    """The files of the form's ``photos`` input; a browser sends one empty part when none was chosen."""
    return [photo.stream for photo in request.files.getlist("photos") if photo.filename]


def photo_storage() -> dict:
    """Where and how large: the arguments every service_cases call with photos takes."""
    return {"upload_folder": current_app.config["UPLOAD_FOLDER"], "max_bytes": current_app.config["UPLOAD_MAX_BYTES"]}
