"""Security checks as tests: every route walked as every identity, other people's ids, CSRF, pickup-code
guessing, cookies, headers, uploads and secrets.

One seeded world (the demo data set with a few weeks of trade, plus a staff member, cases, restocks and
applications) serves the whole module; tests that would change it use an app of their own.
"""
import hashlib
import html
import io
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from PIL import Image, PngImagePlugin
from sqlalchemy import func, select

from dingqiao import create_app
from dingqiao.db import write_transaction
from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    AdminUser,
    Announcement,
    Article,
    Banner,
    CommissionLine,
    Identity,
    IdentityApplication,
    LoginSession,
    Order,
    OrderStatus,
    OutboxMessage,
    Product,
    RateLimitCounter,
    Region,
    ServiceCase,
    ServicePhoto,
    User,
    Withdrawal,
)
from dingqiao.models.base import utcnow
from dingqiao.services import restock, service_cases, staff
from dingqiao.services.accounts import create_admin
from dingqiao.services.cart import add_to_member_cart
from dingqiao.services.demo_data import DEMO_ADMIN_USERNAME, seed_demo, seed_demo_history
from dingqiao.services.messages import enqueue_message
from dingqiao.services.periods import china_today
from dingqiao.services.refunds import request_refund
from dingqiao.worker import run as run_worker
from tests.conftest import (
    TEST_DATABASE_URL,
    create_postgres_database,
    csrf_token,
    drop_postgres_database,
    empty_database,
    log_in_admin,
    log_in_member,
    log_in_principal,
    make_config,
    on_postgres,
)
from tests.factories import make_outlet, make_user
from tests.fake_wechat import FakeWeChatUser, signed_xml, start_fake_wechat
from tests.test_wechat_login import wechat_round_trip

# Recognisable values: a test fails if any of them shows up in a page, a fragment or the log.
SECRET_KEY = "secret-key-never-shown-4b7e1c-a9d03f"
APP_SECRET = "app-secret-never-shown-93d0aa"
MCH_KEY = "mchkeyNeverShown0000000000000032"

STRANGER, MEMBER, OWNER, STAFF, FACTORY = "stranger", "member", "outlet_owner", "outlet_staff", "factory_owner"
OPERATOR, FINANCE, SUPERADMIN = "operator", "finance", "superadmin"
MEMBERS = frozenset({MEMBER, OWNER, STAFF, FACTORY})
ADMINS = frozenset({OPERATOR, FINANCE, SUPERADMIN})
EVERYONE = frozenset({STRANGER}) | MEMBERS | ADMINS
LOGIN_PAGE = {"member": "/auth/login", "admin": "/admin/login"}


# ---------------------------------------------------------------- the world


@dataclass
class World:
    app: object
    principals: dict[str, str]  # identity → its account ("user:5", "admin:2"); client_as logs it in
    people: dict[str, int]  # identity and a few more names → user id
    order_no: str  # the member's paid order, not picked up
    order_id: int
    pickup_code: str
    refund_id: int  # requested by the member for another of their orders
    case_id: int
    photo_path: str  # a photo of the member's case
    message_id: int
    line_id: int
    application_id: int
    restock_id: int  # outlet 1 → the factory store
    staff_row_id: int  # outlet 1's staff member
    invite_token: str
    withdrawal_id: int
    product_id: int
    article_id: int
    banner_id: int
    announcement_id: int
    others: dict[str, int | str]  # the same kinds of rows, someone else's
    upload_folder: Path


@pytest.fixture(scope="module")
def fake_wechat_for_module():
    fake, stop = start_fake_wechat(app_secret=APP_SECRET, mch_key=MCH_KEY)
    yield fake
    stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory, fake_wechat_for_module):
    tmp = tmp_path_factory.mktemp("security")
    url = create_postgres_database(TEST_DATABASE_URL) if on_postgres() else f"sqlite:///{tmp / 'world.sqlite3'}"
    app = create_app(make_config(url, tmp, fake_wechat_for_module, SECRET_KEY=SECRET_KEY))
    with app.app_context():
        db.create_all()
        built = _build_world(app)
    yield built
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if on_postgres():
        drop_postgres_database(TEST_DATABASE_URL, url)


def _build_world(app) -> World:
    session = db.session
    folder = app.config["UPLOAD_FOLDER"]
    seed_demo(session, folder)
    seed_demo_history(session)

    def demo_user(key: str) -> int:
        return session.scalar(select(User.id).where(User.openid == f"demo-{key}"))

    people = {MEMBER: demo_user("member1"), OWNER: demo_user("outlet1"), FACTORY: demo_user("factory"),
              "other_member": demo_user("member2"), "other_owner": demo_user("outlet2"),
              "third_owner": demo_user("outlet3")}
    people[STAFF] = make_user("核销员").id
    _, token = staff.create_invite(session, people[OWNER])
    staff_row = staff.accept_invite(session, people[STAFF], token)
    people["other_staff"] = make_user("二店核销员").id
    _, token = staff.create_invite(session, people["other_owner"])
    other_staff_row = staff.accept_invite(session, people["other_staff"], token)
    _, invite_token = staff.create_invite(session, people[OWNER])

    admins = {OPERATOR: create_admin(session, "sec-operator", "long-enough-password", AdminRole.OPERATOR).id,
              FINANCE: create_admin(session, "sec-finance", "long-enough-password", AdminRole.FINANCE).id,
              SUPERADMIN: session.scalar(select(AdminUser.id).where(AdminUser.username == DEMO_ADMIN_USERNAME))}

    # In the demo's trade, member 1's orders are paid and still waiting at outlet 1.
    refunded, order = session.scalars(select(Order).where(Order.user_id == people[MEMBER],
                                                          Order.status == OrderStatus.PAID).order_by(Order.id).limit(2))
    refund = request_refund(session, people[MEMBER], refunded.order_no, "不想要了")
    storage = {"upload_folder": folder, "max_bytes": app.config["UPLOAD_MAX_BYTES"]}
    case = service_cases.open_case(session, people[MEMBER], kind="quality", subject="瓶盖裂了", body="收到时瓶盖裂开",
                                   order_no=order.order_no, photos=[io.BytesIO(png_bytes())], **storage)
    other_case = service_cases.open_case(session, people["other_member"], kind="other", subject="咨询",
                                         body="请问几点关门", **storage)
    [photo_path] = session.scalars(select(ServicePhoto.path))
    product_ids = list(session.scalars(select(Product.id).order_by(Product.id)))
    for identity in MEMBERS:
        add_to_member_cart(session, people[identity], product_ids[1], 1)
    outlet_restock = restock.place_restock(session, people[OWNER], {product_ids[0]: 2})
    other_restock = restock.place_restock(session, people["other_owner"], {product_ids[0]: 2})
    restock.place_restock(session, people[FACTORY], {product_ids[0]: 5})  # for the platform's queue
    regions = list(session.scalars(select(Region.id).order_by(Region.id)))
    applications = {}
    for key in (MEMBER, "other_member"):
        application = IdentityApplication(user_id=people[key], target="outlet", status="waiting", region_id=regions[1],
                                          shop_name="社区小店", address="杭州市滨江区江南大道 1 号", phone="0571-88001234")
        session.add(application)
        session.commit()
        applications[key] = application.id

    def first(column, *conditions):
        return session.scalar(select(column).where(*conditions).order_by(column).limit(1))

    others = {
        "order_no": first(Order.order_no, Order.user_id == people["other_member"]),
        "case_id": other_case.id,
        "message_id": first(OutboxMessage.id, OutboxMessage.user_id == people["other_member"]),
        "line_id": first(CommissionLine.id, CommissionLine.beneficiary_user_id != people[MEMBER]),
        "application_id": applications["other_member"],
        "restock_id": other_restock.id,
        "staff_row_id": other_staff_row.id,
    }
    return World(
        app=app,
        principals={STRANGER: "", **{key: f"user:{people[key]}" for key in MEMBERS},
                    **{key: f"admin:{admin_id}" for key, admin_id in admins.items()}},
        people=people,
        order_no=order.order_no,
        order_id=order.id,
        pickup_code=order.pickup_code,
        refund_id=refund.id,
        case_id=case.id,
        photo_path=photo_path,
        message_id=first(OutboxMessage.id, OutboxMessage.user_id == people[MEMBER]),
        line_id=first(CommissionLine.id, CommissionLine.beneficiary_user_id == people[MEMBER]),
        application_id=applications[MEMBER],
        restock_id=outlet_restock.id,
        staff_row_id=staff_row.id,
        invite_token=invite_token,
        withdrawal_id=first(Withdrawal.id),
        product_id=product_ids[0],
        article_id=first(Article.id),
        banner_id=first(Banner.id),
        announcement_id=first(Announcement.id),
        others=others,
        upload_folder=Path(folder),
    )


