"""立即购买 buys one product and keeps the cart; cart lines and buy-now quantities are capped at what the best
outlet can hand over; checkout names what is short and where it can be had; restock orders are capped at what
the supplier can ship, show their total first, and a repeated 进货 / 发货 / 收货 form writes once."""
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import (
    AuditLog,
    FactoryStore,
    Order,
    OrderItem,
    Outlet,
    RestockItem,
    RestockOrder,
    StockLevel,
    StockMovement,
    StockReason,
    SubmissionKey,
    User,
)
from dingqiao.services import cart as carts
from dingqiao.services.orders import place_order
from dingqiao.services.restock import (
    RestockError,
    parse_quantities,
    party_for_user,
    place_restock,
    preview_restock,
    receive_restock,
    ship_restock,
)
from dingqiao.services.stock import adjust_stock
from dingqiao.services.submissions import new_key
from tests.conftest import csrf_token, log_in_member
from tests.factories import make_outlet, make_product, make_user, stock
from tests.money_world import build_world

HX = {"HX-Request": "true"}


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def shop(app):
    """The money world (one outlet with 100 of a ¥100 set) plus dish soap stocked 20 and 12 at two outlets,
    and 120 sets at the factory store for restocking."""
    world = build_world(app)
    with app.app_context():
        outlet = db.session.get(Outlet, world.outlet_id)
        second = make_outlet(make_user("二号店主"), outlet.region)
        soap = make_product(1590, "洗洁精")
        stock(outlet, soap, 20)
        stock(second, soap, 12)
        factory = db.session.scalar(select(FactoryStore))
        adjust_stock(db.session, location_id=factory.location_id, product_id=world.product_id, delta=120,
                     note="期初", actor_kind="system", actor_id=0)
        return world, soap.id, second.id, factory.location_id


# --- 立即购买 ------------------------------------------------------------------------------------------

def test_a_buy_now_order_holds_only_that_product_and_leaves_the_cart_alone(app, shop):
    world, soap, _, _ = shop
    with app.app_context():
        carts.add_to_member_cart(db.session, world.buyer, soap, 2)
        buyer = db.session.get(User, world.buyer)
        key = new_key()
        order = place_order(db.session, buyer, world.outlet_id, carts.buy_now_line(db.session, world.product_id, 3),
                            timeout_minutes=15, from_cart=False, submission_key=key)
        again = place_order(db.session, buyer, world.outlet_id, {world.product_id: 3}, timeout_minutes=15,
                            from_cart=False, submission_key=key)
        assert again.id == order.id and count(Order) == 1  # the second tap answers with the first order
        items = db.session.execute(select(OrderItem.product_id, OrderItem.quantity)).all()
        assert items == [(world.product_id, 3)] and order.total_fen == 30_000
        assert carts.member_cart(db.session, world.buyer) == {soap: 2}
        # The outlet's row: the factory store holds the same product too, and rows come back in no set order.
        outlet_location = db.session.get(Outlet, world.outlet_id).location_id
        reserved = db.session.scalar(select(StockLevel.reserved).where(StockLevel.product_id == world.product_id,
                                                                       StockLevel.location_id == outlet_location))
        assert reserved == 3


def test_buy_now_over_http_checks_out_one_line_and_the_cart_is_unchanged(app, client, shop):
    world, soap, _, _ = shop
    with app.app_context():
        carts.add_to_member_cart(db.session, world.buyer, soap, 2)
    log_in_member(client, world.buyer)
    token = {"X-CSRFToken": csrf_token(client)}
    bought = client.post("/cart/items", data={"product_id": world.product_id, "quantity": "2", "then": "checkout"},
                         headers={**HX, **token})
    target = bought.headers["HX-Redirect"]
    assert bought.status_code == 204 and parse_qs(urlsplit(target).query) == {
        "buy": [str(world.product_id)], "qty": ["2"]}
    page = client.get(target).get_data(as_text=True)
    assert "¥100 套装 × 2" in page and "洗洁精" not in page
    key = re.search(r'name="submission_key" value="([^"]+)"', page).group(1)
    # The outlet list, asked for by app.js with only a position, is checked for the buy-now line too.
    listed = client.get("/checkout/outlets?lat=30.27&lng=120.15",
                        headers={**HX, "HX-Current-URL": f"http://localhost{target}"}).get_data(as_text=True)
    # (the second outlet has no sets; the cart's soap plays no part)
    assert "部分商品缺货：¥100 套装" in listed and "洗洁精" not in listed and listed.count(" checked") == 1
    form = {"outlet_id": world.outlet_id, "buy": world.product_id, "qty": "2", "submission_key": key}
    first = client.post("/checkout/", data=form, headers={**HX, **token})
    second = client.post("/checkout/", data=form, headers={**HX, **token})
    assert first.status_code == second.status_code == 204
    assert first.headers["HX-Redirect"] == second.headers["HX-Redirect"]  # a double tap: the same order
    with app.app_context():
        assert count(Order) == 1
        assert db.session.execute(select(OrderItem.product_id, OrderItem.quantity)).all() == [(world.product_id, 2)]
        assert carts.member_cart(db.session, world.buyer) == {soap: 2}


