"""The member's path from cart to a paid order with a pickup code, through the real wechatpy code against
the fake WeChat server, and every way a payment notify can go wrong."""
import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dingqiao import create_app
from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    Identity,
    Order,
    OrderStatus,
    OutboxMessage,
    Outlet,
    Payment,
    PaymentEvent,
    Product,
    Refund,
    RefundStatus,
    StockLevel,
    StockMovement,
    User,
)
from dingqiao.models.base import utcnow
from dingqiao.services import Forbidden
from dingqiao.services.accounts import create_admin
from dingqiao.services.orders import OrderError, place_order
from dingqiao.services.refunds import RefundError, approve_refund, reject_refund, request_refund
from dingqiao.services.stock import OutOfStock
from dingqiao.wechat import pay_gateway
from tests.conftest import csrf_token, open_for_business, run_concurrently
from tests.factories import make_outlet, make_product, make_user, stock
from tests.fake_wechat import FakeWeChatUser
from tests.test_access import log_in
from tests.test_wechat_login import wechat_round_trip

SUCCESS = "<return_code><![CDATA[SUCCESS]]></return_code>"


@dataclass
class Shop:
    member_id: int
    outlet_id: int
    location_id: int
    product_id: int
    price_fen: int


@pytest.fixture
def shop(app):
    with app.app_context():
        member = make_user("买家", openid="o-buyer")
        outlet = make_outlet(make_user("店主"))
        product = make_product(3990, name="顶俏浓缩洗衣液 2kg")
        stock(outlet, product, 10)
        return Shop(member.id, outlet.id, outlet.location_id, product.id, 3990)


def level(app, shop: Shop) -> tuple[int, int]:
    with app.app_context():
        row = db.session.scalar(select(StockLevel).where(StockLevel.location_id == shop.location_id,
                                                         StockLevel.product_id == shop.product_id))
        return row.on_hand, row.reserved


def order_state(app, order_no: str) -> Order:
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        db.session.expunge(order)
        return order


def events(app) -> list[tuple[str, bool]]:
    with app.app_context():
        return [(e.kind, e.needs_attention) for e in db.session.scalars(select(PaymentEvent).order_by(PaymentEvent.id))]


def place(app, shop: Shop, quantity: int = 1, user_id: int | None = None, **kwargs) -> str:
    with app.app_context():
        user = db.session.get(User, user_id or shop.member_id)
        order = place_order(db.session, user, shop.outlet_id, {shop.product_id: quantity}, timeout_minutes=15,
                            from_cart=False, **kwargs)
        return order.order_no


def start_wechat_payment(client, order_no: str) -> str:
    """Tap 微信支付: our server asks WeChat for a prepay id and hands the JS bridge its parameters."""
    response = client.post(f"/orders/{order_no}/pay", headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client)})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_data(as_text=True)
    match = re.search(r"prepay_id=(\w+)", body)
    assert match and "paySign" in body and "data-wechat-pay" in body
    return match.group(1)


def post_notify(client, body: bytes):
    return client.post("/wechat/pay/notify", data=body, content_type="text/xml")


# ------------------------------------------------------------------------------------------ the whole path

