"""Blueprint registration, the login loader, error pages, the security headers every response carries, and
a log that never shows a secret."""
import logging
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, has_app_context, make_response, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..access_log import loggable_request, note_route
from ..extensions import db, login_manager
from ..services import DomainError
from ..web import domain_error_status, error_response, wants_fragment, wants_json
from ..services.logins import admin_policy, load_principal, member_policy
from .common import current_admin

HTTP_MESSAGES = {
    400: "请求有误，请返回重试。",
    401: "请先登录。",
    403: "没有权限访问此页面。",
    404: "页面不存在，或您无权查看。",
    405: "不支持的操作。",
    413: "上传的内容太大。",
    429: "操作太频繁，请稍后再试。",
    500: "系统繁忙，请稍后再试。",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'{script_origin}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https://thirdwx.qlogo.cn https://wx.qlogo.cn https://mp.weixin.qq.com; "
    "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def content_security_policy(config) -> str:
    """Only our own assets — plus WeChat's JS-SDK host when WECHAT_JSSDK_URL points there."""
    parts = urlsplit(config.get("WECHAT_JSSDK_URL", ""))
    origin = f" {parts.scheme}://{parts.netloc}" if parts.scheme == "https" and parts.netloc else ""
    return CONTENT_SECURITY_POLICY.format(script_origin=origin)


SECRET_SETTINGS = ("SECRET_KEY", "WECHAT_APP_SECRET", "WECHAT_MCH_KEY", "WECHAT_TOKEN", "WECHAT_ENCODING_AES_KEY")
REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Error details from libraries can carry a secret — requests puts the whole URL, ``?secret=…`` included,
    into its exceptions — so the app's log masks the configured secrets in messages and tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not has_app_context():
            return True
        secrets = [value for name in SECRET_SETTINGS if len(value := str(current_app.config.get(name) or "")) >= 8]
        message = record.getMessage()
        if any(secret in message for secret in secrets):
            record.msg, record.args = _redact(message, secrets), ()
        if record.exc_info:
            # A handler formats the traceback only when exc_text is empty: filled in here, it is this one.
            trace = record.exc_text or logging.Formatter().formatException(record.exc_info)
            if any(secret in trace for secret in secrets):
                record.exc_text = _redact(trace, secrets)
        return True


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def show_error(message: str, status: int, field: str | None = None) -> Response:
    """``web.error_response``, except that a whole page under /admin/ is the admin's: its menu, no member tab
    bar (an htmx fragment lands in #flash, or next to ``field``, on either kind of page)."""
    if not request.path.startswith("/admin/") or wants_fragment():
        return error_response(message, status, field)
    try:
        page = render_template("admin/error.html", admin=current_admin(), message=message, status=status)
    except Exception:  # noqa: BLE001 - the admin layout needs the database; when that is what failed, the plain page
        db.session.rollback()
        return error_response(message, status)
    response = make_response(page, status)
    response.vary.add("HX-Request")
    return response


def register_blueprints(app: Flask) -> None:
    from . import admin, auth, factory, member, outlet, public, service, shop, wechat
    from .admin.data import init_admin_data

    for package in (auth, admin, factory, member, outlet, public, service, shop, wechat):
        for blueprint in package.BLUEPRINTS:
            app.register_blueprint(blueprint)
    init_admin_data(app)

    if not any(isinstance(f, RedactSecrets) for f in app.logger.filters):  # one logger for every app instance
        app.logger.addFilter(RedactSecrets())

    login_manager.login_view = "auth.login"
    # The remember cookie logs a member in as surely as the session cookie does: it goes only where that goes,
    # and lasts as long as the login session it names.
    app.config.setdefault("REMEMBER_COOKIE_SECURE", app.config["SESSION_COOKIE_SECURE"])
    app.config.setdefault("REMEMBER_COOKIE_DURATION", member_policy(app.config).lifetime)
    # Read once, not in the loader: it runs on every request, and building the policies there costs as much
    # as a third of what the login-session check adds to a page (bench/page_instructions.py).
    app.extensions[IDLE_TIMEOUTS] = {"user": member_policy(app.config).idle, "admin": admin_policy(app.config).idle}
    login_manager.user_loader(_load_principal)

    @app.before_request
    def refuse_nul_characters():
        """NUL is never typed, and Postgres can neither store nor compare it: a request with one in its path,
        query or form is refused before any view or query sees it (found by tests/test_fuzz.py)."""
        answered = request._get_current_object()  # once: each access through the proxy costs a lookup
        fields = answered.args.items(multi=True)
        if answered.method not in ("GET", "HEAD"):  # no view reads a body on these: skip parsing one
            fields = (*fields, *answered.form.items(multi=True))
        if "\x00" in answered.path or any("\x00" in key + value for key, value in fields):
            return show_error("请求中含有无效字符，请检查后重试。", 400)
        return None

    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        return show_error(exc.message, domain_error_status(exc), exc.field)

    @app.errorhandler(CSRFError)
    def csrf_error(_exc):
        return show_error("页面已过期，请刷新后重试。", 400)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        if wants_json() or request.path.startswith("/healthz"):
            return {"error": HTTP_MESSAGES.get(status, exc.name)}, status
        return show_error(HTTP_MESSAGES.get(status, exc.name), status)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        app.logger.exception("unhandled error on %s %s", request.method, loggable_request())
        db.session.rollback()
        return show_error(HTTP_MESSAGES[500], 500)

    csp = content_security_policy(app.config)

    @app.after_request
    def security_headers(response):
        nonce = g.get("csp_nonce")  # set when a Flask-Admin page rendered script tags that carry it
        response.headers.setdefault(
            "Content-Security-Policy", csp.replace("script-src 'self'", f"script-src 'self' 'nonce-{nonce}'") if nonce else csp)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if app.config["SESSION_COOKIE_SECURE"]:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if "Cache-Control" not in response.headers and current_user.is_authenticated:
            # A logged-in person's pages show their orders, pickup codes, wallet, team or (admins) everyone's:
            # no copy on disk, in the back-forward cache or in a shared cache. A view that sets its own header
            # (static files, public media, the share QR) keeps it.
            response.headers["Cache-Control"] = "private, no-store"
        return response

    @app.after_request
    def name_the_route_for_the_access_log(response):
        note_route()
        return response


IDLE_TIMEOUTS = "dingqiao.login_idle_timeouts"


def _load_principal(login_id: str):
    """Session ids name a login session, "user:<token>" for members and "admin:<token>" for admins: two kinds,
    one login manager. Only a live login of an active account lets the request in (services/logins.py)."""
    return load_principal(db.session, login_id, current_app.extensions[IDLE_TIMEOUTS])