def png_bytes(size=(40, 30), text: str | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def client_as(world: World, who: str):
    """A client logged in as one of the identities, or as one of the world's other people."""
    client = world.app.test_client()
    principal = world.principals[who] if who in world.principals else f"user:{world.people[who]}"
    if principal:
        kind, _, account_id = principal.partition(":")
        log_in_principal(client, kind, int(account_id))
    return client


# ---------------------------------------------------------------- filling in routes


def path_values(world: World) -> dict[str, object]:
    """A real row for every path parameter of the URL map, the member's own where there is an owner."""
    return {
        "order_no": world.order_no, "code": world.pickup_code, "token": world.invite_token,
        "application_id": world.application_id, "refund_id": world.refund_id, "event_id": 1,
        "message_id": world.message_id, "restock_id": world.restock_id, "announcement_id": world.announcement_id,
        "article_id": world.article_id, "banner_id": world.banner_id, "user_id": world.people[MEMBER],
        "order_id": world.order_id, "case_id": world.case_id, "product_id": world.product_id,
        "staff_id": world.staff_row_id, "line_id": world.line_id, "export_type": "csv",
        "filename": "products/demo-1.png", "login_session_id": 1, "outlet_id": 1,
        "admin_id": int(world.principals[SUPERADMIN].partition(":")[2]), "withdrawal_no": "WD0000000000000000",
    }


def form_for(world: World, endpoint: str) -> dict[str, str]:
    """What a form would post, where a route reads its input before it checks the role."""
    if endpoint == "admin.review_withdrawals":
        return {"action": "approve", "withdrawal_id": str(world.withdrawal_id)}
    return {}


def data_views(app) -> dict[str, object]:
    """Flask-Admin's views by endpoint (``data_orders``, ``audit_verify`` …)."""
    [data_admin] = app.extensions["admin"]
    return {view.endpoint: view for view in data_admin._views}


def url_for_rule(world: World, rule) -> str:
    adapter = world.app.url_map.bind("localhost")
    values = {name: path_values(world)[name] for name in rule.arguments}
    path = adapter.build(rule.endpoint, values, method="GET" if "GET" in rule.methods else "POST")
    query = query_for(world, rule.endpoint)
    return f"{path}?{query}" if query else path


def query_for(world: World, endpoint: str) -> str:
    blueprint, _, view_name = endpoint.partition(".")
    if endpoint == "admin_exports.download":
        today = china_today(utcnow())
        return f"kind=orders&start={today - timedelta(days=30)}&end={today}&format=csv"
    if endpoint == "outlet.lookup":
        return f"code={world.pickup_code}"
    if endpoint == "wechat.jssdk_config":
        return "url=http://localhost/"
    if endpoint == "wechat.callback":
        timestamp, nonce = str(int(time.time())), "nonce42"  # the same request again is answered the same
        token = world.app.config["WECHAT_TOKEN"]
        signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
        return f"signature={signature}&timestamp={timestamp}&nonce={nonce}&echostr=hello"
    view = data_views(world.app).get(blueprint)
    if view_name in {"details_view", "edit_view"} and getattr(view, "model", None) is not None:
        with world.app.app_context():
            key = db.session.scalar(select(func.min(view.model.id)))
        return f"id={key}"
    if view_name == "ajax_lookup":
        return "name=category&query=a"
    return ""


# ---------------------------------------------------------------- who may use what


@dataclass(frozen=True)
class Access:
    """Who gets through to one endpoint, and what everyone else gets.

    ``area`` names the login a visitor who is nobody there is sent to ("member": /auth/login, "admin":
    /admin/login; "public" sends nobody). Those in ``who`` get ``ok`` (a few answer a redirect or a 4xx of
    their own for everyone, ``ok_for`` for some). Someone logged in on the right side but not in ``who``
    gets ``refused``: 403 from a role check, 404 where the row is someone else's."""

    area: str
    who: frozenset[str]
    ok: int = 200
    refused: int = 403
    ok_for: dict[str, int] = field(default_factory=dict)

    def expected(self, identity: str) -> int | str:
        """The status ``identity`` gets, or the login page it is sent to."""
        if identity in self.who:
            return self.ok_for.get(identity, self.ok)
        on_this_side = MEMBERS if self.area == "member" else ADMINS
        return self.refused if identity in on_this_side else LOGIN_PAGE[self.area]


def public(ok: int = 200, **ok_for: int) -> Access:
    return Access("public", EVERYONE, ok, ok_for=ok_for)


def members(*who: str, ok: int = 200, refused: int = 403) -> Access:
    return Access("member", frozenset(who) or MEMBERS, ok, refused)


def admins(*roles: str, ok: int = 200) -> Access:
    """Any admin, or only ``roles`` (a superadmin always passes)."""
    return Access("admin", frozenset(roles) | {SUPERADMIN} if roles else ADMINS, ok)


def no_admin() -> Access:
    """Writes to read-only tables: every admin gets 403, whatever the role."""
    return Access("admin", frozenset())


OWN_ROW = members(MEMBER, refused=404)  # the member's own order, case, message …: anyone else's is a 404
OUTLET_DESK = members(OWNER, STAFF, FACTORY)  # redeeming: owner, staff, and the region's factory store
LOCATION_RUNNERS = members(OWNER, FACTORY)  # stock and restock: whoever runs a location

ACCESS: dict[str, Access] = {
    # -- shop front, articles, cart: open to all; checkout needs a member
    "shop.home": public(), "shop.product": public(), "content.index": public(), "content.article": public(),
    "cart.index": public(), "cart.add": public(), "cart.update": public(),
    "cart.checkout": members(), "cart.outlets": members(), "cart.place": members(),
    "media.file": public(), "health.healthz": public(),
    # -- login: WeChat (a redirect for everyone; the callback without a state is refused), demo login only in
    # demo mode
    "auth.login": public(302), "auth.wechat_callback": public(400), "auth.logout": public(),
    "auth.demo_login": public(404),
    # -- machines: signed by WeChat instead of a session
    "wechat.pay_notify": public(), "wechat.callback": public(), "wechat.jssdk_config": public(),
    "wechat.refund_notify": public(), "wechat.pay_notify_v3": public(), "wechat.refund_notify_v3": public(),
    "wechat.transfer_notify": public(),
    # -- the member's own pages
    "me.index": members(), "me.share": members(), "me.share_qr": members(), "me.team": members(),
    "me.team_trends_json": members(), "me.poster": members(), "me.upgrade": members(), "me.apply": members(),
    "me.withdraw": OWN_ROW,
    "me.share_reward": members(ok=404),  # 分享赚: only with SHARE_SHOW_REWARD (off here) and a product
    "me.devices": members(), "me.end_device": members(MEMBER, ok=303, refused=404),
    "me.end_other_devices": members(ok=303),
    "me.change_phone": members(ok=400),  # the probe posts no number: refused in Chinese, nothing written
    "messages.index": members(), "messages.badge": members(), "messages.read_all": members(),
    "messages.open_message": members(MEMBER, ok=302, refused=404),
    "nearby.index": members(),
    "orders.index": members(), "orders.detail": OWN_ROW, "orders.pickup_qr": OWN_ROW, "orders.pay": OWN_ROW,
    "orders.check": OWN_ROW, "orders.cancel": OWN_ROW, "orders.refund": OWN_ROW,
    "orders.demo_pay": members(MEMBER, ok=404, refused=404),
    "service.index": members(), "service.open_case": members(), "service.detail": OWN_ROW,
    "service.add_message": OWN_ROW, "service.close": OWN_ROW,
    "wallet.index": members(), "wallet.earnings_json": members(), "wallet.withdraw": members(),
    "wallet.review_withdrawal": members(),
    "wallet.earning": OWN_ROW,
    # a withdrawal number that is nobody's here; another member's is 404 too (tests/test_pay_v3.py)
    "wallet.check_withdrawal": members(MEMBER, ok=404, refused=404),
    # -- the outlet desk; staff management and the dashboard for the owner only; joining for any member
    "outlet.redeem_page": OUTLET_DESK, "outlet.lookup": OUTLET_DESK, "outlet.confirm_page": OUTLET_DESK,
    "outlet.confirm": OUTLET_DESK, "outlet.orders": OUTLET_DESK,
    "outlet.staff": members(OWNER), "outlet.invite": members(OWNER), "outlet.remove": members(OWNER),
    "outlet.dashboard": members(OWNER), "outlet.dashboard_json": members(OWNER),
    "outlet.join": members(), "outlet.join_confirm": members(),
    "outlet_profile.edit": members(OWNER, refused=404), "outlet_profile.save": members(OWNER, refused=404),
    "stock.index": LOCATION_RUNNERS, "stock.adjust": LOCATION_RUNNERS, "stock.threshold": LOCATION_RUNNERS,
    "restock.index": LOCATION_RUNNERS, "restock.new": LOCATION_RUNNERS, "restock.place": LOCATION_RUNNERS,
    "restock.total": LOCATION_RUNNERS,
    "restock.detail": LOCATION_RUNNERS, "restock.ship": LOCATION_RUNNERS, "restock.receive": LOCATION_RUNNERS,
    "restock.cancel": LOCATION_RUNNERS,
    "factory.dashboard": members(FACTORY), "factory.dashboard_json": members(FACTORY),
    # -- admin pages: any admin, money decisions for finance, application reviews for operators
    "admin.login": public(**{role: 302 for role in ADMINS}), "admin.logout": admins(), "admin.home": admins(),
    "admin.dashboard_json": admins(), "admin.refunds": admins(), "admin.approve_refund_view": admins(FINANCE),
    "admin.reject_refund_view": admins(FINANCE), "admin.withdrawals": admins(),
    "admin.review_withdrawals": admins(FINANCE), "admin.commission_rules": admins(),
    "admin.payment_events": admins(), "admin.refund_payment_event": admins(FINANCE), "admin.resolve_event": admins(FINANCE),
    "admin.identity_rules": admins(), "admin.applications": admins(),
    # -- 开店向导: the link (the world's token is no setup link: 404 for all); the wizard is the superadmin's
    "setup.claim": public(ok=404), "admin_setup.wizard": admins(SUPERADMIN),
    **{f"admin_setup.{step}": admins(SUPERADMIN, ok=400)
       for step in ("name", "warehouse", "region", "factory_store", "outlet", "commission_rule", "identity_rules")},
    "admin_setup.finish": admins(SUPERADMIN, ok=302),
    "admin.approve_application_view": admins(OPERATOR), "admin.reject_application_view": admins(OPERATOR),
    "admin.restocks": admins(), "admin.ship_restock_view": admins(), "admin.cancel_restock_view": admins(),
    "admin.failed_messages": admins(), "admin.retry_message": admins(),
    "admin_content.index": admins(ok=302), "admin_content.banners": admins(), "admin_content.new_banner": admins(),
    "admin_content.edit_banner": admins(), "admin_content.deactivate_banner": admins(),
    "admin_content.articles": admins(), "admin_content.new_article": admins(), "admin_content.edit_article": admins(),
    "admin_content.unpublish_article": admins(), "admin_content.upload_article_image": admins(),
    "admin_content.announcements": admins(), "admin_content.new_announcement": admins(),
    "admin_content.edit_announcement": admins(), "admin_content.deactivate_announcement": admins(),
    "admin_exports.index": admins(), "admin_exports.download": admins(),
    "admin_members.detail": admins(), "admin_members.upline": admins(FINANCE), "admin_members.active": admins(),
    # -- 网络: any admin builds the network; granting and revoking identities is finance's
    **{f"admin_network.{view}": admins() for view in ("index", "members", "move_outlet", "create_warehouse",
                                                       "create_region", "create_factory_store", "create_outlet")},
    "admin_network.grant_identity": admins(FINANCE), "admin_network.revoke_identity": admins(FINANCE),
    "admin_orders.detail": admins(),
    "admin_service.queue": admins(), "admin_service.detail": admins(), "admin_service.reply": admins(),
    "admin_service.close": admins(),
    "admin_stock.index": admins(), "admin_stock.adjust": admins(),
    # -- admin logins: each admin their own; a superadmin anyone's (someone else's is a 404) and lifts lockouts
    "admin_sessions.index": admins(), "admin_sessions.end": Access("admin", frozenset({SUPERADMIN}), 303, 404),
    "admin_sessions.end_all": Access("admin", frozenset({SUPERADMIN}), 303, 404),
    "admin_sessions.unlock": admins(SUPERADMIN, ok=303),
    # -- 数据管理 (Flask-Admin): its front door leads to the dashboard; the audit chain check is finance's
    "admin_data.index": admins(ok=302), "audit_verify.index": admins(FINANCE),
}


def data_table(*roles: str, create: int = 200, details: int = 200, writable: bool = True) -> dict[str, Access]:
    """One Flask-Admin table's endpoints, listed by any admin or by ``roles``. Export is switched off (a
    redirect back to the list) and there are no ajax lookups (404). A read-only table answers 403 to every
    write endpoint, whatever the role."""
    def readers(ok: int = 200) -> Access:
        return admins(*roles, ok=ok)

    writes = readers() if writable else no_admin()
    return {
        "index_view": readers(), "details_view": readers(details), "export": readers(302),
        "ajax_lookup": readers(404), "create_view": readers(create) if writable else no_admin(),
        "edit_view": writes, "delete_view": writes, "action_view": writes, "ajax_update": writes,
    }


DATA_TABLES: dict[str, dict[str, Access]] = {
    "categories": data_table(), "products": data_table(),
    # Regions, outlets and factory stores are created on the network pages (or by an application), not here.
    "regions": data_table(create=302),
    "outlets": data_table(create=302), "factory_stores": data_table(create=302),
    # Members and orders: searched here, changed only through their own workflow pages.
    "users": data_table(details=302, writable=False), "orders": data_table(details=302, writable=False),
    **{table: data_table(FINANCE, writable=False)
       for table in ("payments", "refunds", "commission_lines", "ledger_entries", "wallets", "withdrawals",
                     "audit_log")},
    "admin_users": data_table(SUPERADMIN),
}
for _table, _endpoints in DATA_TABLES.items():
    ACCESS.update({f"data_{_table}.{view}": access for view, access in _endpoints.items()})

# Static files are public by nature and carry no data of ours: Flask's own and Flask-Admin's bundled assets.
NOT_ROUTES_OF_OURS = {"static", "admin_data.static"}


def routes(app, methods: set[str]):
    return [rule for rule in app.url_map.iter_rules()
            if rule.endpoint not in NOT_ROUTES_OF_OURS and rule.methods & methods]


def outcome(response) -> int | str:
    """The status, or for a redirect to a login page, that page."""
    if response.status_code in (302, 303):
        path = urlsplit(response.headers["Location"]).path
        if path in LOGIN_PAGE.values():
            return path
    return response.status_code


def leaked_secret(response) -> str | None:
    body = response.get_data()
    return next((secret for secret in (SECRET_KEY, APP_SECRET, MCH_KEY) if secret.encode() in body), None)


# ---------------------------------------------------------------- 1. the route map, walked


def test_every_route_of_the_url_map_has_an_entry_in_the_access_table(world):
    """A new route fails here until someone has decided who may use it."""
    endpoints = {rule.endpoint for rule in world.app.url_map.iter_rules()} - NOT_ROUTES_OF_OURS
    assert sorted(endpoints - ACCESS.keys()) == [], "routes without an entry in ACCESS"
    assert sorted(ACCESS.keys() - endpoints) == [], "entries in ACCESS for routes that no longer exist"


def test_every_get_route_answers_each_identity_as_the_table_says(world):
    clients = {identity: client_as(world, identity) for identity in EVERYONE}
    wrong = []
    for rule in routes(world.app, {"GET"}):
        url, access = url_for_rule(world, rule), ACCESS[rule.endpoint]
        for identity, client in clients.items():
            response = client.get(url)
            got, expected = outcome(response), access.expected(identity)
            if got != expected:
                wrong.append(f"{rule.endpoint} as {identity}: {got}, expected {expected} ({url})")
            if secret := leaked_secret(response):
                wrong.append(f"{rule.endpoint} as {identity} shows a secret: {secret[:6]}…")
    assert wrong == []


def test_htmx_requests_from_strangers_are_told_where_to_log_in(world):
    """htmx cannot follow a redirect to a whole page: our areas answer 401 with HX-Redirect. Flask-Admin's
    pages are not htmx pages and redirect as usual."""
    client, flask_admin = client_as(world, STRANGER), set(data_views(world.app))
    wrong = []
    for rule in routes(world.app, {"GET"}):
        access = ACCESS[rule.endpoint]
        if access.area == "public":
            continue
        response = client.get(url_for_rule(world, rule), headers={"HX-Request": "true"})
        login = LOGIN_PAGE[access.area]
        if rule.endpoint.split(".")[0] in flask_admin:
            ok = response.status_code == 302 and urlsplit(response.headers["Location"]).path == login
        else:
            ok = response.status_code == 401 and response.headers.get("HX-Redirect", "").startswith(login)
        if not ok:
            wrong.append(f"{rule.endpoint}: {response.status_code} {dict(response.headers)}")
    assert wrong == []


@pytest.mark.parametrize("principal", ["user:", "user:abc", "user:99999999999999999999", "user:-1", "admin:0",
                                       "nobody:1", "1", ""])
def test_a_session_naming_no_real_account_is_a_stranger(world, principal):
    client = world.app.test_client()
    with client.session_transaction() as s:
        s["_user_id"] = principal
    assert outcome(client.get("/me/")) == "/auth/login"
    assert outcome(client.get("/admin/")) == "/admin/login"


def test_a_disabled_admin_is_logged_out_at_once(app):
    with app.app_context():
        admin = create_admin(db.session, "leaver", "long-enough-password", AdminRole.FINANCE)
        admin_id = admin.id
    client = app.test_client()
    log_in_admin(client, admin_id)
    assert client.get("/admin/").status_code == 200
    with app.app_context():
        db.session.get(AdminUser, admin_id).is_active = False
        db.session.commit()
    assert outcome(client.get("/admin/")) == "/admin/login"


def database_rows(app) -> dict[str, list[tuple]]:
    """Every row of every table: compared before and after requests that must write nothing. A login's
    last-seen time is left out: any request may refresh it (once a minute), and a long test outlasts that. So
    are the rate-limit counters: a refused attempt at a limited view counts too, as it should."""
    with app.app_context():
        rows = {table.name: [tuple(row) for row in db.session.execute(
                    select(*(column for column in table.columns if column is not LoginSession.__table__.c.last_seen_at))
                    .order_by(*table.primary_key.columns))]
                for table in db.metadata.sorted_tables if table.name != RateLimitCounter.__tablename__}
        db.session.remove()
    return rows


def test_posts_from_those_the_table_refuses_are_refused_and_write_nothing(world):
    """With a valid CSRF token, so the refusal is the access check's: strangers and the other side are sent
    to their login, the wrong role gets 403. (Someone else's row is the next section's.)"""
    clients = {identity: client_as(world, identity) for identity in EVERYONE}
    tokens = {identity: csrf_token(client) for identity, client in clients.items()}
    before = database_rows(world.app)
    wrong = []
    for rule in routes(world.app, {"POST"}):
        url, access = url_for_rule(world, rule), ACCESS[rule.endpoint]
        for identity, client in clients.items():
            expected = access.expected(identity)
            if identity in access.who or expected == 404:
                continue
            response = client.post(url, data={"csrf_token": tokens[identity], **form_for(world, rule.endpoint)})
            if outcome(response) != expected:
                wrong.append(f"POST {rule.endpoint} as {identity}: {outcome(response)}, expected {expected}")
    assert wrong == []
    assert database_rows(world.app) == before


# ---------------------------------------------------------------- 2. other people's rows


def without_tokens(response) -> str:
    """The body with CSRF tokens (which carry a timestamp) blanked, to compare two answers."""
    return re.sub(r'"[\w.-]{40,}"', '"TOKEN"', response.get_data(as_text=True))


def test_other_peoples_rows_answer_404_exactly_like_missing_ones_and_nothing_is_written(world):
    """Orders, their pickup QR, payment and refunds, cases, messages, commission lines and applications of
    another member; restock orders and staff of another outlet. (Withdrawals have no page of their own for
    members: the wallet lists the member's own.)"""
    others, missing = world.others, 10**12
    other_order = others["order_no"]
    probes = [
        (MEMBER, "GET", f"/orders/{other_order}", f"/orders/DQ{missing}", {}),
        (MEMBER, "GET", f"/orders/{other_order}/pickup-qr.svg", f"/orders/DQ{missing}/pickup-qr.svg", {}),
        (MEMBER, "POST", f"/orders/{other_order}/pay", f"/orders/DQ{missing}/pay", {}),
        (MEMBER, "POST", f"/orders/{other_order}/check-payment", f"/orders/DQ{missing}/check-payment", {}),
        (MEMBER, "POST", f"/orders/{other_order}/cancel", f"/orders/DQ{missing}/cancel", {}),
        (MEMBER, "POST", f"/orders/{other_order}/refund", f"/orders/DQ{missing}/refund", {"reason": "不想要了"}),
        (MEMBER, "POST", "/service/", None, {"kind": "refund", "body": "退款", "order_no": other_order}),
        (MEMBER, "GET", f"/service/{others['case_id']}", f"/service/{missing}", {}),
        (MEMBER, "POST", f"/service/{others['case_id']}/messages", f"/service/{missing}/messages", {"body": "你好"}),
        (MEMBER, "POST", f"/service/{others['case_id']}/close", f"/service/{missing}/close", {}),
        (MEMBER, "GET", f"/messages/{others['message_id']}", f"/messages/{missing}", {}),
        (MEMBER, "GET", f"/wallet/earnings/{others['line_id']}", f"/wallet/earnings/{missing}", {}),
        (MEMBER, "POST", f"/me/upgrade/{others['application_id']}/withdraw", f"/me/upgrade/{missing}/withdraw", {}),
        (OWNER, "GET", f"/restock/{others['restock_id']}", f"/restock/{missing}", {}),
        (OWNER, "POST", f"/restock/{others['restock_id']}/ship", f"/restock/{missing}/ship",
         {f"qty-{world.product_id}": "1"}),
        (OWNER, "POST", f"/restock/{others['restock_id']}/receive", f"/restock/{missing}/receive", {}),
        (OWNER, "POST", f"/restock/{others['restock_id']}/cancel", f"/restock/{missing}/cancel", {}),
        (OWNER, "POST", f"/outlet/staff/{others['staff_row_id']}/remove", f"/outlet/staff/{missing}/remove", {}),
    ]
    clients = {identity: client_as(world, identity) for identity in (MEMBER, OWNER)}
    tokens = {identity: csrf_token(client) for identity, client in clients.items()}
    before = database_rows(world.app)
    wrong = []
    for identity, method, url, missing_url, form in probes:
        client = clients[identity]
        data = {"csrf_token": tokens[identity], **form} if method == "POST" else None
        response = client.open(url, method=method, data=data)
        if response.status_code != 404:
            wrong.append(f"{method} {url} as {identity}: {response.status_code}")
        elif missing_url and without_tokens(response) != without_tokens(client.open(missing_url, method=method,
                                                                                    data=data)):
            wrong.append(f"{method} {url} as {identity}: tells someone else's row from a missing one")
    assert wrong == []
    assert database_rows(world.app) == before


def test_a_pickup_code_of_another_outlet_is_not_redeemed_and_shows_no_order(world):
    """Staff are told where the order is to be picked up (the customer came to the wrong shop); nothing of
    the order or its buyer is shown and nothing changes."""
    client = client_as(world, "other_owner")
    before = database_rows(world.app)
    looked_up = client.get(f"/outlet/redeem/lookup?code={world.pickup_code}")
    redeemed = client.post(f"/outlet/redeem/{world.pickup_code}", data={"csrf_token": csrf_token(client)})
    for response in (looked_up, redeemed):
        body = response.get_data(as_text=True)
        assert response.status_code == 403 and "不在本店自提" in body
        assert world.order_no not in body
    assert database_rows(world.app) == before


# ---------------------------------------------------------------- 3. CSRF

# Signed by WeChat instead: a browser cannot forge those signatures, and WeChat sends no CSRF token.
CSRF_EXEMPT = {
    "wechat.pay_notify": "WeChat Pay's notify: the body is signed with the merchant key, checked first",
    "wechat.refund_notify": "WeChat Pay's refund result: encrypted with the merchant key, decrypted first",
    "wechat.callback": "the server callback: every request carries WeChat's signature over our token",
    "wechat.pay_notify_v3": "WeChat Pay v3's notify: RSA-signed by WeChat Pay, verified first",
    "wechat.refund_notify_v3": "WeChat Pay v3's refund result: RSA-signed by WeChat Pay, verified first",
    "wechat.transfer_notify": "商家转账 results: RSA-signed by WeChat Pay, verified first",
}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def test_every_state_changing_route_refuses_a_post_without_a_csrf_token(world):
    """Posted by someone who could otherwise use it, without a token: 400 with the app's message, nothing
    written. Only the routes WeChat signs are exempt, and each of them refuses an unsigned request."""
    clients = {identity: client_as(world, identity) for identity in EVERYONE}

    def post_without_token(rule, method):
        access = ACCESS[rule.endpoint]
        identity = MEMBER if MEMBER in access.who else sorted(access.who or ADMINS)[0]
        return clients[identity].open(url_for_rule(world, rule), method=method, data={"quantity": "1"})

    def csrf_refusal(response) -> bool:
        return response.status_code == 400 and "页面已过期" in response.get_data(as_text=True)

    changing = [(rule, method) for rule in routes(world.app, STATE_CHANGING)
                for method in sorted(rule.methods & STATE_CHANGING)]
    before = database_rows(world.app)
    wrong = [f"{method} {rule.endpoint}: {response.status_code}" for rule, method in changing
             if rule.endpoint not in CSRF_EXEMPT and not csrf_refusal(response := post_without_token(rule, method))]
    assert wrong == []
    assert database_rows(world.app) == before
    # The exempt ones check their signature instead (an unsigned notify is kept as a forged one to look at).
    exempt = {rule.endpoint: post_without_token(rule, method) for rule, method in changing
              if rule.endpoint in CSRF_EXEMPT}
    assert set(exempt) == set(CSRF_EXEMPT)
    assert all(400 <= response.status_code < 500 and not csrf_refusal(response) for response in exempt.values())


def test_a_token_from_another_session_is_refused(world):
    member, owner = client_as(world, MEMBER), client_as(world, OWNER)
    response = member.post("/messages/read-all", data={"csrf_token": csrf_token(owner)})
    assert response.status_code == 400 and "页面已过期" in response.get_data(as_text=True)
    response = member.post("/messages/read-all", headers={"X-CSRFToken": "forged-token"})
    assert response.status_code == 400


# ---------------------------------------------------------------- 4. guessing pickup codes


def allowed_per_window(limit: str) -> int:
    """"20 per minute" → 20."""
    count, per, _window = limit.split()
    assert per == "per"
    return int(count)


@pytest.fixture
def outlet_desk(app):
    """An outlet with its owner and four staff, in an app of its own: no other test's lookups count here."""
    with app.app_context():
        owner = make_user("店主", identity=Identity.OUTLET)
        make_outlet(owner)
        people = [owner.id]
        for n in range(4):
            _, token = staff.create_invite(db.session, owner.id)
            people.append(staff.accept_invite(db.session, make_user(f"店员{n}").id, token).user_id)
    return people


def member_client(app, user_id: int):
    client = app.test_client()
    log_in_member(client, user_id)
    return client


def wrong_codes(start: int, count: int) -> list[str]:
    return [f"{n:012d}" for n in range(start, start + count)]


def test_guessing_pickup_codes_is_stopped_per_person_on_lookup_and_on_redeem(app, outlet_desk):
    per_person = allowed_per_window(app.config["REDEEM_RATE_PER_USER"])
    owner, clerk = member_client(app, outlet_desk[0]), member_client(app, outlet_desk[1])
    looked_up = [owner.get("/outlet/redeem/lookup", query_string={"code": code})
                 for code in wrong_codes(0, per_person + 1)]
    assert [r.status_code for r in looked_up] == [404] * per_person + [429]
    blocked = looked_up[-1]
    assert "操作太频繁" in blocked.get_data(as_text=True) and blocked.headers["Retry-After"]
    assert blocked.headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in blocked.headers

    token = csrf_token(clerk)
    redeemed = [clerk.post(f"/outlet/redeem/{code}", data={"csrf_token": token})
                for code in wrong_codes(1000, per_person + 1)]
    assert [r.status_code for r in redeemed] == [404] * per_person + [429]


def test_guessing_pickup_codes_is_stopped_per_outlet_across_its_staff(app, outlet_desk):
    per_person = allowed_per_window(app.config["REDEEM_RATE_PER_USER"])
    per_outlet = allowed_per_window(app.config["REDEEM_RATE_PER_OUTLET"])
    assert per_outlet < per_person * len(outlet_desk), "the desk must be able to reach the outlet's limit"
    answers, codes = [], iter(wrong_codes(0, per_person * len(outlet_desk)))
    for person in outlet_desk:
        client = member_client(app, person)
        answers += [client.get("/outlet/redeem/lookup", query_string={"code": next(codes)}).status_code
                    for _ in range(per_person)]
    assert answers == [404] * per_outlet + [429] * (len(answers) - per_outlet)


# ---------------------------------------------------------------- 5. login cookies, and where a login leads


def cookie_attributes(response, name: str) -> dict[str, str]:
    """The attributes of the Set-Cookie header for ``name``: {"httponly": "", "samesite": "Lax", …}."""
    [header] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]
    pairs = (part.strip().partition("=") for part in header.split(";")[1:])
    return {key.lower(): value for key, _, value in pairs}