def test_buy_now_past_the_best_outlet_or_below_one_is_refused_in_chinese(app, client, shop):
    world, soap, _, _ = shop
    token = {"X-CSRFToken": csrf_token(client)}
    for quantity, message in (("21", "洗洁精最多可购 20 件"), ("0", "数量至少为 1 件"), ("-5", "数量至少为 1 件"),
                              ("123456", "1 到 99")):
        response = client.post("/cart/items", data={"product_id": soap, "quantity": quantity, "then": "checkout"},
                               headers={**HX, **token})
        assert response.status_code == 400 and message in response.get_data(as_text=True), quantity


# --- caps in the cart ----------------------------------------------------------------------------------

def test_a_line_cannot_grow_past_what_the_best_outlet_can_hand_over(app, shop):
    world, soap, _, _ = shop
    with app.app_context():
        session = db.session
        assert carts.add_to_member_cart(session, world.buyer, soap, 20, check_stock=True) == 20
        with pytest.raises(carts.CartError, match=r"洗洁精最多可购 20 件（购物车已有 20 件）"):
            carts.add_to_member_cart(session, world.buyer, soap, 1, check_stock=True)
        with pytest.raises(carts.CartError, match="洗洁精最多可购 20 件"):
            carts.set_member_cart_quantity(session, world.buyer, soap, 21, check_stock=True)
        with pytest.raises(carts.CartError, match="最多可购 20 件"):
            carts.set_guest_cart_quantity(session, {soap: 20}, soap, 21, check_stock=True)
        line = carts.view_cart(session, carts.member_cart(session, world.buyer), carts.Identity.MEMBER).lines[0]
        assert (line.quantity, line.max_quantity, line.at_cap) == (20, 20, True)
        # Stock falls below the line: it may come down (not all the way at once), not go up.
        best = session.scalar(select(StockLevel).where(StockLevel.product_id == soap, StockLevel.on_hand == 20))
        best.reserved = 15
        session.commit()
        carts.set_member_cart_quantity(session, world.buyer, soap, 19, check_stock=True)
        assert carts.member_cart(session, world.buyer) == {soap: 19}
        line = carts.view_cart(session, {soap: 19}, carts.Identity.MEMBER).lines[0]
        assert line.max_quantity == 12 and line.quantity > line.max_quantity
        for level in session.scalars(select(StockLevel).where(StockLevel.product_id == soap)):
            level.reserved = level.on_hand
        session.commit()
        with pytest.raises(carts.CartError, match="洗洁精已售罄"):
            carts.add_to_guest_cart(session, {}, soap, 1, check_stock=True)


def test_the_cart_page_caps_plus_and_says_so_and_asks_before_removing(app, client, shop):
    world, soap, _, _ = shop
    with app.app_context():
        carts.add_to_member_cart(db.session, world.buyer, soap, 19)
        carts.add_to_member_cart(db.session, world.buyer, world.product_id, 1)
    log_in_member(client, world.buyer)
    token = {"X-CSRFToken": csrf_token(client)}
    at_cap = client.post(f"/cart/items/{soap}", data={"quantity": "20"}, headers={**HX, **token})
    body = at_cap.get_data(as_text=True)
    assert at_cap.status_code == 200 and "最多可购 20 件" in body
    soap_line = body[body.index("洗洁精"):]
    assert re.search(r'value="21" aria-label="增加" disabled', soap_line)
    past = client.post(f"/cart/items/{soap}", data={"quantity": "21"}, headers={**HX, **token})
    assert past.status_code == 400 and "洗洁精最多可购 20 件" in past.get_data(as_text=True)
    # − at 1 and 删除 ask first (hx-confirm, answered by the app's dialog).
    set_line = body[body.index("¥100 套装"):]
    assert 'value="0" aria-label="减少" hx-post=' in set_line and 'hx-confirm="确定从购物车删除「¥100 套装」？"' in set_line
    assert body.count("hx-confirm=") == 3  # 删除 on both lines, − on the line at 1
    assert member_cart(app, world.buyer) == {soap: 20, world.product_id: 1}


def member_cart(app, user_id: int) -> dict[int, int]:
    with app.app_context():
        return carts.member_cart(db.session, user_id)


@pytest.mark.parametrize(("raw", "message"), [("-5", "数量至少为 1 件"), ("-1", "数量至少为 1 件"),
                                              ("100", "1 到 99"), ("99999999999", "1 到 99"), ("abc", "正确的数量")])
