"""Outlet and factory-store pages over HTTP: staff invites and access, the stock page, restock orders, and the
dashboards' JSON."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from dingqiao.extensions import db
from dingqiao.models import FactoryStore, Identity, Order, OrderStatus, OutletStaff, RestockOrder, RestockStatus
from dingqiao.models.base import utcnow
from dingqiao.services.staff import StaffError, accept_invite, create_invite
from dingqiao.services.stock import adjust_stock
from tests.conftest import csrf_token
from tests.factories import make_outlet, make_user, stock
from tests.money_world import build_world, buy, pay, pick_up
from tests.test_access import log_in


def htmx(client) -> dict:
    return {"HX-Request": "true", "X-CSRFToken": csrf_token(client)}


def invite_token(client) -> str:
    page = client.post("/outlet/staff/invite", headers=htmx(client)).get_data(as_text=True)
    assert "data:image/png;base64," in page and "仅可使用一次" in page
    return re.search(r"/outlet/join/([A-Za-z0-9_-]+)", page).group(1)


@pytest.fixture
def world(app):
    return build_world(app)


def test_an_invited_person_redeems_for_the_outlet_and_nothing_else_until_removed(app, world):
    owner, staff = app.test_client(), app.test_client()
    log_in(owner, world.outlet_owner)
    with app.app_context():
        helper = make_user("小帮手").id
        other_outlet = make_outlet(make_user("隔壁店主", identity=Identity.OUTLET))
        product_id = world.product_id
        from dingqiao.models import Product
        stock(other_outlet, db.session.get(Product, product_id), 5)
        other_outlet_id = other_outlet.id
    log_in(staff, helper)
    assert staff.get("/outlet/redeem").status_code == 403  # not staff yet
    token = invite_token(owner)
    assert "「" in staff.get(f"/outlet/join/{token}").get_data(as_text=True)
    joined = staff.post(f"/outlet/join/{token}", headers=htmx(staff))
    assert joined.status_code == 204 and joined.headers["HX-Redirect"] == "/outlet/redeem"

    here = buy(app, world)
    pay(app, here)
    with app.app_context():  # an order picked up at the other outlet
        from dingqiao.services.orders import place_order
        from dingqiao.models import User
        there = place_order(db.session, db.session.get(User, world.buyer), other_outlet_id, {product_id: 1},
                            timeout_minutes=15, from_cart=False).order_no
    pay(app, there)
    with app.app_context():
        code_here, code_there = (db.session.scalar(select(Order.pickup_code).where(Order.order_no == n))
                                 for n in (here, there))
    assert staff.get("/outlet/orders").status_code == 200 and here in staff.get("/outlet/orders").get_data(as_text=True)
    assert there not in staff.get("/outlet/orders").get_data(as_text=True)
    refused = staff.post(f"/outlet/redeem/{code_there}", headers=htmx(staff))
    assert refused.status_code == 403 and "不在本店" in refused.get_data(as_text=True)
    done = staff.post(f"/outlet/redeem/{code_here}", headers=htmx(staff))
    assert done.status_code == 200 and "核销成功" in done.get_data(as_text=True)
    for owner_page in ("/outlet/staff", "/outlet/dashboard", "/stock/", "/restock/", "/outlet/profile", "/factory/"):
        assert staff.get(owner_page).status_code in (403, 404), owner_page

    staff_page = owner.get("/outlet/staff").get_data(as_text=True)
    assert "小帮手" in staff_page
    with app.app_context():
        staff_id = db.session.scalar(select(OutletStaff.id).where(OutletStaff.user_id == helper))
    assert owner.post(f"/outlet/staff/{staff_id}/remove", headers=htmx(owner)).status_code == 204
    assert staff.get("/outlet/redeem").status_code == 403  # at once
    assert staff.get("/outlet/orders").status_code == 403
    again = staff.post(f"/outlet/join/{token}", headers=htmx(staff))
    assert again.status_code == 409 and "已被使用" in again.get_data(as_text=True)


def test_invites_are_single_use_expire_and_owners_cannot_be_staff(app, world):
    with app.app_context():
        a, b = make_user("甲").id, make_user("乙").id
        _, token = create_invite(db.session, world.outlet_owner)
        accept_invite(db.session, a, token)
        with pytest.raises(StaffError, match="已被使用"):
            accept_invite(db.session, b, token)
        _, old = create_invite(db.session, world.outlet_owner, now=utcnow() - timedelta(hours=25))
        with pytest.raises(StaffError, match="过期"):
            accept_invite(db.session, b, old)
        with pytest.raises(StaffError, match="无效"):
            accept_invite(db.session, b, "forged-token")
        _, fresh = create_invite(db.session, world.outlet_owner)
        with pytest.raises(StaffError, match="店主"):
            accept_invite(db.session, world.factory_owner, fresh)
        other_owner = make_user("别家", identity=Identity.OUTLET)
        make_outlet(other_owner)
        _, elsewhere = create_invite(db.session, other_owner.id)
        with pytest.raises(StaffError, match="其他门店"):
            accept_invite(db.session, a, elsewhere)
    members = app.test_client()
    log_in(members, world.buyer)
    assert members.post("/outlet/staff/invite", headers=htmx(members)).status_code == 403


def test_the_stock_page_adjusts_with_a_note_and_shows_low_stock(app, world):
    client = app.test_client()
    log_in(client, world.outlet_owner)
    page = client.get("/stock/").get_data(as_text=True)
    assert "¥100 套装" in page and "可用" in page and "100" in page
    with app.app_context():
        from dingqiao.models import Outlet
        outlet_loc = db.session.get(Outlet, world.outlet_id).location_id
    missing_note = client.post("/stock/adjust", data={"product_id": world.product_id, "delta": "-2", "note": ""},
                               headers=htmx(client))
    assert missing_note.status_code == 400 and "原因" in missing_note.get_data(as_text=True)
    garbage = client.post("/stock/adjust", data={"product_id": world.product_id, "delta": "二", "note": "x"},
                          headers=htmx(client))
    assert garbage.status_code == 400 and "调整数量" in garbage.get_data(as_text=True)
    ok = client.post("/stock/adjust", data={"product_id": world.product_id, "delta": "-95", "note": "破损"},
                     headers=htmx(client))
    assert ok.status_code == 204
    client.post("/stock/threshold", data={"product_id": world.product_id, "threshold": "10"}, headers=htmx(client))
    page = client.get("/stock/").get_data(as_text=True)
    assert "库存低" in page and "破损" in page and "1 种商品库存偏低" in page
    with app.app_context():
        from dingqiao.models import StockLevel
        assert db.session.scalar(select(StockLevel.on_hand).where(StockLevel.location_id == outlet_loc)) == 5


def test_restock_pages_place_ship_and_receive(app, world):
    with app.app_context():
        factory = db.session.scalar(select(FactoryStore))
        adjust_stock(db.session, location_id=factory.location_id, product_id=world.product_id, delta=20, note="期初",
                     actor_kind="system", actor_id=0)
    outlet, factory_client = app.test_client(), app.test_client()
    log_in(outlet, world.outlet_owner)
    log_in(factory_client, world.factory_owner)
    form = outlet.get("/restock/new").get_data(as_text=True)
    assert "¥80.00" in form and "供货方可发 20" in form
    bad = outlet.post("/restock/", data={f"qty-{world.product_id}": "-1"}, headers=htmx(outlet))
    assert bad.status_code == 400 and "数量至少为 1 件" in bad.get_data(as_text=True)  # not "需为整数"
    placed = outlet.post("/restock/", data={f"qty-{world.product_id}": "8", "note": "周末"}, headers=htmx(outlet))
    assert placed.status_code == 204
    detail_url = placed.headers["HX-Redirect"]
    restock_id = int(detail_url.rsplit("/", 1)[1])
    assert "确认发货" not in outlet.get(detail_url).get_data(as_text=True)
    supply = factory_client.get("/restock/").get_data(as_text=True)
    assert "待我供货" in supply and "待发货" in supply
    assert "确认发货" in factory_client.get(detail_url).get_data(as_text=True)
    shipped = factory_client.post(f"/restock/{restock_id}/ship", data={f"qty-{world.product_id}": "5"},
                                  headers=htmx(factory_client))
    assert shipped.status_code == 204
    assert "确认收货（5 件）" in outlet.get(detail_url).get_data(as_text=True)
    assert outlet.post(f"/restock/{restock_id}/receive", headers=htmx(outlet)).status_code == 204
    with app.app_context():
        assert db.session.get(RestockOrder, restock_id).status == RestockStatus.SHIPPING
    member = app.test_client()
    log_in(member, world.buyer)
    assert member.get(detail_url).status_code == 403
    other = app.test_client()
    with app.app_context():
        other_id = make_user("别家", identity=Identity.OUTLET).id
        make_outlet(db.session.get(type(make_user()), other_id))
    log_in(other, other_id)
    assert other.get(detail_url).status_code == 404


def test_the_outlet_and_factory_dashboards_count_the_region(app, world):
    order_no = buy(app, world, quantity=2)
    pay(app, order_no)
    pick_up(app, world, order_no)
    outlet = app.test_client()
    log_in(outlet, world.outlet_owner)
    page = outlet.get("/outlet/dashboard").get_data(as_text=True)
    assert "1 单" in page and "¥200.00" in page and "¥10.00" in page  # today's pickup and its 5% service fee
    trend = outlet.get("/outlet/dashboard.json").json
    assert trend["pickups"]["series"][0]["data"][-1] == 1 and trend["sales"]["series"][0]["data"][-1] == 20_000
    factory = app.test_client()
    log_in(factory, world.factory_owner)
    page = factory.get("/factory/").get_data(as_text=True)
    assert "¥200.00" in page and "网点排行" in page and 'type="date"' in page
    data = factory.get("/factory/dashboard.json").json
    assert data["sales"]["series"][0]["data"][-1] == 20_000
    assert data["ranking"]["series"][0]["data"] == [20_000]
    long_ago = factory.get("/factory/dashboard.json?from=2020-01-01&to=2020-01-31").json
    assert sum(long_ago["sales"]["series"][0]["data"]) == 0 and len(long_ago["sales"]["labels"]) == 31
    nonsense = factory.get("/factory/dashboard.json?from=yesterday&to=2020-13-45")
    assert nonsense.status_code == 200 and len(nonsense.json["sales"]["labels"]) == 30
    member = app.test_client()
    log_in(member, world.buyer)
    assert member.get("/factory/").status_code == 403 and member.get("/outlet/dashboard").status_code == 403
    with app.app_context():
        assert db.session.scalar(select(Order.status).where(Order.order_no == order_no)) == OrderStatus.COMPLETED


def test_refused_forms_say_why_next_to_the_field_and_keep_what_was_typed(app, world):
    client = app.test_client()
    log_in(client, world.outlet_owner)
    token = {"csrf_token": csrf_token(client)}
    page = client.post("/stock/adjust", data={**token, "product_id": world.product_id, "delta": "二", "note": "盘点"})
    body = page.get_data(as_text=True)
    assert page.status_code == 400 and "<html" in body
    adjust_form = body[body.index(f'id="adjust-{world.product_id}"'):]
    adjust_form = adjust_form[:adjust_form.index("</form>")]
    assert 'value="二"' in adjust_form and 'value="盘点"' in adjust_form and 'aria-invalid="true"' in adjust_form
    assert re.search(r'<span class="dq-field-error"[^>]* role="alert">请填写调整数量', adjust_form)
    fragment = client.post("/stock/adjust", data={"product_id": world.product_id, "delta": "5", "note": " "},
                           headers=htmx(client))
    text = fragment.get_data(as_text=True)
    assert fragment.status_code == 400 and fragment.headers["HX-Retarget"] == "#flash" and "<html" not in text
    assert f'id="adjust-{world.product_id}"' in text and 'hx-swap-oob="true"' in text and "调整原因" in text
    assert 'value="5"' in text  # the typed quantity comes back with the service's refusal

    with app.app_context():
        factory = db.session.scalar(select(FactoryStore))
        adjust_stock(db.session, location_id=factory.location_id, product_id=world.product_id, delta=3, note="期初",
                     actor_kind="system", actor_id=0)
    over = client.post("/restock/", data={**token, f"qty-{world.product_id}": "7", "note": "周末"})
    body = over.get_data(as_text=True)
    assert over.status_code == 400 and "只有 3 件可发" in body
    assert f'name="qty-{world.product_id}"' in body and 'value="7"' in body and 'value="周末"' in body
    with app.app_context():
        assert db.session.scalar(select(RestockOrder.id)) is None

    factory_client = app.test_client()
    log_in(factory_client, world.factory_owner)
    wrong_day = factory_client.get("/factory/?from=2020-02-30&to=2020-03-10").get_data(as_text=True)
    assert "日期格式应为" in wrong_day and 'name="to" value="2020-03-10"' in wrong_day
