"""Jinja filters and the values every template may use (the tab bar among them)."""
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

from flask import Flask, current_app, url_for
from flask_wtf.csrf import generate_csrf
from jinja2 import pass_context
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError

from .china_time import CHINA_TIME
from .extensions import db
from .models import ApplicationStatus, CommissionKind, Identity, RestockStatus, UpgradeTarget
from .money import format_yuan
from .services import submissions
from .services.message_templates import subscribe_template_ids
from .services.messages import target_label
from .services.setup import DEFAULT_SHOP_NAME, shop_name
from .uploads import ACCEPTED_TYPES, WRONG_TYPE_MESSAGE, too_large_message
from .web import cached, current_path, forget, page_url, request_context, is_no_store_page, keep_out_of_caches, mark_no_store_page
from .wechat import talks_to_wechat

T = TypeVar("T")


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.replace(tzinfo=timezone.utc).astimezone(CHINA_TIME).strftime(fmt)


@dataclass(frozen=True)
class Tab:
    endpoint: str
    label: str
    icon: str  # a key of the icon set in templates/_icons.html


# The bottom tab bar per identity. A tab whose page is not built yet is left out rather than shown broken;
# later areas appear as their blueprints register.
TABS: dict[Identity, tuple[Tab, ...]] = {
    Identity.MEMBER: (
        Tab("shop.home", "首页", "home"),
        Tab("cart.index", "购物车", "cart"),
        Tab("orders.index", "订单", "orders"),
        Tab("me.index", "我的", "me"),
    ),
    Identity.OUTLET: (
        Tab("shop.home", "首页", "home"),
        Tab("outlet.redeem_page", "核销", "scan"),
        Tab("stock.index", "库存", "stock"),
        Tab("outlet.dashboard", "看板", "chart"),
        Tab("me.index", "我的", "me"),
    ),
    Identity.FACTORY: (
        Tab("shop.home", "首页", "home"),
        Tab("outlet.redeem_page", "核销", "scan"),
        Tab("factory.dashboard", "区域", "chart"),
        Tab("restock.index", "进货", "stock"),
        Tab("me.index", "我的", "me"),
    ),
}


def tabs_for(identity: Identity) -> list[Tab]:
    return [tab for tab in TABS[identity] if tab.endpoint in current_app.view_functions]


@dataclass(frozen=True)
class TabLink:
    endpoint: str
    label: str
    href: str
    icon: Markup


# What every page's layout needs and never changes within one app and mount point (the script root): made on
# first use instead of on each page, and kept for good in the app (a memo, not a cache: nothing to share or
# expire). Bounded: script roots come from the proxy's headers.
LAYOUT_PARTS_PER_APP = 256
SHOP_NAME_CACHE_SECONDS = 30


def _layout_part(key: tuple, make: Callable[[], T]) -> T:
    context = request_context()
    parts = context.app.extensions.setdefault("dingqiao.layout_parts", {})
    key = (context.request.script_root, *key)
    try:
        return parts[key]
    except KeyError:
        if len(parts) >= LAYOUT_PARTS_PER_APP:
            parts.clear()
        value = parts[key] = make()
        return value


def tab_links(identity: Identity) -> list[TabLink]:
    """The tab bar of ``identity`` with its addresses and icons (from templates/_icons.html)."""

    def make() -> list[TabLink]:
        icon = current_app.jinja_env.get_template("_icons.html").module.icon
        return [TabLink(tab.endpoint, tab.label, url_for(tab.endpoint), icon(tab.icon)) for tab in tabs_for(identity)]

    return _layout_part(("tabs", identity), make)


def static_url(filename: str) -> str:
    """``url_for("static", filename=…)`` for the assets pages link."""
    return page_url("static", filename=filename)


def jssdk_url() -> str:
    """Where pages load WeChat's JS-SDK from; none in a demo without its simulated WeChat (nothing to sign with)."""
    config = request_context().app.config
    if not talks_to_wechat(config):
        return ""
    return config["WECHAT_JSSDK_URL"] or static_url("vendor/jweixin/jweixin-1.6.5.js")


@pass_context
def head_assets(context) -> Markup:
    """base.html's head after the title (templates/_head_assets.html): the same for every page of one app and mount
    point, rendered on first use. Demo mode and the JS-SDK's address are what the page's context already holds
    (``navigation``). Keyed by the settings it shows, so an app whose settings change (tests) draws it anew."""
    demo_mode, jssdk = context["demo_mode"], context["wechat_jssdk_url"]
    config = request_context().app.config
    key = ("head_assets", demo_mode, jssdk, config["WECHAT_BASE_URL"], config["UPLOAD_MAX_BYTES"])
    return _layout_part(key, lambda: Markup(current_app.jinja_env.get_template("_head_assets.html").render(
        demo_mode=demo_mode, wechat_jssdk_url=jssdk)))