def test_the_session_cookie_is_httponly_and_samesite_lax(world):
    response = world.app.test_client().get("/")  # the CSRF token goes into the session
    attributes = cookie_attributes(response, world.app.config["SESSION_COOKIE_NAME"])
    assert "httponly" in attributes and attributes["samesite"] == "Lax"
    assert "secure" not in attributes  # the tests run over plain HTTP, SESSION_COOKIE_SECURE off


def test_the_session_cookie_is_sent_again_only_when_the_session_changes(world):
    """SESSION_REFRESH_EACH_REQUEST is off: a page that changes nothing in the session sends no cookie (no
    re-signing on every response), and the member stays logged in."""
    client = client_as(world, MEMBER)
    client.get("/")  # whatever the login left to store (the CSRF token) is stored now
    again = client.get("/")
    assert again.status_code == 200
    assert not any(h.startswith(world.app.config["SESSION_COOKIE_NAME"] + "=")
                   for h in again.headers.getlist("Set-Cookie"))
    assert "登录</a>" not in again.get_data(as_text=True)  # still the member's page, not a visitor's


def test_a_production_configuration_makes_both_login_cookies_secure(monkeypatch, tmp_path, database_url,
                                                                    fake_wechat):
    """Configured from the environment as in production (no demo mode): the session cookie and the remember
    cookie a WeChat login sets are Secure, HttpOnly and SameSite=Lax, and HTTPS is pinned."""
    environment = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": database_url, "PUBLIC_BASE_URL": "https://shop.example",
                   "WECHAT_APP_ID": fake_wechat.app_id, "WECHAT_APP_SECRET": fake_wechat.app_secret,
                   "WECHAT_BASE_URL": fake_wechat.base_url}
    for name in ("DINGQIAO_DEMO", "SESSION_COOKIE_SECURE", "WECHAT_MCH_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    app = create_app(instance_path=str(tmp_path / "instance"))
    with app.app_context():
        db.create_all()
    try:
        assert not app.testing and not app.config["DINGQIAO_DEMO"]
        client = app.test_client()
        fake_wechat.current_user = FakeWeChatUser("o-secure", "安全")
        logged_in = wechat_round_trip(client, fake_wechat)
        assert logged_in.status_code == 302
        for name in (app.config["SESSION_COOKIE_NAME"], app.config.get("REMEMBER_COOKIE_NAME", "remember_token")):
            attributes = cookie_attributes(logged_in, name)
            assert {"secure", "httponly"} <= attributes.keys() and attributes["samesite"] == "Lax", name
        assert logged_in.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        empty_database(app)


@pytest.mark.parametrize("target", [
    "//evil.example/", "https://evil.example/", "javascript:alert(1)", "/\t/evil.example",
    "/\\evil.example",
])
def test_after_login_next_never_leads_off_the_site(world, target):
    for who, login in ((MEMBER, "/auth/login"), (SUPERADMIN, "/admin/login")):
        response = client_as(world, who).get(login, query_string={"next": target})
        assert response.status_code == 302 and response.headers["Location"] == "/", who


# ---------------------------------------------------------------- 6. security headers, and only our own assets

REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def assert_security_headers(response, foreign_script_origins: frozenset[str] = frozenset()) -> None:
    csp = csp_directives(response)
    assert csp["default-src"] == ["'self'"]
    scripts = csp["script-src"]
    assert "'self'" in scripts and "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    others = {source for source in scripts if source != "'self'" and not source.startswith("'nonce-")}
    assert others == foreign_script_origins
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'self'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] in REFERRER_POLICIES


