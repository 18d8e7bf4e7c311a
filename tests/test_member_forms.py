"""The member-side forms refuse next to the field: the checkout's phone and outlet, 我的 → 手机号; what was typed
comes back in the field, htmx gets the form's inside (not a whole page), and nothing is written."""
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import Order
from tests.test_member_phone import csrf, member, phone_of, without_phone
from tests.money_world import build_world

HX = {"HX-Request": "true"}


def test_a_wrong_phone_at_checkout_is_said_under_the_field_with_the_choice_kept(app, fake_wechat):
    world = build_world(app)
    without_phone(app, world.buyer)
    client = member(app, world, world.buyer)
    client.post("/cart/items", data={"product_id": world.product_id, "quantity": 1, "csrf_token": csrf(client)})
    refused = client.post("/checkout/", data={"outlet_id": world.outlet_id, "phone": "12345", "csrf_token": csrf(client)},
                          headers=HX)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "<html" not in body and 'class="dq-checkout"' not in body
    assert 'id="phone-error"' in body and "请输入正确的手机号" in body and 'value="12345"' in body
    assert f'value="{world.outlet_id}" checked' in body and 'aria-invalid="true"' in body
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 0
    assert phone_of(app, world.buyer) is None


def test_no_outlet_chosen_is_said_above_the_outlet_list(app, fake_wechat):
    world = build_world(app)
    client = member(app, world, world.buyer)
    client.post("/cart/items", data={"product_id": world.product_id, "quantity": 1, "csrf_token": csrf(client)})
    refused = client.post("/checkout/", data={"csrf_token": csrf(client)})
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "<html" in body and 'id="outlet_id-error"' in body
    assert body.index('id="outlet_id-error"') < body.index('name="outlet_id"')


def test_a_wrong_number_in_me_is_shown_again_under_the_field(app, fake_wechat):
    world = build_world(app)
    client = member(app, world, world.buyer)
    before = phone_of(app, world.buyer)
    refused = client.post("/me/phone", data={"phone": "abc", "csrf_token": csrf(client)}, headers=HX)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "<html" not in body
    assert 'id="phone-error"' in body and "请输入正确的手机号" in body and 'value="abc"' in body
    assert phone_of(app, world.buyer) == before
    page = client.post("/me/phone", data={"phone": "abc", "csrf_token": csrf(client)})
    assert page.status_code == 400 and "<html" in page.get_data(as_text=True) and "我的钱包" in page.get_data(as_text=True)
