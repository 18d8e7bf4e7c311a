"""Fuzzing (issue 9): the state-changing forms, the pay notify and the WeChat callback fed with what nobody
should send — control characters, RTL and emoji, 10k-character strings, SQL/HTML/JS snippets, numbers of any
magnitude and spelling ("1e309", "NaN", "-0", "１２"), random bytes, XML bombs.

Whatever arrives: never a 5xx, never a stack trace, nothing logged as an error; a refusal (4xx) says why in
Chinese and changes nothing at all (every row of every table compared before and after); what is accepted
stays within the business limits; after every example the money and the stock invariants hold
(``check_money``, ``check_stock``), every stored text fits its column and holds no NUL (which SQLite would
keep and Postgres cannot store), and the team closure table matches the bindings.

One app per test (per form), examples running one after another on it: every check compares with the state
just before the example, so what earlier examples left behind only makes the world more varied.
"""
import json
import logging
import re
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Callable
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlalchemy import String, func, select
from wechatpy.crypto import WeChatCrypto
from wechatpy.pay.utils import calculate_signature, dict_to_xml

from dingqiao.blueprints.admin.data.base import DataView
from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    AdminUser,
    AuditLog,
    BindingSource,
    CartItem,
    CommissionRuleVersion,
    FactoryStore,
    IdentityApplication,
    IdentityRuleVersion,
    LocationKind,
    Order,
    OrderStatus,
    Outlet,
    Payment,
    PaymentEvent,
    PaymentEventKind,
    Product,
    ReferralBinding,
    RefusedNotify,
    RestockItem,
    ServiceCase,
    ServiceMessage,
    StockLevel,
    StockLocation,
    StockMovement,
    StockReason,
    TeamPath,
    User,
    Withdrawal,
)
from dingqiao.models.base import utcnow
from dingqiao.services import cart as carts
from dingqiao.services.accounts import create_admin
from dingqiao.services.catalog import MAX_PRICE_FEN
from dingqiao.services.commissions import RuleInput, validate_rule
from dingqiao.services.exports import MAX_DAYS
from dingqiao.services.invariants import check_money, check_stock
from dingqiao.services.orders import cancel_order
from dingqiao.services.outlets import PHONE_PATTERN
from dingqiao.services.periods import china_today
from dingqiao.services.referrals import bind_upline
from dingqiao.services.restock import MAX_LINE_QUANTITY, place_restock
from dingqiao.services.service_cases import MAX_BODY_LENGTH, MAX_SUBJECT_LENGTH, open_case
from dingqiao.services.stock import MAX_ADJUSTMENT, MAX_THRESHOLD, adjust_stock
from dingqiao.services.upgrades import IdentityRuleInput, create_identity_rule, validate_identity_rule
from dingqiao.services.withdrawals import MAX_WITHDRAWAL_FEN
from dingqiao.web import MAX_ID, parse_id
from dingqiao.wechat import pay_gateway
from dingqiao.wechat.pay import InvalidNotification
from tests.conftest import csrf_token, log_in_admin
from tests.factories import make_product, make_user, team_paths_from_bindings
from tests.money_world import build_world, buy, pay, pick_up
from tests.test_access import log_in
from tests.test_money_properties import snapshot
from tests.test_wechat_callback import AES_KEY, TOKEN, encrypted, signed

FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

# ------------------------------------------------------------------------------------------- what arrives

INJECTIONS = (
    "'; DROP TABLE orders; --", "' OR '1'='1", "1; SELECT pg_sleep(5)", "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>', "javascript:alert(1)", "{{ config }}", "{% raw %}", "${7*7}", "]]></xml>",
    "%s%s%n", "../../../../etc/passwd", "\\", "NULL", "None", "<![CDATA[x]]>",
)
ODD_TEXT = (
    "", " ", "\x00", "a\x00b", "\x1b[31m", "\x7f", "\u202eevil\u202c", "\u200f", "مرحبا بالعالم", "שלום", "😀",
    "👨\u200d👩\u200d👧\u200d👦", "\ufeff", "e\u0301", "\u3000", "\r\n", "\t", "\u2028", "𠀀", "Ⅻ", "ﬀ", "\ufffd",
)
NUMBERS = (
    "1e309", "-1e309", "NaN", "nan", "inf", "-inf", "-0", "+0", "0", "00", "+1", "-1", "１２", "٣", "²", "1_000",
    "0x10", " 7 ", "7\n", "1.5", "1.005", "0.01", ".5", "5.", "1,000.00", "¥12", "12元", "9" * 30, "-" + "9" * 30,
    "1" + "0" * 400, str(2**63), str(-(2**63) - 1),
)


def text_blobs() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=200),  # any code point but surrogates: control characters included
        st.sampled_from(INJECTIONS + ODD_TEXT),
        st.lists(st.sampled_from(INJECTIONS + ODD_TEXT) | st.text(max_size=20), max_size=6).map("".join),
        st.tuples(st.sampled_from("9好a😀 \x00<"), st.integers(1_000, 10_000)).map(lambda pair: pair[0] * pair[1]),
    )


def number_strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**40), 10**40).map(str),
        st.integers(-5, 200).map(str),
        st.floats().map(repr),
        st.decimals(min_value=-(10**7), max_value=10**7, places=3).map(str),
        st.sampled_from(NUMBERS),
    )


# Characters that break things one way or another: NUL (Postgres cannot store it), escape and delete, bidi
# overrides, an astral-plane emoji, HTML and SQL quoting, the end of a CDATA section, a line break.
SHARP = ("\x00", "\x1b", "\x7f", "\u202e", "😀", "<", "'", "]]>", "\r\n")


def spliced(plausible: tuple[str, ...]) -> st.SearchStrategy[str]:
    """A plausible value with something odd put into it: it passes the checks of length and format that stop
    random text, and reaches the database."""
    odd = st.one_of(st.sampled_from(SHARP), st.sampled_from(INJECTIONS + ODD_TEXT), st.text(max_size=5))
    return st.tuples(st.sampled_from(plausible), odd, st.integers(0, 40)).map(
        lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:])


def fuzz(*plausible: str) -> st.SearchStrategy[str]:
    """A field's value: one of the plausible ones (so that some posts go through), one of them spliced with
    something odd, a number in any spelling, or any text at all."""
    return st.one_of(st.sampled_from(plausible), spliced(plausible), number_strings(), text_blobs())


