"""登录管理: admin logins that can be ended. Every admin sees and ends their own; a superadmin sees every
admin's, ends any one login or all of an admin's, and lifts a password lockout. The services audit each."""
from flask import Blueprint, current_app, render_template, url_for

from ...extensions import db
from ...models import AdminRole
from ...services.accounts import locked_admins, unlock_admin
from ...services.logins import admin_policy, end_admin_session, end_all_admin_sessions, live_logins
from ...web import redirect_after_post
from ..common import current_admin, require_admin

bp = Blueprint("admin_sessions", __name__, url_prefix="/admin/sessions")
bp.before_request(require_admin())


@bp.get("/")
def index():
    admin = current_admin()
    superadmin = admin.role == AdminRole.SUPERADMIN
    return render_template(
        "admin/sessions.html", admin=admin, superadmin=superadmin,
        logins=live_logins(db.session, admin, admin_policy(current_app.config), all_admins=superadmin),
        locked=locked_admins(db.session) if superadmin else [],
    )


@bp.post("/<int:login_session_id>/end")
def end(login_session_id: int):
    end_admin_session(db.session, current_admin(), login_session_id)
    return redirect_after_post(url_for("admin_sessions.index"))


@bp.post("/admins/<int:admin_id>/end-all")
def end_all(admin_id: int):
    end_all_admin_sessions(db.session, current_admin(), admin_id)
    return redirect_after_post(url_for("admin_sessions.index"))


@bp.post("/admins/<int:admin_id>/unlock")
def unlock(admin_id: int):
    unlock_admin(db.session, current_admin(), admin_id)
    return redirect_after_post(url_for("admin_sessions.index"))