def test_typed_quantities_get_the_right_message(raw, message):
    with pytest.raises(carts.CartError, match=message):
        carts.parse_quantity(raw)


@pytest.mark.parametrize(("raw", "step", "expected"), [
    ("1", "1", (2, "")), ("1", "-1", (1, "数量至少为 1 件")), ("20", "1", (20, "最多可购 20 件")),
    ("500", None, (20, "最多可购 20 件")), ("-5", None, (1, "数量至少为 1 件")), ("x", "1", (1, "请输入正确的数量。")),
    (None, None, (1, "")),
])
def test_the_product_page_stepper_stays_within_one_and_the_cap(raw, step, expected):
    assert carts.stepped_quantity(raw, step, 20) == expected


def test_the_product_page_stepper_answers_with_its_fragment(app, client, shop):
    _, soap, _, _ = shop
    page = client.get(f"/products/{soap}").get_data(as_text=True)
    assert 'id="buy-quantity"' in page and 'form="buy-form"' in page
    step = client.get(f"/products/{soap}?quantity=20&step=1", headers=HX)
    body = step.get_data(as_text=True)
    assert step.status_code == 200 and "<html" not in body and body.lstrip().startswith('<div id="buy-quantity"')
    assert 'value="20"' in body and "最多可购 20 件" in body


# --- checkout names what is short ----------------------------------------------------------------------

def test_checkout_names_the_short_product_and_the_outlets_that_have_it(app, client, shop):
    world, soap, second, _ = shop
    with app.app_context():
        outlets = list(db.session.scalars(select(Outlet).order_by(Outlet.id)))
        # 15: only the first outlet (20) has it; 25: none has it.
        found = carts.pickup_stock(db.session, {soap: 15, world.product_id: 1}, outlets)
        first_name = outlets[0].name
        assert found.missing == {second: ["¥100 套装", "洗洁精"]}  # in product id order
        [short] = [s for s in found.shortages if s.product_id == soap]
        assert (short.name, short.nowhere, short.outlets) == ("洗洁精", False, [(first_name, 20)])
        assert carts.no_pickup_message(db.session, {soap: 25}) == "洗洁精单店最多可提 20 件，请减少数量后再提交。"
        carts.add_to_member_cart(db.session, world.buyer, soap, 25)
    log_in_member(client, world.buyer)
    page = client.get("/checkout/").get_data(as_text=True)
    assert "洗洁精</strong> × 25：单店最多可提 20 件" in page and "部分商品缺货：洗洁精" in page
    refused = client.post("/checkout/", data={}, headers={**HX, "X-CSRFToken": csrf_token(client)})
    assert refused.status_code == 400 and "洗洁精单店最多可提 20 件" in refused.get_data(as_text=True)
    with app.app_context():
        carts.set_member_cart_quantity(db.session, world.buyer, soap, 15)
        carts.add_to_member_cart(db.session, world.buyer, world.product_id, 1)
        db.session.get(Outlet, world.outlet_id).name = "文三路店"
        db.session.commit()
    page = client.get("/checkout/").get_data(as_text=True)
    assert "部分商品缺货：¥100 套装、洗洁精" in page  # the second outlet lacks both
    assert "可到 文三路店（可提 20 件）" not in page  # the first outlet has everything: it is chosen, no notice
    with app.app_context():
        level = db.session.scalar(select(StockLevel).join(Outlet, Outlet.location_id == StockLevel.location_id)
                                  .where(Outlet.id == world.outlet_id, StockLevel.product_id == world.product_id))
        level.reserved = level.on_hand
        db.session.commit()
    page = client.get("/checkout/").get_data(as_text=True)
    assert "洗洁精</strong> × 15：可到 文三路店（可提 20 件） 自提" in page


# --- restock -------------------------------------------------------------------------------------------

def test_a_restock_past_what_the_supplier_can_ship_is_refused_and_the_preview_says_so(app, shop):
    world, _, _, _ = shop
    with app.app_context():
        with pytest.raises(RestockError, match="¥100 套装供货方只有 120 件可发，不能进 9999 件"):
            place_restock(db.session, world.outlet_owner, {world.product_id: 9999}, check_supply=True)
        assert count(RestockOrder) == 0
        preview = preview_restock(db.session, world.outlet_owner, {f"qty-{world.product_id}": "9999"})
        assert preview.total_fen == 9999 * 8_000 and preview.problems == [
            "¥100 套装供货方只有 120 件可发，不能进 9999 件"]
        fine = preview_restock(db.session, world.outlet_owner, {f"qty-{world.product_id}": "120"})
        assert (fine.total_fen, fine.units, fine.problems) == (120 * 8_000, 120, [])
        assert preview_restock(db.session, world.outlet_owner, {f"qty-{world.product_id}": "-5"}).problems == [
            "数量至少为 1 件。"]
        order = place_restock(db.session, world.outlet_owner, {world.product_id: 120}, check_supply=True)
        assert order.total_fen == 960_000