SHOP_NAME_KEY = ("shop_name",)


def current_shop_name() -> str:
    """The name the superadmin gave the shop (开店向导), read at most every SHOP_NAME_CACHE_SECONDS."""
    try:
        return cached(SHOP_NAME_KEY, SHOP_NAME_CACHE_SECONDS, lambda: shop_name(db.session))
    except SQLAlchemyError:  # the error page of a database that is down still needs its layout
        db.session.rollback()
        return DEFAULT_SHOP_NAME


def forget_shop_name() -> None:
    """After a rename: this worker (every worker, with Redis) shows the new name at once, others within
    SHOP_NAME_CACHE_SECONDS."""
    forget(SHOP_NAME_KEY)


_CSRF_TOKEN = "dingqiao.csrf_token"


def csrf_token() -> str:
    """Flask-WTF's ``csrf_token()`` for templates, worked out once per request: a page draws it two or three
    times (the layout's meta tag and htmx header, its forms), and each call of Flask-WTF's own reads the settings,
    ``g`` and the session again."""
    environ = request_context().request.environ
    token = environ.get(_CSRF_TOKEN)
    if token is None:
        token = environ[_CSRF_TOKEN] = generate_csrf()
    return token


def submission_key_field() -> Markup:
    """The hidden one-time key of a form that moves money or stock (services/submissions.py): a fresh key each
    time the form is drawn, so a double tap or a retry of the same drawing writes once."""
    return Markup('<input type="hidden" name="%s" value="%s">') % (submissions.FIELD_NAME, submissions.new_key())


@dataclass(frozen=True)
class UploadLimits:
    """What every file input checks in the browser before sending (base.html's dq-upload meta, app.js); the
    server checks the same again (uploads.save_image)."""
    max_bytes: int
    types: str
    too_large: str
    wrong_type: str = WRONG_TYPE_MESSAGE


def upload_limits() -> UploadLimits:
    max_bytes = current_app.config["UPLOAD_MAX_BYTES"]
    return UploadLimits(max_bytes, ",".join(ACCEPTED_TYPES), too_large_message(max_bytes))


def register_templating(app: Flask) -> None:
    app.jinja_env.filters["yuan"] = format_yuan
    app.jinja_env.filters["local_time"] = local_time
    app.jinja_env.filters["commission_label"] = lambda kind: CommissionKind(kind).label
    app.jinja_env.filters["restock_status"] = lambda status: RestockStatus(status).label
    app.jinja_env.filters["application_status"] = lambda status: ApplicationStatus(status).label
    app.jinja_env.filters["upgrade_target"] = lambda target: UpgradeTarget(target).label
    app.jinja_env.globals["current_path"] = current_path
    app.jinja_env.globals["url_for"] = page_url
    app.jinja_env.globals["static_url"] = static_url
    app.jinja_env.globals["head_assets"] = head_assets
    app.jinja_env.globals["submission_key_field"] = submission_key_field
    app.jinja_env.globals["upload_limits"] = upload_limits
    app.jinja_env.globals["mark_no_store_page"] = mark_no_store_page
    app.jinja_env.globals["message_target"] = target_label
    app.after_request(keep_out_of_caches)
    # The 订阅通知 button's template ids for a page's events (templates/_subscribe.html)
    app.jinja_env.globals["subscribe_template_ids"] = subscribe_template_ids

    @app.context_processor
    def navigation():
        from .blueprints.common import current_member, identity_of
        from .services.messages import unread_count

        member = current_member()
        identity = identity_of(member)
        return {
            "shop_name": current_shop_name(),
            "demo_mode": app.config["DINGQIAO_DEMO"],
            "wechat_jssdk_url": jssdk_url(),
            "tabs": tab_links(identity),
            "active_endpoint": request_context().request.endpoint,
            "no_store_page": is_no_store_page(),
            "member": member,
            "viewer_identity": identity,
            "csrf_token": csrf_token,  # in place of Flask-WTF's (its context processor runs before this one)
            # The tab bar's 消息中心 badge: one indexed count, made only when a whole page draws the tab bar
            # (htmx fragments never do).
            "count_unread": (lambda: unread_count(db.session, member.id)) if member else None,
        }
