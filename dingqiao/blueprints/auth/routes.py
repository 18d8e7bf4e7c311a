"""Member login: WeChat OAuth2 web login, or — only in demo mode — picking a seeded user.

The ``ref`` of a share link is kept in the session from the first page view (see ``remember_ref``), so it
survives the OAuth round trip whatever page the person entered on.
"""
import secrets

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user

from ...extensions import db
from ...models import BindingSource, User
from ...services.accounts import clean_referral_code, login_wechat_user, record_member_login
from ...services.logins import end_login_session, member_policy
from ...services.member_logins import complete_member_login, demo_login_choices
from ...services.referrals import BindingRefused, bind_upline
from ...wechat import WeChatError, WeChatSettings
from ...wechat import oauth as wechat_oauth
from ...web import public_url
from ..common import current_admin, current_member, login_client, safe_next
from .forms import DemoLoginForm

bp = Blueprint("auth", __name__, url_prefix="/auth")

REF_SESSION_KEY = "ref"
STATE_SESSION_KEY = "oauth_state"
NEXT_SESSION_KEY = "oauth_next"



@bp.before_app_request
def remember_ref():
    """Any entry link may carry ?ref=CODE. A visitor keeps the first one seen until they log in; a member
    who has no upline yet is bound right away (the binding service decides whether it is valid)."""
    code = clean_referral_code(request.args.get("ref"))
    if not code:
        return
    member = current_member()
    if member is None:
        session.setdefault(REF_SESSION_KEY, code)
    elif member.binding is None:
        _try_binding(member.id, code)


def _try_binding(user_id: int, code: str) -> None:
    try:
        bind_upline(db.session, user_id, code, BindingSource.LINK,
                    protection_days=current_app.config["BINDING_PROTECTION_DAYS"])
    except BindingRefused:
        pass  # kept as a refused attempt with its reason


def _callback_url() -> str:
    return public_url(url_for("auth.wechat_callback"))


@bp.get("/login")
def login():
    next_url = safe_next(request.args.get("next"))
    if current_member() is not None:
        return redirect(next_url)
    if current_app.config["DINGQIAO_DEMO"]:
        return _demo_page(next_url)
    state = secrets.token_urlsafe(24)
    session[STATE_SESSION_KEY] = state
    session[NEXT_SESSION_KEY] = next_url
    settings = WeChatSettings.from_config(current_app.config)
    scope = current_app.config["WECHAT_OAUTH_SCOPE"]
    return redirect(wechat_oauth.authorize_url(settings, _callback_url(), state, scope))


@bp.get("/wechat/callback")
def wechat_callback():
    expected_state = session.pop(STATE_SESSION_KEY, None)
    next_url = safe_next(session.pop(NEXT_SESSION_KEY, None))
    code = request.args.get("code", "")
    if not expected_state or not secrets.compare_digest(request.args.get("state", ""), expected_state):
        return render_template("auth/login_failed.html", message="登录链接已失效，请重新进入。"), 400
    if not code:
        # The user declined the authorisation.
        return render_template("auth/login_failed.html", message="需要您的授权才能登录。"), 400
    settings = WeChatSettings.from_config(current_app.config)
    try:
        profile = wechat_oauth.fetch_profile(settings, code, _callback_url(), current_app.config["WECHAT_OAUTH_SCOPE"])
    except WeChatError as exc:
        current_app.logger.warning("wechat oauth failed: errcode=%s %s", exc.errcode, exc)
        return render_template("auth/login_failed.html", message=exc.message), 502
    user = login_wechat_user(db.session, profile, session.get(REF_SESSION_KEY))
    _start_session(user)
    return redirect(next_url)


@bp.post("/demo")
def demo_login():
    if not current_app.config["DINGQIAO_DEMO"]:
        abort(404)
    form = DemoLoginForm()
    if not form.validate():
        return _demo_page(safe_next(form.next.data), form=form, status=400)
    user = record_member_login(db.session, form.user_id.value)
    _start_session(user)
    return redirect(safe_next(form.next.data))


def _demo_page(next_url: str, *, form: DemoLoginForm | None = None, status: int = 200):
    return render_template("auth/demo_login.html", users=demo_login_choices(db.session), next_url=next_url,
                           form=form), status


@bp.post("/logout")
def logout():
    principal = current_member() or current_admin()
    if principal is not None:
        end_login_session(db.session, principal)  # a copied session or remember cookie stops working too
    session.clear()
    logout_user()  # after clear(): it leaves the note that makes Flask-Login delete the remember cookie
    return redirect(url_for("shop.home"))


def _start_session(user: User) -> None:
    ref = session.get(REF_SESSION_KEY)
    guest_cart = {int(pid): int(qty) for pid, qty in session.get("cart", {}).items()}
    session.clear()  # nothing from before the login carries over: the cart and the share code are used now
    complete_member_login(db.session, user, guest_cart=guest_cart, ref_code=ref, client=login_client(),
                          lifetime=member_policy(current_app.config).lifetime,
                          protection_days=current_app.config["BINDING_PROTECTION_DAYS"])
    login_user(user, remember=True)
    session.permanent = True