@pytest.mark.parametrize(("raw", "message"), [("-5", "数量至少为 1 件"), ("1.5", "数量需为整数"),
                                              ("123456", "1 到 9999")])
def test_typed_restock_quantities_get_the_right_message(raw, message):
    with pytest.raises(RestockError, match=message):
        parse_quantities({"qty-1": raw})
    assert parse_quantities({"qty-1": "0", "qty-2": " ", "qty-3": "007"}) == {3: 7}


def test_the_restock_total_endpoint_draws_the_total_and_what_is_over(app, client, shop):
    world, _, _, _ = shop
    log_in_member(client, world.outlet_owner)
    page = client.get("/restock/new").get_data(as_text=True)
    assert 'id="restock-total"' in page and "hx-confirm=" in page and 'name="submission_key"' in page
    body = client.get(f"/restock/new/total?qty-{world.product_id}=3", headers=HX).get_data(as_text=True)
    assert body.lstrip().startswith('<div id="restock-total"') and "¥240.00" in body and "共 3 件" in body
    over = client.get(f"/restock/new/total?qty-{world.product_id}=9999", headers=HX).get_data(as_text=True)
    assert '<div id="restock-problems" class="dq-pad" role="alert" hx-swap-oob="true">' in over
    assert "供货方只有 120 件可发" in over.split('id="restock-problems"')[1]
    refused = client.post("/restock/", data={f"qty-{world.product_id}": "9999"},
                          headers={**HX, "X-CSRFToken": csrf_token(client)})
    assert refused.status_code == 400 and "供货方只有 120 件可发" in refused.get_data(as_text=True)


def test_the_same_key_twice_places_ships_and_receives_once(app, shop):
    world, _, _, factory_location = shop
    with app.app_context():
        session = db.session
        place_key, ship_key, receive_key = new_key(), new_key(), new_key()
        first = place_restock(session, world.outlet_owner, {world.product_id: 10}, submission_key=place_key)
        again = place_restock(session, world.outlet_owner, {world.product_id: 10}, submission_key=place_key)
        assert again.id == first.id and count(RestockOrder) == 1 and count(RestockItem) == 1

        factory = party_for_user(session, world.factory_owner)
        ship_restock(session, factory, first.id, {world.product_id: 4}, submission_key=ship_key)
        ship_restock(session, factory, first.id, {world.product_id: 4}, submission_key=ship_key)
        assert count(StockMovement, StockMovement.reason == StockReason.RESTOCK_OUT) == 1
        assert session.scalar(select(RestockItem.shipped_quantity)) == 4
        assert count(AuditLog, AuditLog.action == "restock.ship") == 1
        level = session.scalar(select(StockLevel.on_hand).where(StockLevel.location_id == factory_location))
        assert level == 116

        receive_restock(session, world.outlet_owner, first.id, submission_key=receive_key)
        receive_restock(session, world.outlet_owner, first.id, submission_key=receive_key)
        assert count(StockMovement, StockMovement.reason == StockReason.RESTOCK_IN) == 1
        assert session.scalar(select(RestockItem.received_quantity)) == 4
        assert count(SubmissionKey) == 3
        # A fresh key for a second shipment ships again: the key stops repeats, not work.
        ship_restock(session, factory, first.id, {world.product_id: 6}, submission_key=new_key())
        assert session.scalar(select(RestockItem.shipped_quantity)) == 10


def test_a_repeated_ship_form_over_http_is_answered_like_the_first(app, client, shop):
    world, _, _, _ = shop
    with app.app_context():
        order_id = place_restock(db.session, world.outlet_owner, {world.product_id: 5}).id
    log_in_member(client, world.factory_owner)
    page = client.get(f"/restock/{order_id}").get_data(as_text=True)
    assert 'hx-confirm="确定按所填数量发货' in page
    key = re.search(r'name="submission_key" value="([^"]+)"', page).group(1)
    form = {f"qty-{world.product_id}": "5", "submission_key": key}
    token = {"X-CSRFToken": csrf_token(client)}
    answers = [client.post(f"/restock/{order_id}/ship", data=form, headers={**HX, **token}) for _ in range(2)]
    assert [a.status_code for a in answers] == [204, 204]
    assert answers[0].headers["HX-Redirect"] == answers[1].headers["HX-Redirect"] == f"/restock/{order_id}"
    with app.app_context():
        assert count(StockMovement, StockMovement.reason == StockReason.RESTOCK_OUT) == 1
        assert db.session.scalar(select(RestockItem.shipped_quantity)) == 5