def test_pages_fragments_errors_json_and_files_all_carry_the_security_headers(world):
    visitor, admin = world.app.test_client(), client_as(world, SUPERADMIN)
    answers = {
        "page": visitor.get("/"),
        "fragment": visitor.get("/", headers={"HX-Request": "true"}),
        "error page": visitor.get("/products/999999999"),
        "error fragment": visitor.get("/products/999999999", headers={"HX-Request": "true"}),
        "CSRF refusal": visitor.post("/cart/items", data={"product_id": "1"}),
        "JSON": visitor.get("/healthz"),
        "JSON error": visitor.get("/no-such-page", headers={"Accept": "application/json"}),
        "uploaded image": visitor.get("/media/products/demo-1.png"),
        "static file": visitor.get("/static/css/app.css"),
        "login redirect": visitor.get("/me/"),
        "Flask-Admin page": admin.get("/admin/data/products/"),
    }
    assert answers["fragment"].status_code == 200 and "<html" not in answers["fragment"].get_data(as_text=True)
    assert answers["JSON error"].status_code == 404 and answers["JSON error"].is_json
    for what, response in answers.items():
        try:
            assert_security_headers(response)
        except (AssertionError, KeyError) as exc:
            raise AssertionError(f"{what}: {exc!r}") from exc