# ---------------------------------------------------------------------------------------------- the world

class ErrorLog(logging.Handler):
    """The app's error log: an exception turned into a polite page is still a bug."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@dataclass
class World:
    app: object
    base: object  # tests.money_world.World, for buy()
    ids: dict  # buyer, parent, grandparent, outlet_owner, factory_owner, product, off_sale, outlet, region, …
    order_nos: dict  # the buyer's orders: "paid" (and collected), "unpicked" (paid), "pending" (unpaid)
    codes: dict  # member name → referral code
    errors: ErrorLog
    clients: dict = field(default_factory=dict)  # who → (client, csrf token)

    def _repr_pretty_(self, printer, _cycle) -> None:
        printer.text("World(…)")  # hypothesis prints a failing example's arguments, this fixture among them

    def client(self, who: str):
        if who not in self.clients:
            client = self.app.test_client()
            if who in ("operator", "finance"):
                log_in_admin(client, self.ids[who])
            elif who != "new_member":  # logged in per example, as a member made for it
                log_in(client, self.ids[who])
            self.clients[who] = (client, csrf_token(client))
        return self.clients[who]


def build(app) -> World:
    """The money world (a referral chain, an outlet, a factory store, a ¥100 product) with what the forms act
    on: a platform warehouse, stock up the chain, paid and collected orders (the parent's wallet has money),
    an open service case, a pending restock order, a rule for outlet applications and an operator."""
    base = build_world(app, units=1_000_000)
    paid = []
    for _ in range(3):
        order_no = buy(app, base, quantity=10)
        pay(app, order_no)
        pick_up(app, base, order_no)
        paid.append(order_no)
    unpicked = buy(app, base)
    pay(app, unpicked)
    pending = buy(app, base)
    with app.app_context():
        session = db.session
        factory = session.scalar(select(FactoryStore))
        platform = StockLocation(kind=LocationKind.PLATFORM, name="平台总仓")
        session.add(platform)
        session.commit()
        for location_id in (factory.location_id, platform.id):
            adjust_stock(session, location_id=location_id, product_id=base.product_id, delta=500, note="期初",
                         actor_kind="system", actor_id=0)
        off_sale = make_product(2_000, name="已下架的小样")
        off_sale.is_on_sale = False
        child = make_user("下线")
        session.commit()
        finance = session.get(AdminUser, base.finance_id)
        operator = create_admin(session, "operator", "long-enough-pw", AdminRole.OPERATOR)
        create_identity_rule(session, finance, IdentityRuleInput(target="outlet", metric="goods_purchases",
                                                                 threshold_fen=50_000, grant_mode="review"))
        restock = place_restock(session, base.outlet_owner, {base.product_id: 60}, "备货")
        case = open_case(session, base.buyer, kind="other", subject="咨询", body="请问怎么用？",
                         upload_folder=app.config["UPLOAD_FOLDER"], max_bytes=app.config["UPLOAD_MAX_BYTES"])
        bind_upline(session, child.id, session.get(User, base.buyer).referral_code, BindingSource.LINK)
        outlet = session.get(Outlet, base.outlet_id)
        ids = {"buyer": base.buyer, "parent": base.parent, "grandparent": base.grandparent, "child": child.id,
               "outlet_owner": base.outlet_owner, "factory_owner": base.factory_owner, "product": base.product_id,
               "off_sale": off_sale.id, "outlet": base.outlet_id, "region": outlet.region_id,
               "outlet_location": outlet.location_id, "platform": platform.id, "restock": restock.id,
               "case": case.id, "operator": operator.id, "finance": base.finance_id,
               "category": session.get(Product, base.product_id).category_id}
        codes = {name: session.get(User, ids[name]).referral_code
                 for name in ("buyer", "parent", "grandparent", "child", "outlet_owner")}
    errors = ErrorLog()
    app.logger.addHandler(errors)
    return World(app, base, ids, {"paid": paid[0], "unpicked": unpicked, "pending": pending}, codes, errors)


@pytest.fixture
def world(app) -> World:
    built = build(app)
    yield built
    app.logger.removeHandler(built.errors)


# ------------------------------------------------------------------------------------ checks after each

CJK = re.compile(r"[\u4e00-\u9fff]")
MESSAGES = (
    re.compile(r'<h2 class="weui-msg__title">(.*?)</h2>', re.S),  # error.html
    re.compile(r'role="alert">(.*?)</div>', re.S),  # the toast of the admin pages
    re.compile(r'<(?:span|p) class="dq-field-error[^"]*"[^>]*>(.*?)</(?:span|p)>', re.S),  # next to its field
    re.compile(r'<div class="alert alert-danger[^>]*>(.*?)</div>', re.S),  # Flask-Admin's flashed error
    re.compile(r'<ul class="form-text text-danger[^>]*>(.*?)</ul>', re.S),  # Flask-Admin's error under a field
)


def shown_message(html: str) -> str:
    """The error message a refused form shows, as text."""
    for pattern in MESSAGES:
        found = pattern.search(html)
        if found:
            return re.sub(r"<[^>]+>|&times;", "", found.group(1)).strip()
    return ""


def stored_text_problems(session) -> list[str]:
    """Every text fits its column (SQLite does not check; Postgres refuses the whole write) and holds no NUL."""
    problems = []
    for table in db.metadata.sorted_tables:
        columns = [column for column in table.columns if isinstance(column.type, String)]
        for row in session.execute(select(*columns)) if columns else ():
            for column, value in zip(columns, row):
                if value is None:
                    continue
                if column.type.length and len(value) > column.type.length:
                    problems.append(f"{table.name}.{column.name}: {len(value)} characters > {column.type.length}")
                if "\x00" in value:
                    problems.append(f"{table.name}.{column.name}: NUL in {value[:40]!r}")
    return problems


def assert_consistent(session) -> None:
    assert check_money(session) == []
    assert check_stock(session) == []
    assert stored_text_problems(session) == []
    paths = {(path.ancestor_id, path.descendant_id, path.depth) for path in session.scalars(select(TeamPath))}
    assert paths == team_paths_from_bindings(session)


def answered(world: World, response) -> str:
    """The body of an answer that did not fail: no 5xx, no stack trace, nothing in the error log."""
    body = response.get_data().decode("utf-8", "replace")  # an export is a binary file
    logged = [record.getMessage() for record in world.errors.records]
    world.errors.records.clear()
    assert response.status_code < 500, (response.status_code, body[:300], logged)
    assert "Traceback" not in body and 'File "' not in body
    assert not logged, logged
    return body


def changed_tables(before: dict, after: dict) -> list[str]:
    return [name for name in before if before[name] != after[name]]


# ------------------------------------------------------------------------------------------------ forms

def form_of(plausible: dict[str, tuple[str, ...]]) -> st.SearchStrategy[dict]:
    """Plausible values in all fields but a few, which are fuzzed: a post can then pass every check but one,
    and with no field fuzzed it goes through."""
    names = sorted(plausible)
    return st.sets(st.sampled_from(names), max_size=3).flatmap(lambda fuzzed: st.fixed_dictionaries({
        name: fuzz(*plausible[name]) if name in fuzzed else st.sampled_from(plausible[name]) for name in names}))


def quantities(world: World) -> st.SearchStrategy[dict]:
    """More ``qty-<product id>`` fields for a restock form, with any key and any value."""
    ids = world.ids
    keys = st.one_of(st.sampled_from([f"qty-{ids['product']}", f"qty-{ids['off_sale']}", "qty-999999", "qty-"]),
                     text_blobs().map("qty-".__add__), text_blobs())
    return st.dictionaries(keys, fuzz("1", "5", "0", "", "100000"), max_size=5)


def shop_fields_ok(name: str, address: str, phone: str, hours: str, latitude: int | None,
                   longitude: int | None) -> None:
    assert 2 <= len(name) <= 32 and 5 <= len(address) <= 120 and len(hours) <= 32
    assert all(text == " ".join(text.split()) for text in (name, address, hours))
    assert PHONE_PATTERN.match(phone)
    assert latitude is None or -90_000_000 <= latitude <= 90_000_000
    assert longitude is None or -180_000_000 <= longitude <= 180_000_000


def cart_limits(session, world: World) -> None:
    lines = session.execute(select(CartItem.user_id, func.count(), func.min(CartItem.quantity),
                                   func.max(CartItem.quantity)).group_by(CartItem.user_id)).all()
    assert all(count <= carts.MAX_LINES and 1 <= low <= high <= carts.MAX_LINE_QUANTITY
               for _user, count, low, high in lines)


def order_limits(session, world: World) -> None:
    for order in session.scalars(select(Order)):
        assert 0 < order.total_fen == sum(item.subtotal_fen for item in order.items)
        assert all(1 <= item.quantity <= carts.MAX_LINE_QUANTITY for item in order.items)


def withdrawal_limits(session, world: World) -> None:
    low = world.app.config["WITHDRAWAL_MIN_FEN"]
    for amount, fee in session.execute(select(Withdrawal.amount_fen, Withdrawal.fee_fen)):
        assert low <= amount <= MAX_WITHDRAWAL_FEN and 0 <= fee < amount


def outlet_limits(session, world: World) -> None:
    for outlet in session.scalars(select(Outlet)):
        shop_fields_ok(outlet.name, outlet.address, outlet.phone, outlet.opening_hours, outlet.latitude_e6,
                       outlet.longitude_e6)


def case_limits(session, world: World) -> None:
    for subject in session.scalars(select(ServiceCase.subject)):
        assert 1 <= len(subject) <= MAX_SUBJECT_LENGTH and subject == " ".join(subject.split())
    for body in session.scalars(select(ServiceMessage.body).where(ServiceMessage.author_user_id.is_not(None))):
        assert 1 <= len(body) <= MAX_BODY_LENGTH and body == body.strip()


def application_limits(session, world: World) -> None:
    for application in session.scalars(select(IdentityApplication)):
        shop_fields_ok(application.shop_name, application.address, application.phone, application.opening_hours,
                       application.latitude_e6, application.longitude_e6)


def adjustment_limits(session, world: World) -> None:
    for delta, note in session.execute(select(StockMovement.on_hand_delta, StockMovement.note)
                                       .where(StockMovement.reason == StockReason.ADJUST)):
        assert 1 <= abs(delta) <= MAX_ADJUSTMENT and 1 <= len(note) <= 200 and note == " ".join(note.split())


def threshold_limits(session, world: World) -> None:
    assert all(0 <= value <= MAX_THRESHOLD for value in session.scalars(select(StockLevel.low_stock_threshold)))


def restock_limits(session, world: World) -> None:
    for item in session.scalars(select(RestockItem)):
        assert 1 <= item.quantity <= MAX_LINE_QUANTITY and 0 <= item.received_quantity <= item.shipped_quantity
        assert item.shipped_quantity <= item.quantity


RULE_FIELDS = {"referral_depth": "2", "direct_bps": "1000", "team_bps": "300", "third_level_bps": "0",
               "service_fee_bps": "500", "regional_bps": "200", "payout_cap_bps": "3000", "cooling_days": "0"}
# The admin form types rates in percent (10 = 10 %, stored as 1000 bps): its field names drop "_bps".
RULE_FORM = {"referral_depth": ("2", "0", "3", "4"), "direct": ("10", "0", "12.5", "100", "100.01", "-5", "1e3"),
             "team": ("3", "0", "0.01"), "third_level": ("0", "1"), "service_fee": ("5", "0"),
             "regional": ("2", "0"), "payout_cap": ("30", "0", "100"), "cooling_days": ("0", "7", "10000")}


def rule_limits(session, world: World) -> None:
    for version in session.scalars(select(CommissionRuleVersion)):
        validate_rule(RuleInput(**{name: getattr(version, name) for name in RULE_FIELDS}))
        assert len(version.note) <= 200


def identity_rule_limits(session, world: World) -> None:
    for version in session.scalars(select(IdentityRuleVersion)):
        validate_identity_rule(IdentityRuleInput(target=version.target, metric=version.metric,
                                                 threshold_fen=version.threshold_fen, counts_at=version.counts_at,
                                                 grant_mode=version.grant_mode))
        assert len(version.note) <= 200


def binding_limits(session, world: World) -> None:
    assert all(binding.user_id != binding.upline_id for binding in session.scalars(select(ReferralBinding)))


def product_limits(session, world: World) -> None:
    for product in session.scalars(select(Product)):
        assert 0 < product.factory_price_fen <= product.outlet_price_fen <= product.member_price_fen <= MAX_PRICE_FEN


def export_limits(session, world: World) -> None:
    for detail in session.scalars(select(AuditLog.detail).where(AuditLog.action == "export")):
        export = json.loads(detail)
        assert 0 <= (date.fromisoformat(export["last"]) - date.fromisoformat(export["first"])).days < MAX_DAYS


@dataclass(frozen=True)
class FormCase:
    name: str
    who: str  # a member or admin of the world, or "new_member": a member made for each example
    urls: Callable[[World], tuple[str, ...]]
    fields: Callable[[World], dict[str, tuple[str, ...]]]  # plausible values of each field
    limits: Callable[[object, World], None]  # (session, world): stored values within the business limits
    method: str = "POST"
    prepare: Callable | None = None  # (session, world, new member id): before the new member posts
    more_fields: Callable[[World], st.SearchStrategy[dict]] | None = None  # fields with names of any kind
    refused_with: int = 400  # Flask-Admin refuses with 200, showing the form again with the errors

    def __repr__(self) -> str:
        return self.name

    def requests(self, world: World) -> st.SearchStrategy[tuple[str, dict]]:
        form = form_of(self.fields(world))
        if self.more_fields:
            form = st.tuples(self.more_fields(world), form).map(lambda pair: {**pair[0], **pair[1]})
        return st.tuples(st.sampled_from(self.urls(world)), form)


def with_a_cart(session, world: World, member_id: int) -> None:
    carts.add_to_member_cart(session, member_id, world.ids["product"], 3)


def product_ids(world: World) -> tuple[str, ...]:
    return str(world.ids["product"]), str(world.ids["off_sale"]), "999999"


def days() -> tuple[str, ...]:
    today = china_today(utcnow())
    return (today.isoformat(), today.replace(day=1).isoformat(), (today - timedelta(days=400)).isoformat(),
            "2000-01-01", "9999-12-31", "0001-01-01")


def url(path: str) -> Callable[[World], tuple[str, ...]]:
    return lambda _world: (path,)


SHOP = {"shop_name": ("小周便利店",), "address": ("杭州市西湖区古荡新村 3 幢",), "phone": ("13800000000", "0571-88886666"),
        "opening_hours": ("08:00-21:00", ""), "latitude": ("30.2741", "90", "-90.0001"),
        "longitude": ("120.1551", "180", "180.5")}
ADJUSTMENT = {"delta": ("5", "-2", "+3", "100000", "-100001"), "note": ("盘点",)}

FORMS = [
    FormCase("cart add", "new_member", url("/cart/items"), lambda w: {
        "product_id": product_ids(w), "quantity": ("1", "2", "99", "100", "0"), "then": ("", "checkout")},
        cart_limits),
    FormCase("cart update", "new_member",
             lambda w: tuple(f"/cart/items/{pid}" for pid in (*product_ids(w), 10**18 - 1)),
             lambda w: {"quantity": ("0", "1", "5", "99", "100")}, cart_limits, prepare=with_a_cart),
    FormCase("checkout", "new_member", url("/checkout/"),
             lambda w: {"outlet_id": (str(w.ids["outlet"]), "0", "999999")}, order_limits, prepare=with_a_cart),
    FormCase("withdrawal", "parent", url("/wallet/withdrawals"), lambda w: {
        "amount": ("1", "1.00", "0.99", "10.5", "12.345", "20000.01", "¥5", "1,000")}, withdrawal_limits),
    FormCase("outlet profile", "outlet_owner", url("/outlet/profile"), lambda w: {
        "name": SHOP["shop_name"], **{key: values for key, values in SHOP.items() if key != "shop_name"}},
        outlet_limits),
    FormCase("service case", "buyer", url("/service/"), lambda w: {
        "kind": ("quality", "refund", "other"), "subject": ("洗衣液漏了", ""), "body": ("收到时瓶盖裂开。",),
        "order_no": (w.order_nos["unpicked"], w.order_nos["paid"], w.order_nos["pending"], "")}, case_limits),
    FormCase("service reply", "buyer", lambda w: (f"/service/{w.ids['case']}/messages",),
             lambda w: {"body": ("还没收到回复", "\n\n好的\n")}, case_limits),
    FormCase("outlet application", "new_member", url("/me/upgrade"), lambda w: {
        "target": ("outlet", "factory"), "region_id": (str(w.ids["region"]), "999999"), **SHOP}, application_limits),
    FormCase("stock adjustment", "outlet_owner", url("/stock/adjust"),
             lambda w: {"product_id": product_ids(w), **ADJUSTMENT}, adjustment_limits),
    FormCase("stock threshold", "outlet_owner", url("/stock/threshold"), lambda w: {
        "product_id": product_ids(w), "threshold": ("5", "0", "100000", "100001")}, threshold_limits),
    FormCase("admin stock adjustment", "operator", url("/admin/stock/adjust"), lambda w: {
        "location_id": (str(w.ids["platform"]), str(w.ids["outlet_location"]), "999999"), "product_id": product_ids(w),
        **ADJUSTMENT}, adjustment_limits),
    FormCase("restock order", "outlet_owner", url("/restock/"), lambda w: {
        f"qty-{w.ids['product']}": ("5", "1"), "note": ("周末备货", "")}, restock_limits, more_fields=quantities),
    FormCase("restock shipment", "factory_owner", lambda w: (f"/restock/{w.ids['restock']}/ship",),
             lambda w: {f"qty-{w.ids['product']}": ("1", "5")}, restock_limits, more_fields=quantities),
    FormCase("commission rule", "finance", url("/admin/commission-rules"), lambda w: {
        **RULE_FORM, "note": ("调整", ""),
        "action": ("publish", "preview")}, rule_limits),
    FormCase("identity rule", "finance", url("/admin/identity-rules"), lambda w: {
        "target": ("outlet", "factory"), "metric": ("goods_purchases", "restock_volume"),
        "threshold": ("100", "0.01", "1000000"), "counts_at": ("paid", "redeemed"),
        "grant_mode": ("auto", "review", "closed"), "note": ("调整", "")}, identity_rule_limits),
    FormCase("upline correction", "finance", lambda w: tuple(
        f"/admin/members/{member}/upline" for member in (w.ids["buyer"], w.ids["child"], w.ids["parent"], 999999)),
        lambda w: {"code": (*w.codes.values(), w.codes["grandparent"].lower(), "", "ZZZZZZZZ"),
                   "reason": ("客服核实后改绑",)}, binding_limits),
    FormCase("product", "operator", url("/admin/data/products/new/"), lambda w: {
        "category": (str(w.ids["category"]), "999999"), "name": ("顶俏测试洗衣液",), "subtitle": ("", "好用"),
        "member_price": ("39.90", "100"), "outlet_price": ("31.92", "100"), "factory_price": ("25.93", "1"),
        "description": ("",), "unit": ("瓶",), "is_on_sale": ("y", ""), "sort_order": ("0", "5")}, product_limits,
        refused_with=200),
    FormCase("export", "finance", url("/admin/exports/download"), lambda w: {
        "kind": ("orders", "commissions", "withdrawals"), "start": days(), "end": days(), "format": ("csv", "xlsx")},
        export_limits, method="GET"),
]


def note(label: str) -> None:
    """An event for hypothesis' statistics, when running under hypothesis."""
    if currently_in_test_context():
        event(label)


def run_form(world: World, case: FormCase, path: str, fields: dict) -> None:
    app = world.app
    client, token = world.client(case.who)
    if case.who == "new_member":
        with app.app_context():
            member_id = make_user().id
            if case.prepare:
                case.prepare(db.session, world, member_id)
        log_in(client, member_id)
    with app.app_context():
        before = snapshot(db.session)
    if case.method == "GET":
        response = client.get(path, query_string=fields)
    else:
        response = client.post(path, data={**fields, "csrf_token": token})
    body = answered(world, response)
    status = response.status_code
    with app.app_context():
        after = snapshot(db.session)
        if 300 <= status < 400 or (case.method == "GET" and status == 200):
            note(f"{case.name}: accepted")
            assert "login" not in response.headers.get("Location", "")
            case.limits(db.session, world)
        else:
            # A refusal; or a POST answered 200, which shows the form again (the commission rule's preview).
            note(f"{case.name}: refused with {status}")
            if status >= 400:
                assert CJK.search(shown_message(body)), (status, body[:500])
            elif status == case.refused_with:  # some of Flask-Admin's own messages are not translated
                assert shown_message(body), body[:500]
            assert not changed_tables(before, after), (status, shown_message(body), changed_tables(before, after))
        assert_consistent(db.session)


@pytest.mark.parametrize("case", FORMS, ids=repr)
@FUZZ
@given(data=st.data())
def test_a_fuzzed_form_is_refused_in_chinese_or_stays_within_the_business_limits(world, case, data):
    path, fields = data.draw(case.requests(world), label="url and form")
    run_form(world, case, path, fields)


@pytest.mark.parametrize("case", FORMS, ids=repr)
def test_a_nul_a_huge_number_or_ten_thousand_characters_in_any_field_does_no_harm(world, case):
    """Beside the random search, every field of every form once: a NUL (Postgres can store none) spliced into
    its first plausible value, a number beyond any 64-bit column, and the value 10,000 characters long."""
    plausible = {name: values[0] for name, values in case.fields(world).items()}
    for name, value in plausible.items():
        for odd in (value[:1] + "\x00" + value[1:], "9" * 30, (value or "9") * (10_000 // max(len(value), 1))):
            run_form(world, case, case.urls(world)[0], {**plausible, name: odd})


# ------------------------------------------------------------------------- XML for the machine endpoints

SECRET = "SECRET-FILE-CONTENT-7f3a"  # in a file that an external entity names: it must never be read


def bombs(secret_path: str) -> list[bytes]:
    """Entity expansion (billion laughs, quadratic blow-up), external entities and DTDs, a DTD behind a long
    comment, XInclude: the parser must refuse them, never expand them or read the file."""
    laughs = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    fields = "".join(f"<{name}>&a9;</{name}>" for name in ("ToUserName", "FromUserName", "appid", "out_trade_no"))
    billion = f"<!DOCTYPE xml [{laughs}]><xml>{fields}<MsgType>text</MsgType><Content>&a9;</Content></xml>"
    secret = "".join(f"<{name}>&secret;</{name}>" for name in ("FromUserName", "Content", "appid", "out_trade_no"))
    return [
        f'<?xml version="1.0"?>{billion}'.encode(),
        ("<!--" + "x" * 2000 + "-->" + billion).encode(),
        (f'<!DOCTYPE xml [<!ENTITY secret SYSTEM "file://{secret_path}">]><xml><ToUserName>gh</ToUserName>'
         f"{secret}<MsgType>text</MsgType></xml>").encode(),
        f'<!DOCTYPE xml [<!ENTITY % secret SYSTEM "file://{secret_path}"> %secret;]><xml/>'.encode(),
        f'<!DOCTYPE xml SYSTEM "file://{secret_path}"><xml><MsgType>text</MsgType></xml>'.encode(),
        ('<!DOCTYPE xml [<!ENTITY big "' + "x" * 20_000 + '">]><xml><ToUserName>gh</ToUserName><FromUserName>o'
         "</FromUserName><MsgType>text</MsgType><Content>" + "&big;" * 1_000 + "</Content></xml>").encode(),
        (f'<xml xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file://{secret_path}" parse="text"/>'
         "<MsgType>text</MsgType></xml>").encode(),
    ]


def xml_documents(names: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """<xml> with random elements, some of them with the expected names; values escaped, in CDATA or raw."""
    tag = st.one_of(st.sampled_from(names), st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,15}", fullmatch=True))
    value = st.one_of(text_blobs().map(escape), text_blobs().map(lambda v: f"<![CDATA[{v}]]>"), text_blobs(),
                      number_strings())
    element = st.tuples(tag, value).map(lambda pair: f"<{pair[0]}>{pair[1]}</{pair[0]}>")
    return st.lists(element, max_size=15).map(lambda elements: ("<xml>" + "".join(elements) + "</xml>").encode())


def huge_bodies() -> st.SearchStrategy[bytes]:
    return st.integers(64 * 1024 - 16, 70_000).map(lambda n: b"<xml><Content>" + b"a" * n + b"</Content></xml>")


def junk(names: tuple[str, ...], secret_path: str) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=3_000), text_blobs().map(str.encode), xml_documents(names),
                     st.sampled_from(bombs(secret_path)), huge_bodies())


@pytest.fixture
def secret_path(tmp_path) -> str:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return str(path)


def nothing_leaked(session, answer: str) -> None:
    assert SECRET not in answer and "lollollol" not in answer
    assert not any(SECRET in str(row) or "lollollol" in str(row) for rows in snapshot(session).values() for row in rows)


# ------------------------------------------------------------------------------------------- pay notify

PAY_FIELDS = ("appid", "mch_id", "openid", "out_trade_no", "transaction_id", "total_fee", "cash_fee", "result_code",
              "return_code", "sign", "nonce_str", "fee_type", "time_end")


def notify_fields(settings, out_trade_no, total_fee, transaction_id, result: str = "SUCCESS") -> dict:
    return {"appid": settings.app_id, "mch_id": settings.mch_id, "nonce_str": "n0nce", "openid": "o-buyer",
            "out_trade_no": out_trade_no, "transaction_id": transaction_id, "total_fee": total_fee,
            "cash_fee": total_fee, "fee_type": "CNY", "bank_type": "OTHERS", "is_subscribe": "N",
            "trade_type": "JSAPI", "time_end": "20250101120000", "result_code": result, "return_code": "SUCCESS"}


def signed_xml(fields: dict, key: str) -> bytes:
    return dict_to_xml(fields, calculate_signature(fields, key)).encode()


def notify_reply_of(response) -> str:
    """WeChat's answer: XML whose return_code is SUCCESS or FAIL."""
    assert response.mimetype == "application/xml"
    root = ElementTree.fromstring(response.data)
    return root.findtext("return_code")


@FUZZ
@given(data=st.data())
def test_a_notify_that_is_not_a_signed_notify_is_answered_fail_and_changes_no_order(world, secret_path, data):
    settings_ = pay_gateway(world.app.config).settings
    forged = st.builds(lambda no, fee, key: signed_xml(notify_fields(settings_, no, fee, "4200000000000000009"), key),
                       st.sampled_from(list(world.order_nos.values())), st.integers(1, 10**6),
                       st.sampled_from(["0" * 32, settings_.mch_key[:-1] + "x", ""]))
    body = data.draw(st.one_of(junk(PAY_FIELDS, secret_path), forged), label="body")
    world.app.config["PAY_NOTIFY_JUNK_RATE"] = "10000 per minute"  # every example refused and counted, none held
    with world.app.app_context():
        before = snapshot(db.session, skip=("refused_notifies", "rate_limit_counters"))
        counted = db.session.scalar(select(func.coalesce(func.sum(RefusedNotify.count), 0)))
    response = world.app.test_client().post("/wechat/pay/notify", data=body, content_type="text/xml")
    answer = answered(world, response)
    assert response.status_code in (400, 413) and notify_reply_of(response) == "FAIL"
    with world.app.app_context():
        # No payment event either: the notify is only counted.
        assert snapshot(db.session, skip=("refused_notifies", "rate_limit_counters")) == before
        assert db.session.scalar(select(func.sum(RefusedNotify.count))) == counted + 1
        nothing_leaked(db.session, answer)
        assert_consistent(db.session)


NOTIFY_RECORDS = ("payment_events", "refused_notifies", "rate_limit_counters")  # what any notify may write
TRANSACTIONS = ("4200000000000000001", "4200000000000000002", "4200000000000000003")  # shared by all examples


def notify_specs() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({
        "order": st.integers(0, 3),  # this example's two unpaid orders, its cancelled one, or none of ours
        "unknown_no": st.one_of(st.just("DQ0000000000"), text_blobs(), number_strings()),
        "amount": st.one_of(st.just("exact"), st.just("exact"), st.integers(-(10**20), 10**20), number_strings()),
        "transaction": st.one_of(st.sampled_from(TRANSACTIONS), text_blobs()),
        "merchant": st.sampled_from(["ours", "ours", "ours", "mch_id", "appid"]),
        "result": st.sampled_from(["SUCCESS", "SUCCESS", "SUCCESS", "FAIL"]),
    })


def notify_sequences() -> st.SearchStrategy[list[dict]]:
    """A few distinct notifies, arriving in any order and again and again, as WeChat resends."""
    return st.lists(notify_specs(), min_size=1, max_size=4).flatmap(
        lambda specs: st.lists(st.sampled_from(specs), min_size=len(specs), max_size=3 * len(specs)))


def expected_outcome(session, gateway, body: bytes) -> tuple[int, str | None]:
    """What a notify must do, judged from the state before it: (status, kind of the event it records)."""
    try:
        notification = gateway.parse_notification(body)
    except InvalidNotification:
        return 400, None  # counted as a refused notify, not a payment event
    if not notification.result_ok:
        return 200, None
    order = session.scalar(select(Order).where(Order.order_no == notification.out_trade_no))
    if order is None:
        return 400, PaymentEventKind.UNKNOWN_ORDER
    paid_by = session.scalar(select(Payment.order_id).where(Payment.transaction_id == notification.transaction_id))
    if (notification.total_fee, notification.mch_id, notification.appid) != (
            order.total_fen, gateway.settings.mch_id, gateway.settings.app_id) or paid_by not in (None, order.id):
        return 400, PaymentEventKind.MISMATCH  # another amount or merchant, or another order's transaction
    if order.status == OrderStatus.PENDING_PAYMENT:
        return 200, PaymentEventKind.ACCEPTED
    if order.status == OrderStatus.CANCELLED:  # one refund offer per WeChat transaction
        offers = select(PaymentEvent.id).where(PaymentEvent.kind == PaymentEventKind.AFTER_CANCEL)
        offered = session.scalar(offers.where(PaymentEvent.transaction_id == notification.transaction_id))
        return 200, PaymentEventKind.DUPLICATE if offered else PaymentEventKind.AFTER_CANCEL
    return 200, PaymentEventKind.DUPLICATE if paid_by == order.id else PaymentEventKind.DOUBLE_PAYMENT


@FUZZ
@given(notifies=notify_sequences())
def test_signed_notifies_with_fuzzed_values_pay_an_order_once_and_only_for_its_amount(world, notifies):
    app, gateway = world.app, pay_gateway(world.app.config)
    app.config["PAY_NOTIFY_JUNK_RATE"] = "10000 per minute"  # unparseable values are refused, never held
    order_nos = [buy(app, world.base), buy(app, world.base, quantity=2), buy(app, world.base)]
    with app.app_context():
        cancel_order(db.session, world.ids["buyer"], order_nos[2])
        totals = dict(db.session.execute(
            select(Order.order_no, Order.total_fen).where(Order.order_no.in_(order_nos))).all())
    client, accepted = app.test_client(), set()
    for spec in notifies:
        order_no = order_nos[spec["order"]] if spec["order"] < 3 else spec["unknown_no"]
        amount = totals.get(order_no, 100) if spec["amount"] == "exact" else spec["amount"]
        fields = notify_fields(gateway.settings, order_no, amount, spec["transaction"], spec["result"])
        if spec["merchant"] != "ours":
            fields[spec["merchant"]] = "wx0000000000other"
        body = signed_xml(fields, gateway.settings.mch_key)
        with app.app_context():
            status, kind = expected_outcome(db.session, gateway, body)
            before = snapshot(db.session, skip=NOTIFY_RECORDS)
            last_event = db.session.scalar(select(func.max(PaymentEvent.id)))
        response = client.post("/wechat/pay/notify", data=body, content_type="text/xml")
        answered(world, response)
        event(f"notify: {kind}")
        assert (response.status_code, notify_reply_of(response)) == (status, "SUCCESS" if status == 200 else "FAIL")
        with app.app_context():
            recorded = db.session.scalars(select(PaymentEvent).where(PaymentEvent.id > (last_event or 0))).all()
            assert [row.kind for row in recorded] == ([kind] if kind else [])
            assert all(row.needs_attention == (row.kind not in ("accepted", "duplicate")) for row in recorded)
            if kind == PaymentEventKind.ACCEPTED:
                order = db.session.scalar(select(Order).where(Order.order_no == order_no))
                assert order.status == OrderStatus.PAID and order.pickup_code and order.total_fen == totals[order_no]
                accepted.add(order_no)
            else:
                assert snapshot(db.session, skip=NOTIFY_RECORDS) == before
            assert_consistent(db.session)
    with app.app_context():
        for order_no in order_nos:
            paid = db.session.scalar(select(func.count()).select_from(PaymentEvent).where(
                PaymentEvent.out_trade_no == order_no, PaymentEvent.kind == PaymentEventKind.ACCEPTED))
            payments = db.session.scalar(
                select(func.count()).select_from(Payment).where(Payment.out_trade_no == order_no))
            assert paid == payments == (1 if order_no in accepted else 0)


# ------------------------------------------------------------------------------------- WeChat callback

CALLBACK_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType", "Event", "EventKey", "Content", "MsgId",
                   "Encrypt", "Ticket")
MSG_TYPES = ("event", "text", "image", "voice", "video", "location", "link", "device_event", "EVENT", "miniprogrampage")
EVENT_NAMES = ("subscribe", "unsubscribe", "SCAN", "scan", "CLICK", "VIEW", "LOCATION", "TEMPLATESENDJOBFINISH", "")


def wechat_message(fields: dict, wrapped: Callable[[str], str]) -> bytes:
    fields = {"ToUserName": "gh_dingqiao", "CreateTime": str(int(time.time())), "MsgId": "1234567890123456", **fields}
    return ("<xml>" + "".join(f"<{k}>{wrapped(v)}</{k}>" for k, v in fields.items()) + "</xml>").encode()


def wrappers() -> st.SearchStrategy[Callable[[str], str]]:
    return st.sampled_from([escape, lambda value: f"<![CDATA[{value}]]>"])


def referral_keys(codes: list[str]) -> tuple[str, ...]:
    return tuple(f"{prefix}ref_{code}" for code in codes for prefix in ("qrscene_", "")) + ("qrscene_123", "")


def wechat_messages(codes: list[str]) -> st.SearchStrategy[bytes]:
    """Messages and events shaped like WeChat's: plausible fields, a few of them fuzzed."""
    plausible = {"FromUserName": ("o-fan-1", "o-fan-2", "o-fan-3"), "MsgType": MSG_TYPES, "Event": EVENT_NAMES,
                 "EventKey": referral_keys(codes), "Content": ("订单", "退款", "你好")}
    return st.builds(wechat_message, form_of(plausible), wrappers())


def follows(codes: list[str]) -> st.SearchStrategy[bytes]:
    """Follows and scans of members' QR codes (the events that bind), from any sender a valid XML can name."""
    legal = st.characters(blacklist_categories=("Cs", "Cc", "Cn"))  # the characters XML may carry
    senders = st.one_of(st.sampled_from(["o-fan-1", "o-fan-2", "o" * 65, "好" * 300]),
                        st.text(legal, min_size=1, max_size=300))
    return st.builds(wechat_message, st.fixed_dictionaries({
        "FromUserName": senders, "MsgType": st.just("event"), "Event": st.sampled_from(["subscribe", "SCAN"]),
        "EventKey": st.sampled_from(referral_keys(codes))}), wrappers())


@pytest.fixture(params=["plain", "safe mode"])
def callback_mode(request, app_config) -> str:
    if request.param == "safe mode":
        app_config["WECHAT_ENCODING_AES_KEY"] = AES_KEY
    return request.param


def callback_request(crypto: WeChatCrypto | None, body: bytes, signature: str) -> tuple[bytes, dict]:
    """The body and query as WeChat would send them (encrypted in safe mode), or forged one way or another."""
    if signature == "missing":
        return body, {}
    if signature == "forged":
        return body, signed("not-our-token")
    if crypto is None or signature == "plain":
        return body, signed()
    envelope, query = encrypted(crypto, body.decode("utf-8", "replace").encode())
    if signature == "wrong msg_signature":
        query["msg_signature"] = "0" * 40
    return envelope, query


def callback_reply(crypto: WeChatCrypto | None, response) -> ElementTree.Element:
    """A passive reply is well-formed XML; in safe mode an envelope whose decrypted message is."""
    assert response.mimetype == "application/xml"
    if crypto is not None:
        envelope = ElementTree.fromstring(response.data)
        plain = crypto.decrypt_message(response.data, envelope.findtext("MsgSignature"), envelope.findtext("TimeStamp"),
                                       envelope.findtext("Nonce"))
        return ElementTree.fromstring(plain)
    return ElementTree.fromstring(response.data)


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_the_wechat_callback_answers_anything_without_a_500_and_binds_only_when_signed(callback_mode, world,
                                                                                      secret_path, data):
    app = world.app
    crypto = WeChatCrypto(TOKEN, AES_KEY, app.config["WECHAT_APP_ID"]) if callback_mode == "safe mode" else None
    codes = list(world.codes.values())
    # Follows and scans, which write, are drawn more often than the rest.
    body = data.draw(st.one_of(follows(codes), follows(codes), wechat_messages(codes),
                               junk(CALLBACK_FIELDS, secret_path)), label="body")
    forged = ["forged", "missing"] + (["wrong msg_signature", "plain"] if crypto else [])
    signature = data.draw(st.one_of(st.just("valid"), st.sampled_from(forged)), label="signature")
    sent, query = callback_request(crypto, body, signature)
    with app.app_context():
        before = snapshot(db.session)
        bindings = {binding.user_id for binding in db.session.scalars(select(ReferralBinding))}
    response = app.test_client().post("/wechat/callback", query_string=query, data=sent, content_type="text/xml")
    answer = answered(world, response)
    event(f"{signature}: {response.status_code}")
    if signature != "valid":
        assert response.status_code in (400, 403, 413)
    if response.status_code == 200:
        if answer != "success":
            reply = callback_reply(crypto, response)
            assert reply.tag == "xml" and reply.findtext("MsgType") == "text" and reply.findtext("ToUserName")
    else:
        assert response.status_code in (400, 403, 413) and response.mimetype == "text/plain" and len(answer) < 100
    with app.app_context():
        if response.status_code != 200:
            assert snapshot(db.session) == before
        for binding in db.session.scalars(select(ReferralBinding).where(ReferralBinding.user_id.not_in(bindings))):
            # A new binding only through a signed event that names the upline's code.
            assert signature == "valid" and binding.upline.referral_code.encode() in body
            event("bound")
        nothing_leaked(db.session, answer)
        assert_consistent(db.session)


# --------------------------------------------------------------- the data pages' query string and bulk ids

DATA_TABLES = ("categories", "products", "regions", "factory_stores", "outlets", "users", "orders", "payments",
               "refunds", "commission_lines", "ledger_entries", "wallets", "withdrawals", "audit_log", "admin_users")
BULK_ACTIONS = (("products", "on_sale"), ("products", "off_sale"), ("outlets", "suspend"), ("outlets", "reopen"),
                ("factory_stores", "suspend"), ("factory_stores", "reopen"))


BOOKKEEPING = ("login_sessions",)  # a logged-in session's last-seen time, touched now and then by any request


def superadmin(world: World):
    """A client of a superadmin, who may open every data page (made once per world)."""
    if "superadmin" not in world.clients:
        with world.app.app_context():
            boss_id = create_admin(db.session, "boss", "long-enough-password", AdminRole.SUPERADMIN).id
        client = world.app.test_client()
        log_in_admin(client, boss_id)
        world.clients["superadmin"] = (client, csrf_token(client))
    return world.clients["superadmin"]


def a_page_number(raw: str) -> bool:
    """What the data lists take as ?page=: blank (the first page) or a plain number whose OFFSET fits 64 bits."""
    return raw == "" or (parse_id(raw) is not None and parse_id(raw) <= MAX_ID // max(DataView.page_size_options))


@FUZZ
@given(data=st.data())
def test_any_page_number_on_any_data_list_is_a_page_or_a_404_and_writes_nothing(world, data):
    client, _token = superadmin(world)
    table = data.draw(st.sampled_from(DATA_TABLES), label="table")
    page = data.draw(st.one_of(number_strings(), text_blobs(), st.integers(-(10**30), 10**30).map(str),
                               st.sampled_from(("99999999999999999999999", "-1", "abc", "0", "2", "1\x00"))), label="page")
    with world.app.app_context():
        before = snapshot(db.session, BOOKKEEPING)
    response = client.get(f"/admin/data/{table}/", query_string={"page": page})
    body = answered(world, response)
    if "\x00" in page:  # refused for every page before any view reads it
        assert response.status_code == 400 and CJK.search(shown_message(body)), (page, response.status_code)
    elif a_page_number(page):
        assert response.status_code == 200, (page, body[:300])
    else:
        event("refused page")
        assert response.status_code == 404, (page, response.status_code)
        assert "没有这一页" in shown_message(body)
    with world.app.app_context():
        assert not changed_tables(before, snapshot(db.session, BOOKKEEPING))


@FUZZ
@given(data=st.data())
def test_a_bulk_action_with_junk_row_ids_is_refused_in_chinese_and_writes_nothing(world, data):
    """Junk among the chosen rows refuses the whole action before any row is touched (back to the list with
    the reason: tests/test_admin_rights.py keeps that answer)."""
    client, token = superadmin(world)
    table, action = data.draw(st.sampled_from(BULK_ACTIONS), label="action")
    real = {"products": world.ids["product"], "outlets": world.ids["outlet"]}.get(table)
    junk = data.draw(st.lists(st.one_of(number_strings(), text_blobs()).filter(lambda raw: parse_id(raw) is None),
                              min_size=1, max_size=3), label="junk")
    rowids = data.draw(st.permutations(junk + ([str(real)] if real else [])), label="rowids")
    with world.app.app_context():
        before = snapshot(db.session, BOOKKEEPING)
    response = client.post(f"/admin/data/{table}/action/", data={"csrf_token": token, "action": action,
                                                                 "rowid": rowids})
    body = answered(world, response)
    assert response.status_code == 400, response.status_code  # a 4xx, never a 500 or a write
    if "\x00" in "".join(rowids):  # a NUL: refused for every form before any view reads it
        event("refused before the view")
        assert CJK.search(shown_message(body)), body[:300]
    else:
        assert "所选记录无效" in body, body[:300]
    with world.app.app_context():
        assert not changed_tables(before, snapshot(db.session, BOOKKEEPING))
