"""The member's mobile number (issue 20, part 6): asked at the first checkout and before the first withdrawal,
checked as a mainland mobile number, editable in 我的, searchable by admins; never asked twice."""
import pytest
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import Order, User, Withdrawal
from dingqiao.services.accounts import PhoneError, normalise_mobile
from dingqiao.models import AdminRole
from dingqiao.services.accounts import create_admin
from tests.conftest import csrf_token, log_in_admin, log_in_member
from tests.money_world import build_world, buy, pay, pick_up


@pytest.mark.parametrize(("raw", "phone"), [
    ("13812345678", "13812345678"), (" 138 1234 5678 ", "13812345678"), ("138-1234-5678", "13812345678"),
    ("+8613812345678", "13812345678"), ("8613812345678", "13812345678"), ("+86 199 0000 1111", "19900001111"),
])
def test_mainland_mobile_numbers_are_kept_as_eleven_digits(raw, phone):
    assert normalise_mobile(raw) == phone


@pytest.mark.parametrize("raw", ["", None, "1381234567", "138123456789", "12812345678", "23812345678",
                                 "１３８１２３４５６７８", "13812345678'; --", "0571-88001234", "1" * 10_000,
                                 "+85213812345678", "abc"])
def test_anything_else_is_refused_in_chinese(raw):
    with pytest.raises(PhoneError, match="请输入正确的手机号"):
        normalise_mobile(raw)


def csrf(client) -> str:
    return csrf_token(client)


def member(app, world, user_id: int):
    client = app.test_client()
    log_in_member(client, user_id)
    return client


def without_phone(app, user_id: int) -> None:
    """A member who never bought nor withdrew (the factories give members a phone)."""
    with app.app_context():
        db.session.get(User, user_id).phone = None
        db.session.commit()


def phone_of(app, user_id: int) -> str | None:
    with app.app_context():
        return db.session.get(User, user_id).phone


def test_the_first_checkout_asks_for_the_phone_and_later_ones_do_not(app, fake_wechat):
    world = build_world(app)
    without_phone(app, world.buyer)
    client = member(app, world, world.buyer)
    client.post("/cart/items", data={"product_id": world.product_id, "quantity": 1, "csrf_token": csrf(client)})
    page = client.get("/checkout/").get_data(as_text=True)
    assert 'name="phone"' in page and "门店备货或提货时可能联系您" in page
    token = csrf(client)
    refused = client.post("/checkout/", data={"outlet_id": world.outlet_id, "csrf_token": token, "phone": "12345"})
    assert refused.status_code == 400 and "请输入正确的手机号" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 0  # nothing half-written
    placed = client.post("/checkout/", data={"outlet_id": world.outlet_id, "csrf_token": token,
                                             "phone": "138 1234 5678"})
    assert placed.status_code in (302, 303), placed.get_data(as_text=True)
    assert phone_of(app, world.buyer) == "13812345678"
    client.post("/cart/items", data={"product_id": world.product_id, "quantity": 1, "csrf_token": token})
    assert 'name="phone"' not in client.get("/checkout/").get_data(as_text=True)


def test_the_first_withdrawal_asks_for_the_phone(app, fake_wechat):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    pick_up(app, world, order_no)
    without_phone(app, world.parent)
    client = member(app, world, world.parent)
    assert 'name="phone"' in client.get("/wallet/").get_data(as_text=True)
    token = csrf(client)
    refused = client.post("/wallet/withdrawals", data={"amount": "5", "csrf_token": token})
    assert refused.status_code == 400 and "请输入正确的手机号" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Withdrawal)) == 0
    done = client.post("/wallet/withdrawals", data={"amount": "5", "phone": "13900001111", "csrf_token": token})
    assert done.status_code in (302, 303)
    assert phone_of(app, world.parent) == "13900001111"
    assert 'name="phone"' not in client.get("/wallet/").get_data(as_text=True)


def test_the_phone_is_editable_in_me_and_searchable_by_admins(app, fake_wechat):
    world = build_world(app)
    client = member(app, world, world.buyer)
    token = csrf(client)
    assert client.post("/me/phone", data={"phone": "abc", "csrf_token": token}).status_code == 400
    assert client.post("/me/phone", data={"phone": "+86 137 0000 2222", "csrf_token": token}).status_code in (302, 303)
    assert 'value="13700002222"' in client.get("/me/").get_data(as_text=True)
    with app.app_context():
        admin_id = create_admin(db.session, "ops", "long-enough-password", AdminRole.OPERATOR).id
    staff = app.test_client()
    log_in_admin(staff, admin_id)
    found = staff.get("/admin/data/users/", query_string={"search": "13700002222"}).get_data(as_text=True)
    with app.app_context():
        nickname = db.session.get(User, world.buyer).nickname
    assert nickname in found