class Assets(HTMLParser):
    """A page's script and stylesheet addresses, the nonces of its inline scripts, its inline event handlers."""

    def __init__(self):
        super().__init__()
        self.addresses, self.inline_nonces, self.handlers = [], [], []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.addresses.append(attributes["src"])
        elif tag == "script":
            self.inline_nonces.append(attributes.get("nonce"))
        elif tag == "link" and attributes.get("href"):
            self.addresses.append(attributes["href"])
        self.handlers += [(name, value.strip()) for name, value in attributes.items() if name.startswith("on")]


# Flask-Admin's templates carry inline click handlers of three kinds. The data views rewrite exactly these into
# data-fa-click before the page leaves the server, and static/js/admin-data.js runs them: no page has an inline
# handler (the CSP would block it, and Chromium logs a console error for each), and no other code can ride along.
FLASK_ADMIN_HANDLERS = re.compile(r"return modelActions\.execute\('[\w-]+'\);?"
                                  r"|return faHelpers\.safeConfirm\('(?:[^'\\]|\\.)*'\);?|return false;?")


def page_assets(response) -> Assets:
    assets = Assets()
    assets.feed(response.get_data(as_text=True))
    return assets


def our_own(address: str) -> bool:
    parts = urlsplit(address)
    return (not parts.scheme and not parts.netloc and address.startswith("/")) or parts.netloc == "localhost"