def test_member_browses_searches_buys_pays_and_gets_a_pickup_code(app, client, fake_wechat, shop):
    fake_wechat.current_user = FakeWeChatUser("o-new-member", "新会员")
    wechat_round_trip(client, fake_wechat, entry="/me/")
    found = client.get("/?q=洗衣液", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "顶俏浓缩洗衣液 2kg" in found and "<html" not in found

    token = csrf_token(client)
    added = client.post("/cart/items", data={"product_id": shop.product_id, "quantity": 2},
                        headers={"HX-Request": "true", "X-CSRFToken": token})
    assert added.status_code == 200 and "已加入购物车" in added.get_data(as_text=True)
    checkout = client.get("/checkout/").get_data(as_text=True)
    assert f'name="outlet_id" value="{shop.outlet_id}"' in checkout and "¥79.80" in checkout
    assert 'name="phone"' in checkout  # a member who logged in through WeChat and never bought: asked once

    placed = client.post("/checkout/", data={"outlet_id": shop.outlet_id, "csrf_token": token, "phone": "13800138000"})
    assert placed.status_code == 302
    order_no = placed.headers["Location"].rsplit("/", 1)[1]
    assert "待支付" in client.get(f"/orders/{order_no}").get_data(as_text=True)
    assert level(app, shop) == (10, 2)
    assert client.get("/cart/").get_data(as_text=True).count("dq-cart__line") == 0  # the cart became the order

    prepay_id = start_wechat_payment(client, order_no)
    at_wechat = fake_wechat.orders[order_no]
    assert at_wechat.total_fee == 7980 and at_wechat.openid == "o-new-member"
    assert at_wechat.prepay_id == prepay_id
    assert at_wechat.notify_url == "http://localhost/wechat/pay/notify"

    answer = post_notify(client, fake_wechat.pay(order_no))
    assert answer.status_code == 200 and SUCCESS in answer.get_data(as_text=True)

    order = order_state(app, order_no)
    assert order.status == OrderStatus.PAID and re.fullmatch(r"\d{12}", order.pickup_code)
    page = client.get(f"/orders/{order_no}").get_data(as_text=True)
    assert "待自提" in page and f"{order.pickup_code[:4]} {order.pickup_code[4:8]} {order.pickup_code[8:]}" in page
    qr = client.get(f"/orders/{order_no}/pickup-qr.svg")
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml" and b"<svg" in qr.data
    assert "no-store" in qr.headers["Cache-Control"] and "private" in qr.headers["Cache-Control"]
    assert level(app, shop) == (10, 2)  # still reserved until pickup
    with app.app_context():
        messages = db.session.scalars(select(OutboxMessage)).all()
        assert [(m.event, m.dedup_key) for m in messages] == [("order_paid", f"order_paid:{order.id}")]
        payment = db.session.scalar(select(Payment))
        assert (payment.status, payment.amount_fen) == ("paid", 7980) and payment.transaction_id


def test_a_second_tap_on_pay_reuses_the_prepay_id(app, client, fake_wechat, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    assert start_wechat_payment(client, order_no) == start_wechat_payment(client, order_no)
    assert len(fake_wechat.calls("/mch/pay/unifiedorder")) == 1


# ------------------------------------------------------------------------------------------- the notify

def test_duplicate_notify_changes_nothing_and_is_answered_success(app, client, fake_wechat, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    notify = fake_wechat.pay(order_no)
    assert SUCCESS in post_notify(client, notify).get_data(as_text=True)
    code = order_state(app, order_no).pickup_code
    for _ in range(3):
        again = post_notify(client, notify)
        assert again.status_code == 200 and SUCCESS in again.get_data(as_text=True)
    assert order_state(app, order_no).pickup_code == code
    assert events(app) == [("accepted", False)] + [("duplicate", False)] * 3
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


@pytest.mark.parametrize(
    ("tamper", "kind"),
    [
        ({"key": "0" * 32}, None),  # counted as a refused notify (tests/test_security_notifies.py), not queued
        ({"total_fee": 1}, "mismatch"),
    ],
    ids=["forged signature", "wrong amount"],
)
def test_forged_or_mismatched_notify_is_refused_and_recorded(app, client, fake_wechat, shop, tamper, kind):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    answer = post_notify(client, fake_wechat.notification_for(order_no, **tamper))
    assert answer.status_code == 400 and "FAIL" in answer.get_data(as_text=True)
    assert order_state(app, order_no).status == OrderStatus.PENDING_PAYMENT
    assert events(app) == ([(kind, True)] if kind else [])
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_notify_from_another_merchant_is_a_mismatch(app, client, fake_wechat, shop):
    """Signed correctly, but for another merchant's account: never trusted for our order."""
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    app.config["WECHAT_MCH_ID"] = "1999999999"
    answer = post_notify(client, fake_wechat.pay(order_no))
    assert answer.status_code == 400
    assert order_state(app, order_no).status == OrderStatus.PENDING_PAYMENT
    assert events(app) == [("mismatch", True)]


def test_notify_for_an_unknown_order_is_refused(app, client, shop):
    with app.app_context():
        notify = pay_gateway(app.config).signed_notification(
            out_trade_no="DQ20990101000000123456", transaction_id="4200000000000001", total_fee=3990,
            openid="o-buyer")
    answer = post_notify(client, notify)
    assert answer.status_code == 400 and "FAIL" in answer.get_data(as_text=True)
    assert events(app) == [("unknown_order", True)]


def test_a_tampered_order_number_breaks_the_signature(app, client, fake_wechat, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    other_no = place(app, shop)
    tampered = fake_wechat.pay(order_no).replace(order_no.encode(), other_no.encode())
    assert post_notify(client, tampered).status_code == 400
    assert order_state(app, other_no).status == OrderStatus.PENDING_PAYMENT
    assert events(app) == []  # counted as a refused notify (tests/test_security_notifies.py), not queued


@pytest.mark.parametrize(
    "body",
    [b"", b"not xml", b"<xml><a>1</a>", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><xml>&e;</xml>',
     "<xml>" + "长" * 70000 + "</xml>"],
    ids=["empty", "text", "broken", "dtd", "huge"],
)
def test_malformed_notify_never_500s_and_changes_nothing(app, client, shop, body):
    order_no = place(app, shop)
    answer = post_notify(client, body.encode() if isinstance(body, str) else body)
    assert answer.status_code in (400, 413)
    assert "<return_code><![CDATA[FAIL]]></return_code>" in answer.get_data(as_text=True)
    assert order_state(app, order_no).status == OrderStatus.PENDING_PAYMENT


def test_money_for_a_cancelled_order_is_recorded_and_finance_sends_it_back(app, client, fake_wechat, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    notify = fake_wechat.pay(order_no)  # paid at WeChat, but the notify is late ...
    with app.app_context():  # ... and the order was cancelled without asking WeChat (the case we guard against)
        from dingqiao.services.orders import cancel_order

        cancel_order(db.session, shop.member_id, order_no)
    assert level(app, shop) == (10, 0)
    answer = post_notify(client, notify)
    assert SUCCESS in answer.get_data(as_text=True)  # we have the money; WeChat must stop resending
    assert order_state(app, order_no).status == OrderStatus.CANCELLED
    assert events(app) == [("after_cancel", True)]
    assert level(app, shop) == (10, 0)

    with app.app_context():
        create_admin(db.session, "fin6", "long-enough-pw", AdminRole.FINANCE)
    staff = app.test_client()
    staff.post("/admin/login", data={"username": "fin6", "password": "long-enough-pw", "csrf_token": csrf_token(staff)})
    queue = staff.get("/admin/payment-events").get_data(as_text=True)
    assert order_no in queue and "已取消订单收到付款" in queue
    with app.app_context():
        event_id = db.session.scalar(select(PaymentEvent.id))
    staff.post(f"/admin/payment-events/{event_id}/refund", data={"csrf_token": csrf_token(staff)})
    again = staff.post(f"/admin/payment-events/{event_id}/refund", data={"csrf_token": csrf_token(staff)})
    assert again.status_code == 409
    assert len(fake_wechat.calls("/mch/secapi/pay/refund")) == 1
    assert fake_wechat.orders[order_no].trade_state == "REFUND"
    assert "没有需要处理的付款记录" in staff.get("/admin/payment-events").get_data(as_text=True)


def test_cancelling_an_order_closes_it_at_wechat_first(app, client, fake_wechat, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    client.post(f"/orders/{order_no}/cancel", headers={"X-CSRFToken": csrf_token(client)})
    assert order_state(app, order_no).status == OrderStatus.CANCELLED
    assert fake_wechat.orders[order_no].trade_state == "CLOSED"  # the pay sheet can no longer take money


def test_cancelling_an_order_that_was_just_paid_marks_it_paid_instead(app, client, fake_wechat, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    fake_wechat.pay(order_no)  # paid; the notify has not arrived yet
    refused = client.post(f"/orders/{order_no}/cancel", headers={"X-CSRFToken": csrf_token(client), "HX-Request": "true"})
    assert refused.status_code == 409 and "已支付" in refused.get_data(as_text=True)
    assert order_state(app, order_no).status == OrderStatus.PAID


def test_paid_transition_and_its_settlement_share_one_transaction(app, client, fake_wechat, shop, monkeypatch):
    import dingqiao.services.payments as payments

    def settlement_fails(*_args):
        raise RuntimeError("settlement failed")

    monkeypatch.setattr(payments, "on_order_paid", settlement_fails)
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    answer = post_notify(client, fake_wechat.pay(order_no))
    assert answer.status_code == 500  # not SUCCESS: WeChat will resend
    order = order_state(app, order_no)
    assert order.status == OrderStatus.PENDING_PAYMENT and order.pickup_code is None
    assert events(app) == []
    monkeypatch.undo()
    assert SUCCESS in post_notify(client, fake_wechat.pay(order_no)).get_data(as_text=True)
    assert order_state(app, order_no).status == OrderStatus.PAID


def test_i_have_paid_asks_wechat_when_the_notify_never_came(app, client, fake_wechat, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    token = csrf_token(client)
    client.post(f"/orders/{order_no}/check-payment", headers={"X-CSRFToken": token})
    assert order_state(app, order_no).status == OrderStatus.PENDING_PAYMENT  # WeChat says NOTPAY
    fake_wechat.pay(order_no)  # paid, but the notify is lost
    client.post(f"/orders/{order_no}/check-payment", headers={"X-CSRFToken": token})
    assert order_state(app, order_no).status == OrderStatus.PAID
    assert events(app) == [("accepted", False)]


def test_demo_pay_goes_through_the_signed_notify_handler(app_config, tmp_path):
    app_config.update(DINGQIAO_DEMO=True, WECHAT_APP_ID="", WECHAT_APP_SECRET="", WECHAT_MCH_ID="", WECHAT_MCH_KEY="")
    demo = create_app(app_config)
    with demo.app_context():
        db.create_all()
        open_for_business(db.session)
    try:
        with demo.app_context():
            member = make_user("演示", openid="demo-x")
            outlet = make_outlet(make_user("店"))
            product = make_product(1990)
            stock(outlet, product, 3)
            order = place_order(db.session, member, outlet.id, {product.id: 1}, timeout_minutes=15, from_cart=False)
            order_no, member_id = order.order_no, member.id
        client = demo.test_client()
        log_in(client, member_id)
        page = client.get(f"/orders/{order_no}").get_data(as_text=True)
        assert "模拟支付" in page and "微信支付" not in page
        client.post(f"/orders/{order_no}/demo-pay", headers={"X-CSRFToken": csrf_token(client)})
        with demo.app_context():
            assert db.session.scalar(select(Order.status).where(Order.order_no == order_no)) == OrderStatus.PAID
            assert [e.kind for e in db.session.scalars(select(PaymentEvent))] == ["accepted"]
    finally:
        with demo.app_context():
            db.drop_all()
            db.engine.dispose()


def test_demo_pay_does_not_exist_outside_demo_mode(app, client, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    assert client.post(f"/orders/{order_no}/demo-pay", headers={"X-CSRFToken": csrf_token(client)}).status_code == 404
    assert order_state(app, order_no).status == OrderStatus.PENDING_PAYMENT


# ------------------------------------------------------------------------------------ prices and ownership

@pytest.mark.parametrize(("identity", "expected"), [(Identity.MEMBER, 3990), (Identity.OUTLET, 3192),
                                                     (Identity.FACTORY, 2593)])
def test_each_identity_is_charged_its_own_price(app, shop, identity, expected):
    with app.app_context():
        buyer_id = make_user("买家", identity=identity).id
    order = order_state(app, place(app, shop, quantity=2, user_id=buyer_id))
    assert order.total_fen == 2 * expected and order.price_identity == identity
    with app.app_context():
        item = db.session.scalar(select(Order).where(Order.id == order.id)).items[0]
        assert (item.unit_price_fen, item.quantity, item.subtotal_fen) == (expected, 2, 2 * expected)


def test_someone_elses_order_cannot_be_paid_cancelled_or_shown(app, client, shop):
    order_no = place(app, shop)
    with app.app_context():
        stranger = make_user("路人").id
    log_in(client, stranger)
    token = csrf_token(client)
    for path in (f"/orders/{order_no}", f"/orders/{order_no}/pickup-qr.svg"):
        assert client.get(path).status_code == 404
    for action in ("pay", "cancel", "check-payment", "refund"):
        assert client.post(f"/orders/{order_no}/{action}", data={"reason": "x"},
                           headers={"X-CSRFToken": token}).status_code == 404
    assert order_state(app, order_no).status == OrderStatus.PENDING_PAYMENT


# ------------------------------------------------------------------------------------ stock and expiry

def test_fifty_concurrent_buyers_for_ten_units_get_exactly_ten_orders(app, shop):
    with app.app_context():
        buyers = [make_user(f"抢购{i}").id for i in range(50)]
    def buy(user_id: int) -> str:
        user = db.session.get(User, user_id)
        return place_order(db.session, user, shop.outlet_id, {shop.product_id: 1}, timeout_minutes=15,
                           from_cart=False).order_no

    outcomes = run_concurrently(app, buy, [(user_id,) for user_id in buyers])
    placed = [o for o in outcomes if isinstance(o, str)]
    sold_out = [o for o in outcomes if isinstance(o, OutOfStock)]
    assert len(placed) == 10 and len(sold_out) == 40, outcomes
    assert level(app, shop) == (10, 10)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 10  # refused orders left nothing
        reserved = db.session.scalar(select(func.sum(StockMovement.reserved_delta)))
        assert reserved == 10


def test_an_expired_unpaid_order_releases_its_stock_when_touched(app, client, shop):
    order_no = place(app, shop, quantity=3, now=utcnow() - timedelta(minutes=16))
    assert level(app, shop) == (10, 3)
    log_in(client, shop.member_id)
    page = client.get(f"/orders/{order_no}").get_data(as_text=True)
    assert "已取消" in page and "超时未支付" in page
    assert level(app, shop) == (10, 0)


def test_the_cron_command_cancels_expired_orders_and_asks_wechat_first(app, client, fake_wechat, shop):
    stale = place(app, shop, now=utcnow() - timedelta(minutes=30))
    fresh = place(app, shop)
    paid_late = place(app, shop, now=utcnow() - timedelta(minutes=30))
    log_in(client, shop.member_id)
    with app.app_context():
        db.session.execute(
            Order.__table__.update().where(Order.order_no == paid_late).values(expires_at=utcnow() + timedelta(minutes=5))
        )
        db.session.commit()
    start_wechat_payment(client, paid_late)
    fake_wechat.pay(paid_late)  # paid at WeChat, the notify lost
    with app.app_context():
        db.session.execute(
            Order.__table__.update().where(Order.order_no == paid_late).values(expires_at=utcnow() - timedelta(minutes=1))
        )
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["cancel-expired-orders"])
    assert result.exit_code == 0 and "Cancelled 1" in result.output
    assert order_state(app, stale).status == OrderStatus.CANCELLED
    assert order_state(app, fresh).status == OrderStatus.PENDING_PAYMENT
    assert order_state(app, paid_late).status == OrderStatus.PAID
    assert level(app, shop) == (10, 2)


def test_an_order_at_wechat_is_closed_there_before_it_is_cancelled(app, client, fake_wechat, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    with app.app_context():
        db.session.execute(
            Order.__table__.update().where(Order.order_no == order_no).values(expires_at=utcnow() - timedelta(hours=1))
        )
        db.session.commit()
    # Looking at it never cancels an order that reached WeChat: the money may still be on its way.
    client.get(f"/orders/{order_no}")
    assert order_state(app, order_no).status == OrderStatus.PENDING_PAYMENT
    app.test_cli_runner().invoke(args=["cancel-expired-orders"])
    assert order_state(app, order_no).status == OrderStatus.CANCELLED
    assert fake_wechat.orders[order_no].trade_state == "CLOSED"


def test_cancel_releases_stock_and_a_paid_order_cannot_be_cancelled(app, client, fake_wechat, shop):
    first, second = place(app, shop, quantity=2), place(app, shop, quantity=1)
    log_in(client, shop.member_id)
    token = csrf_token(client)
    client.post(f"/orders/{first}/cancel", headers={"X-CSRFToken": token})
    assert order_state(app, first).status == OrderStatus.CANCELLED and level(app, shop) == (10, 1)
    client.post(f"/orders/{first}/cancel", headers={"X-CSRFToken": token})  # twice: same answer, no double release
    assert level(app, shop) == (10, 1)
    start_wechat_payment(client, second)
    post_notify(client, fake_wechat.pay(second))
    refused = client.post(f"/orders/{second}/cancel", headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert refused.status_code == 409 and "不能取消" in refused.get_data(as_text=True)
    assert order_state(app, second).status == OrderStatus.PAID


def test_an_empty_or_stale_cart_places_no_order(app, shop):
    with app.app_context():
        member = db.session.get(User, shop.member_id)
        with pytest.raises(OrderError, match="购物车"):
            place_order(db.session, member, shop.outlet_id, {}, timeout_minutes=15)
        # The cart line is already gone (a second tap): refused rather than placed twice.
        with pytest.raises(OrderError, match="购物车已变化"):
            place_order(db.session, member, shop.outlet_id, {shop.product_id: 1}, timeout_minutes=15)
        assert db.session.scalar(select(func.count()).select_from(Order)) == 0


# ------------------------------------------------------------------------------------------------ refunds

def test_refund_request_then_finance_approval_refunds_at_wechat_and_releases_stock(app, client, fake_wechat, shop):
    order_no = place(app, shop, quantity=2)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    post_notify(client, fake_wechat.pay(order_no))
    token = csrf_token(client)
    blank = client.post(f"/orders/{order_no}/refund", data={"reason": " \n "},
                        headers={"X-CSRFToken": token, "HX-Request": "true"})
    # Said next to the reason (the order page's refund form has its place: app.js moves it there), nothing opened.
    assert blank.status_code >= 400 and "请填写退款原因" in blank.get_data(as_text=True)
    assert blank.headers["DQ-Field"] == "reason"
    assert 'data-field-slot="reason"' in client.get(f"/orders/{order_no}").get_data(as_text=True)
    assert order_state(app, order_no).after_sales_open is False
    client.post(f"/orders/{order_no}/refund", data={"reason": "买错了"}, headers={"X-CSRFToken": token})
    again = client.post(f"/orders/{order_no}/refund", data={"reason": "再次"},
                        headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert again.status_code == 409 and "处理中" in again.get_data(as_text=True)
    assert order_state(app, order_no).after_sales_open is True
    with app.app_context():
        operator = create_admin(db.session, "ops", "long-enough-pw", AdminRole.OPERATOR)
        finance = create_admin(db.session, "fin", "long-enough-pw", AdminRole.FINANCE)
        refund_id = db.session.scalar(select(Refund.id))
        gateway = pay_gateway(app.config)
        with pytest.raises(Forbidden):
            approve_refund(db.session, gateway, operator, refund_id)
        refund = approve_refund(db.session, gateway, finance, refund_id)
        assert refund.status == RefundStatus.SUCCEEDED
        with pytest.raises(RefundError):
            approve_refund(db.session, gateway, finance, refund_id)  # a second click refunds nothing
    assert len(fake_wechat.calls("/mch/secapi/pay/refund")) == 1
    order = order_state(app, order_no)
    assert order.status == OrderStatus.REFUNDED and order.after_sales_open is False
    assert level(app, shop) == (10, 0)
    with app.app_context():
        assert {m.event for m in db.session.scalars(select(OutboxMessage))} == {"order_paid", "order_refunded"}


def test_rejected_refund_reopens_the_order_for_pickup(app, client, fake_wechat, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    post_notify(client, fake_wechat.pay(order_no))
    with app.app_context():
        request_refund(db.session, shop.member_id, order_no, "不想要了")
        finance = create_admin(db.session, "fin2", "long-enough-pw", AdminRole.FINANCE)
        refund_id = db.session.scalar(select(Refund.id))
        with pytest.raises(RefundError, match="拒绝原因"):
            reject_refund(db.session, finance, refund_id, "  ")
        reject_refund(db.session, finance, refund_id, "已过退款期")
    order = order_state(app, order_no)
    assert order.status == OrderStatus.PAID and order.after_sales_open is False
    assert level(app, shop) == (10, 1)


def test_refund_of_an_unpaid_order_is_refused(app, shop):
    order_no = place(app, shop)
    with app.app_context():
        with pytest.raises(RefundError, match="已支付"):
            request_refund(db.session, shop.member_id, order_no, "理由")
        assert db.session.scalar(select(func.count()).select_from(Refund)) == 0


def test_finance_reviews_refunds_on_the_admin_page_and_an_operator_cannot(app, client, fake_wechat, shop):
    paid = []
    log_in(client, shop.member_id)
    for reason in ("买错了", "不需要了"):
        order_no = place(app, shop)
        start_wechat_payment(client, order_no)
        post_notify(client, fake_wechat.pay(order_no))
        with app.app_context():
            request_refund(db.session, shop.member_id, order_no, reason)
        paid.append(order_no)
    with app.app_context():
        create_admin(db.session, "ops3", "long-enough-pw", AdminRole.OPERATOR)
        create_admin(db.session, "fin3", "long-enough-pw", AdminRole.FINANCE)
        first_id, second_id = db.session.scalars(select(Refund.id).order_by(Refund.id)).all()

    staff = app.test_client()
    staff.post("/admin/login", data={"username": "ops3", "password": "long-enough-pw", "csrf_token": csrf_token(staff)})
    listing = staff.get("/admin/refunds").get_data(as_text=True)
    assert paid[0] in listing and "买错了" in listing
    refused = staff.post(f"/admin/refunds/{first_id}/approve", data={"csrf_token": csrf_token(staff)})
    assert refused.status_code == 403 and "财务" in refused.get_data(as_text=True)
    assert order_state(app, paid[0]).status == OrderStatus.PAID

    staff.post("/admin/logout", data={"csrf_token": csrf_token(staff)})
    staff.post("/admin/login", data={"username": "fin3", "password": "long-enough-pw", "csrf_token": csrf_token(staff)})
    assert staff.post(f"/admin/refunds/{first_id}/approve", data={"csrf_token": csrf_token(staff)}).status_code == 302
    empty_reason = staff.post(f"/admin/refunds/{second_id}/reject", data={"csrf_token": csrf_token(staff), "reason": ""})
    assert empty_reason.status_code == 409 and "拒绝原因" in empty_reason.get_data(as_text=True)
    # From the queue (htmx): said next to the row's reason input, which has its place; then the whole queue again.
    assert f'id="reject-{second_id}-reason-error"' in staff.get("/admin/refunds").get_data(as_text=True)
    blank = staff.post(f"/admin/refunds/{second_id}/reject", data={"csrf_token": csrf_token(staff), "reason": "  "},
                       headers={"HX-Request": "true"})
    assert blank.headers["DQ-Field"] == "reason" and "拒绝原因" in blank.get_data(as_text=True)
    assert order_state(app, paid[1]).status == OrderStatus.PAID
    done = staff.post(f"/admin/refunds/{second_id}/reject", data={"csrf_token": csrf_token(staff), "reason": "超出售后期"},
                      headers={"HX-Request": "true"})
    assert done.status_code == 204 and done.headers["HX-Redirect"] == "/admin/refunds"
    assert order_state(app, paid[0]).status == OrderStatus.REFUNDED
    assert order_state(app, paid[1]).status == OrderStatus.PAID
    assert "没有待处理的退款" in staff.get("/admin/refunds").get_data(as_text=True)


def test_a_second_refund_request_after_a_rejection_gets_its_own_number(app, client, fake_wechat, shop):
    order_no = place(app, shop)
    log_in(client, shop.member_id)
    start_wechat_payment(client, order_no)
    post_notify(client, fake_wechat.pay(order_no))
    with app.app_context():
        finance = create_admin(db.session, "fin5", "long-enough-pw", AdminRole.FINANCE)
        for attempt in range(3):
            refund = request_refund(db.session, shop.member_id, order_no, f"第{attempt + 1}次")
            if attempt < 2:
                reject_refund(db.session, finance, refund.id, "请联系客服")
        numbers = db.session.scalars(select(Refund.out_refund_no).order_by(Refund.id)).all()
        assert len(set(numbers)) == 3 and numbers[-1].endswith("03")
        approve_refund(db.session, pay_gateway(app.config), finance, refund.id)
    assert order_state(app, order_no).status == OrderStatus.REFUNDED


def test_a_product_taken_off_sale_does_not_block_checkout(app, client, shop):
    with app.app_context():
        other = make_product(990, name="下架商品")
        outlet = db.session.get(Outlet, shop.outlet_id)
        stock(outlet, other, 5)
        other_id = other.id
    log_in(client, shop.member_id)
    token = csrf_token(client)
    for product_id in (shop.product_id, other_id):
        client.post("/cart/items", data={"product_id": product_id, "quantity": 1}, headers={"X-CSRFToken": token})
    with app.app_context():
        db.session.get(Product, other_id).is_on_sale = False
        db.session.commit()
    placed = client.post("/checkout/", data={"outlet_id": shop.outlet_id, "csrf_token": token})
    assert placed.status_code == 302
    order = order_state(app, placed.headers["Location"].rsplit("/", 1)[1])
    assert order.total_fen == shop.price_fen