def test_pages_load_scripts_and_styles_only_from_our_own_origin_and_run_no_unlisted_inline_script(world):
    """No CDN: what the CSP allows is all a page needs. Inline scripts (Flask-Admin's) carry the nonce the
    header names; no inline event handlers (the CSP would block them)."""
    visitor, admin = world.app.test_client(), client_as(world, SUPERADMIN)
    pages = {"home": visitor.get("/"), "product": visitor.get(f"/products/{world.product_id}"),
             "admin dashboard": admin.get("/admin/"), "data: products": admin.get("/admin/data/products/"),
             "data: categories": admin.get("/admin/data/categories/"),
             "data: product form": admin.get(f"/admin/data/products/edit/?id={world.product_id}")}
    for name, response in pages.items():
        assert response.status_code == 200, name
        assets = page_assets(response)
        assert assets.addresses and [a for a in assets.addresses if not our_own(a)] == [], name
        allowed = {source[len("'nonce-"):-1] for source in csp_directives(response)["script-src"]
                   if source.startswith("'nonce-")}
        assert all(nonce in allowed for nonce in assets.inline_nonces), name
        assert assets.handlers == [], name
        rewritten = [html.unescape(code) for code in re.findall(r'data-fa-click="([^"]*)"', response.get_data(as_text=True))]
        assert all(FLASK_ADMIN_HANDLERS.fullmatch(code) for code in rewritten), (name, rewritten)


def test_the_wechat_js_sdk_origin_is_allowed_only_when_configured(app_config):
    jssdk = "https://res.wx.qq.com/open/js/jweixin-1.6.0.js"
    app = create_app({**app_config, "WECHAT_JSSDK_URL": jssdk})
    with app.app_context():
        db.create_all()
    try:
        page = app.test_client().get("/")
        assert_security_headers(page, foreign_script_origins=frozenset({"https://res.wx.qq.com"}))
        assert [a for a in page_assets(page).addresses if not our_own(a)] == [jssdk]
    finally:
        empty_database(app)


# ---------------------------------------------------------------- 7. uploads are never served as HTML


def test_only_image_types_are_served_from_the_uploads_folder(world):
    for name, body in (("evil.html", "<script>alert(1)</script>"), ("evil.svg", "<svg onload=alert(1)/>"),
                       ("evil.js", "alert(1)"), ("evil.htm", "<p>"), ("evil.xhtml", "<p>")):
        (world.upload_folder / name).write_text(body)
        assert world.app.test_client().get(f"/media/{name}").status_code == 404, name


def test_html_saved_as_png_by_hand_is_served_as_a_png_that_no_browser_sniffs(world):
    (world.upload_folder / "evil.png").write_text("<html><script>alert(document.cookie)</script></html>")
    response = world.app.test_client().get("/media/evil.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"] == "inline"


def test_paths_that_leave_the_uploads_folder_are_refused(world):
    outside = world.upload_folder.parent / "outside.png"
    outside.write_bytes(png_bytes())
    client = world.app.test_client()
    for path in ("/media/../outside.png", "/media/..%2foutside.png", "/media/%2e%2e/outside.png",
                 "/media/products/../../outside.png", f"/media/{outside}", f"/media//{outside}",
                 "/media/..\\outside.png", "/media/../instance/dingqiao.sqlite3"):
        assert client.get(path, follow_redirects=True).status_code == 404, path


def test_after_sales_photos_are_shown_only_to_their_member_and_the_team_and_never_cached_publicly(world):
    url = f"/media/{world.photo_path}"
    for who in (MEMBER, OPERATOR):
        response = client_as(world, who).get(url)
        assert response.status_code == 200 and response.mimetype == "image/jpeg", who
        assert response.cache_control.private and not response.cache_control.public, who
    for who in (STRANGER, "other_member", OWNER):
        assert client_as(world, who).get(url).status_code == 404, who
    product_image = world.app.test_client().get("/media/products/demo-1.png")
    assert product_image.cache_control.public and product_image.cache_control.max_age > 0


def test_a_private_photo_is_marked_no_store_for_those_who_may_see_it(world):
    for who in (MEMBER, OPERATOR):
        response = client_as(world, who).get(f"/media/{world.photo_path}")
        assert response.status_code == 200, who
        assert response.cache_control.no_store and response.cache_control.max_age is None, who


def other_spellings(path: str) -> list[str]:
    """The same file under other addresses: dot segments, encoded dots and slashes, doubled slashes."""
    folder, rest = path.split("/", 1)
    return [f"%2e/{path}", f"./{path}", f"x/../{path}", f"x/%2e%2e/{path}", f"{folder}/./{rest}",
            f"{folder}//{rest}", f"%2E/{path}", f"x%2f..%2f{path}", f"{folder}%2f.%2f{rest}",
            f"products/../{path}", f"{folder}/x/../{rest}"]


def test_a_private_photo_under_another_spelling_of_its_path_is_a_404_for_everyone(world):
    """/media/%2e/service/… and /media/x/../service/… once served another member's photo to anyone, with
    Cache-Control: public: the privacy check looked at the raw path, the file server normalised it after."""
    for spelling in other_spellings(world.photo_path):
        for who in (STRANGER, "other_member", OWNER, MEMBER):
            response = client_as(world, who).get(f"/media/{spelling}")
            assert response.status_code == 404, (spelling, who)
            assert not response.cache_control.public, (spelling, who)


def test_a_public_picture_has_one_address_too(world):
    assert world.app.test_client().get("/media/products/demo-1.png").status_code == 200
    for spelling in other_spellings("products/demo-1.png"):
        assert world.app.test_client().get(f"/media/{spelling}").status_code == 404, spelling


def test_a_file_in_the_photo_folder_without_its_row_is_never_public(world):
    """Privacy follows the stored row, and the photo folder is private even for a file that has none."""
    stray = world.upload_folder / "service" / "stray.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(png_bytes())
    for who in (STRANGER, MEMBER, OWNER):
        assert client_as(world, who).get("/media/service/stray.png").status_code == 404, who
    assert client_as(world, OPERATOR).get("/media/service/stray.png").status_code == 200


def test_an_upload_that_is_really_html_is_refused_and_nothing_is_stored(app):
    with app.app_context():
        member_id = make_user("会员").id
    client = member_client(app, member_id)
    uploads = Path(app.config["UPLOAD_FOLDER"])
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    for name, body in (("photo.png", html), ("photo.jpg", b"\x89PNG\r\n\x1a\n" + html), ("photo.svg", html)):
        response = client.post("/service/", data={
            "csrf_token": csrf_token(client), "kind": "other", "body": "请看图片",
            "photos": (io.BytesIO(body), name)}, content_type="multipart/form-data")
        assert response.status_code == 400 and "无法识别的图片文件" in response.get_data(as_text=True), name
    assert not [path for path in uploads.rglob("*") if path.is_file()]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ServiceCase)) == 0


def test_an_image_carrying_html_is_stored_re_encoded_without_it(app):
    """A real PNG with a script in a text chunk is accepted — and what is stored is our own encoding."""
    with app.app_context():
        member_id = make_user("会员").id
    client = member_client(app, member_id)
    response = client.post("/service/", data={
        "csrf_token": csrf_token(client), "kind": "other", "body": "请看图片",
        "photos": (io.BytesIO(png_bytes(text="<script>alert(1)</script>")), "photo.png")},
        content_type="multipart/form-data")
    assert response.status_code == 303
    [stored] = [path for path in Path(app.config["UPLOAD_FOLDER"]).rglob("*") if path.is_file()]
    assert stored.suffix == ".jpg" and b"<script" not in stored.read_bytes()


# ---------------------------------------------------------------- 8. no secret in logs or error pages

DATABASE_PASSWORD = "db-password-never-shown-51f"


def assert_nothing_secret(text: str) -> None:
    for secret in (SECRET_KEY, APP_SECRET, MCH_KEY, DATABASE_PASSWORD):
        assert secret not in text, f"{secret[:8]}… shown"


@pytest.fixture
def secret_app(app_config):
    """An app with recognisable secrets, a WeChat that cannot be reached (a closed port), and one route, for
    this test only, that fails the way a library does: with the failing URL, secret and all, in its message."""
    app = create_app({**app_config, "SECRET_KEY": SECRET_KEY, "WECHAT_APP_SECRET": APP_SECRET,
                      "WECHAT_MCH_ID": "1900000109", "WECHAT_MCH_KEY": MCH_KEY,
                      "WECHAT_BASE_URL": "http://127.0.0.1:9"})

    @app.get("/test-only/crash")
    def crash():
        raise requests.ConnectionError(f"Max retries exceeded with url: /cgi-bin/token?appid=wx&secret={APP_SECRET}")

    with app.app_context():
        db.create_all()
    yield app
    empty_database(app)


def test_an_unexpected_error_shows_a_plain_page_and_logs_its_trace_without_the_secret(secret_app, caplog):
    caplog.set_level(logging.INFO)
    response = secret_app.test_client().get("/test-only/crash")
    body = response.get_data(as_text=True)
    assert response.status_code == 500 and "系统繁忙" in body
    assert "Traceback" not in body and "ConnectionError" not in body
    assert_nothing_secret(body)
    # The team still learns what failed, and where.
    assert "unhandled error on GET /test-only/crash" in caplog.text
    assert "requests.exceptions.ConnectionError" in caplog.text
    assert_nothing_secret(caplog.text)


def test_wechat_being_unreachable_is_logged_without_the_app_secret(secret_app, caplog):
    """requests names the URL in its errors, and WeChat's token URLs carry the app secret."""
    caplog.set_level(logging.INFO)
    client = secret_app.test_client()
    authorize = urlsplit(client.get("/auth/login").headers["Location"])
    state = parse_qs(authorize.query)["state"][0]
    login = client.get("/auth/wechat/callback", query_string={"code": "CODE", "state": state})
    config = client.get("/wechat/jssdk-config", query_string={"url": "http://localhost/"})
    assert login.status_code == 502 and config.status_code == 502
    for response in (login, config):
        assert "Traceback" not in response.get_data(as_text=True)
        assert_nothing_secret(response.get_data(as_text=True))
    assert "wechat oauth failed" in caplog.text and "jssdk config failed" in caplog.text
    assert "Traceback" not in caplog.text  # a warning: WeChat being down is not a bug of ours
    assert_nothing_secret(caplog.text)


def test_refusals_and_error_pages_show_no_secret(secret_app, caplog):
    caplog.set_level(logging.INFO)
    client = secret_app.test_client()
    foreign_notify = signed_xml({"return_code": "SUCCESS", "result_code": "SUCCESS", "appid": "wxfake0000000001",
                                 "mch_id": "1900000109", "openid": "o-x", "out_trade_no": "DQ1", "transaction_id": "42",
                                 "total_fee": "100"}, "another-merchant-key-0000000000")
    answers = [
        client.post("/cart/items", data={"product_id": "1"}),  # no CSRF token
        client.get("/no-such-page"),
        client.get("/products/999999999"),
        client.get("/wechat/pay/notify"),  # 405
        client.post("/wechat/pay/notify", data=b"<xml><not-a-notify/>"),
        client.post("/wechat/pay/notify", data=foreign_notify),
        client.get("/wechat/callback", query_string={"signature": "forged", "timestamp": "1", "nonce": "n"}),
        client.get("/healthz"),
    ]
    assert [r.status_code for r in answers] == [400, 404, 404, 405, 400, 400, 403, 200]
    for response in answers:
        assert "Traceback" not in response.get_data(as_text=True)
        assert_nothing_secret(response.get_data(as_text=True))
    assert "Traceback" not in caplog.text  # refusals are not errors
    assert_nothing_secret(caplog.text)


def test_a_database_that_cannot_be_reached_shows_neither_its_password_nor_a_trace(app_config, caplog):
    caplog.set_level(logging.INFO)
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI":
                      f"postgresql+psycopg://dingqiao:{DATABASE_PASSWORD}@127.0.0.1:9/dingqiao"})
    client = app.test_client()
    health, page = client.get("/healthz"), client.get("/")
    assert health.status_code == 503 and health.json == {"status": "error",
                                                         "database": {"ok": False, "error": "OperationalError"}}
    assert page.status_code == 500 and "Traceback" not in page.get_data(as_text=True)
    for text in (health.get_data(as_text=True), page.get_data(as_text=True), caplog.text):
        assert_nothing_secret(text)
    with app.app_context():
        db.engine.dispose()


def test_a_template_message_that_failed_stores_and_shows_no_secret(secret_app):
    secret_app.config.update(WECHAT_MESSAGES='{"order_paid": {"template_id": "TMPL-PAID", "kind": "template", '
                                             '"data": {"thing1": "title"}}}', MESSAGE_MAX_ATTEMPTS=1)
    with secret_app.app_context():
        member_id = make_user("会员").id
        with write_transaction(db.session):
            enqueue_message(db.session, user_id=member_id, event="order_paid", object_id=1, title="支付成功", body="")
        admin_id = create_admin(db.session, "ops", "long-enough-password", AdminRole.OPERATOR).id
    result = run_worker(secret_app, once=True, echo=lambda _line: None)
    assert result.failed == 1
    with secret_app.app_context():
        stored = db.session.scalar(select(OutboxMessage.last_error))
    admin = secret_app.test_client()
    log_in_admin(admin, admin_id)
    shown = admin.get("/admin/messages").get_data(as_text=True)
    assert stored and "支付成功" in shown
    assert_nothing_secret(stored)
    assert_nothing_secret(shown)


def test_the_client_address_comes_from_the_proxy_only_when_one_is_configured(database_url, tmp_path):
    """Behind nginx (PROXY_COUNT=1) each client has its own admin-login budget; without a configured proxy a
    forged X-Forwarded-For changes nothing, so it cannot dodge the limit."""
    def failed_logins(proxies: int, forwarded_for: list[str]) -> list[int]:
        app = create_app(make_config(database_url, tmp_path, PROXY_COUNT=proxies, ADMIN_LOGIN_RATE="2 per minute"))
        with app.app_context():
            db.create_all()
        client = app.test_client()
        token = csrf_token(client)
        try:
            return [client.post("/admin/login", data={"csrf_token": token, "username": "x", "password": "y"},
                                headers={"X-Forwarded-For": address}).status_code for address in forwarded_for]
        finally:
            empty_database(app)

    addresses = ["203.0.113.1", "203.0.113.1", "203.0.113.1", "198.51.100.7"]
    assert failed_logins(1, addresses) == [401, 401, 429, 401]
    assert failed_logins(0, addresses) == [401, 401, 429, 429]
