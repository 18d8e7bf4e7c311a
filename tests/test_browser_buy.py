"""Buying and restocking on a phone (390×844, WeChat's user agent): 立即购买 orders exactly that product and
keeps the cart; a cart line stops at what the best outlet can hand over and says so; a restock past what the
supplier can ship is refused, its total shown before placing; a double tap on 发货 ships once."""
import os
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import (
    FactoryStore,
    Order,
    OrderItem,
    Product,
    RestockItem,
    RestockOrder,
    StockLevel,
    StockMovement,
    StockReason,
    User,
)
from dingqiao.services import cart as carts
from dingqiao.services.catalog import most_at_one_outlet
from dingqiao.services.restock import place_restock
from tests.test_browser import (
    MEMBER,
    OUTLET,
    browser,  # noqa: F401 (the module-wide Chromium fixture)
    confirm_dialog,
    demo_app_site,
    demo_seeds,  # noqa: F401 (the module's seeded demo database)
    demo_login,
    expect,
    no_sideways_scroll,
    phone_page,
    wait_for_htmx,
)

pytestmark = pytest.mark.browser

FACTORY_OWNER = "西湖工厂店·林总"
DISH_SOAP = "顶俏洗洁精 1.5kg"


@pytest.fixture
def shop(database_url, tmp_path, demo_seeds):  # noqa: F811
    with demo_app_site(database_url, tmp_path, seeds=demo_seeds) as site:
        yield site


@pytest.fixture
def phone(browser, shop):  # noqa: F811
    page = phone_page(browser)
    yield page
    page.context.close()


def shot(page, name: str) -> None:
    """A screenshot to look at, where DQ_SHOTS says (none in an ordinary run)."""
    if os.environ.get("DQ_SHOTS"):
        folder = Path(os.environ["DQ_SHOTS"]) / "buy"
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def user_id(app, nickname: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.nickname == nickname))


def product_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(select(Product.id).where(Product.name == name))


def test_buy_now_with_a_full_cart_orders_exactly_that_product_and_keeps_the_cart(phone, shop):
    base_url, app = shop
    soap, liquid = product_id(app, DISH_SOAP), product_id(app, "顶俏浓缩洗衣液 2kg")
    demo_login(phone, base_url, MEMBER)
    phone.goto(f"{base_url}/products/{soap}")
    wait_for_htmx(phone)
    phone.get_by_role("button", name="加入购物车").click()
    expect(phone.locator("#flash")).to_contain_text("已加入购物车")

    phone.goto(f"{base_url}/products/{liquid}")
    wait_for_htmx(phone)
    phone.get_by_role("button", name="增加").click()
    expect(phone.get_by_label("购买数量")).to_have_value("2")
    no_sideways_scroll(phone)
    shot(phone, "product-stepper")
    phone.get_by_role("button", name="立即购买").click()
    phone.wait_for_url(re.compile(rf".*/checkout/\?buy={liquid}&qty=2$"))
    expect(phone.locator(".dq-checkout")).to_contain_text("顶俏浓缩洗衣液 2kg × 2")
    expect(phone.locator(".dq-checkout")).not_to_contain_text("洗洁精")
    expect(phone.locator("#outlet-list input[type=radio]:checked")).to_have_count(1)
    shot(phone, "buy-now-checkout")
    phone.get_by_role("button", name="提交订单").click()
    phone.wait_for_url(re.compile(r".*/orders/DQ\d+$"))
    order_no = phone.url.rsplit("/", 1)[1]

    member = user_id(app, MEMBER)
    with app.app_context():
        order_id = db.session.scalar(select(Order.id).where(Order.order_no == order_no))
        items = db.session.execute(select(OrderItem.product_id, OrderItem.quantity)
                                   .where(OrderItem.order_id == order_id)).all()
        assert items == [(liquid, 2)]
        assert carts.member_cart(db.session, member) == {soap: 1}
    phone.goto(f"{base_url}/cart/")
    expect(phone.locator(".dq-cart__line")).to_have_count(1)
    expect(phone.locator(".dq-cart__line")).to_contain_text("洗洁精")


def test_a_cart_line_pushed_past_stock_stops_at_the_best_outlet_and_says_so(phone, shop):
    base_url, app = shop
    soap, member = product_id(app, DISH_SOAP), user_id(app, MEMBER)
    with app.app_context():
        cap = carts.line_cap(most_at_one_outlet(db.session, [soap])[soap])
        carts.add_to_member_cart(db.session, member, soap, cap - 1)
    assert 1 < cap < carts.MAX_LINE_QUANTITY
    demo_login(phone, base_url, MEMBER)
    phone.goto(f"{base_url}/cart/")
    wait_for_htmx(phone)
    line = phone.locator(".dq-cart__line", has_text="洗洁精")
    plus = line.get_by_role("button", name="增加")
    plus.click()
    expect(line.locator(".dq-stepper__num")).to_have_text(str(cap))
    expect(line).to_contain_text(f"最多可购 {cap} 件")
    expect(line.get_by_role("button", name="增加")).to_be_disabled()
    no_sideways_scroll(phone)
    shot(phone, "cart-at-cap")
    with app.app_context():
        assert carts.member_cart(db.session, member) == {soap: cap}

    # Typed past it on the product page: refused with the cap, the cart unchanged.
    phone.goto(f"{base_url}/products/{soap}")
    wait_for_htmx(phone)
    phone.get_by_label("购买数量").fill("50")
    phone.get_by_role("button", name="加入购物车").click()
    expect(phone.locator("#flash")).to_contain_text(f"最多可购 {cap} 件")
    with app.app_context():
        assert carts.member_cart(db.session, member) == {soap: cap}

    # 删除 asks first; 取消 keeps the line.
    phone.goto(f"{base_url}/cart/")
    wait_for_htmx(phone)
    phone.locator(".dq-cart__line", has_text="洗洁精").get_by_role("button", name="删除").click()
    dialog = phone.get_by_role("alertdialog")
    expect(dialog).to_contain_text("确定从购物车删除「顶俏洗洁精 1.5kg」？")
    dialog.get_by_role("button", name="取消").click()
    expect(dialog).to_have_count(0)
    with app.app_context():
        assert carts.member_cart(db.session, member) == {soap: cap}


def test_a_restock_past_supply_is_refused_and_the_total_shows_before_placing(phone, shop):
    base_url, app = shop
    liquid = product_id(app, "顶俏浓缩洗衣液 2kg")
    with app.app_context():
        factory_location = db.session.scalar(select(FactoryStore.location_id))
        supply = db.session.scalar(select(StockLevel.on_hand - StockLevel.reserved).where(
            StockLevel.location_id == factory_location, StockLevel.product_id == liquid))
        price = db.session.get(Product, liquid).outlet_price_fen
    demo_login(phone, base_url, OUTLET)
    phone.goto(f"{base_url}/restock/new")
    wait_for_htmx(phone)
    quantity = phone.get_by_label("顶俏浓缩洗衣液 2kg 数量")
    quantity.fill("9999")
    total, problems = phone.locator("#restock-total"), phone.locator("#restock-problems")
    expect(problems).to_contain_text(f"供货方只有 {supply} 件可发，不能进 9999 件")
    expect(total).to_contain_text("共 9999 件")
    no_sideways_scroll(phone)
    shot(phone, "restock-over-supply")
    phone.get_by_role("button", name="提交进货单").click()
    confirm_dialog(phone)
    expect(phone.locator("#flash")).to_contain_text(f"供货方只有 {supply} 件可发")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RestockOrder)) == 0

    wait_for_htmx(phone)  # the refused form came back in place: its total listens once the swap has settled
    quantity.fill("3")
    expect(total).to_contain_text(f"¥{price * 3 // 100}.{price * 3 % 100:02d}")
    expect(total).to_contain_text("共 3 件")
    expect(problems).not_to_contain_text("供货方只有")
    shot(phone, "restock-total")
    phone.get_by_role("button", name="提交进货单").click()
    confirm_dialog(phone)
    phone.wait_for_url(re.compile(r".*/restock/\d+$"))
    with app.app_context():
        assert db.session.execute(select(RestockItem.product_id, RestockItem.quantity)).all() == [(liquid, 3)]


def test_a_double_tap_on_ship_ships_once(phone, shop):
    base_url, app = shop
    liquid = product_id(app, "顶俏浓缩洗衣液 2kg")
    with app.app_context():
        owner = db.session.scalar(select(User.id).where(User.nickname == OUTLET))
        order_id = place_restock(db.session, owner, {liquid: 4}).id
    demo_login(phone, base_url, FACTORY_OWNER)
    phone.goto(f"{base_url}/restock/{order_id}")
    wait_for_htmx(phone)
    key = phone.locator("#ship-form input[name=submission_key]").input_value()
    phone.get_by_role("button", name="确认发货").click()
    dialog = phone.get_by_role("alertdialog")
    expect(dialog).to_contain_text("确定按所填数量发货")
    shot(phone, "ship-confirm")
    dialog.get_by_role("button", name="确定").dblclick()
    expect(phone.locator(".dq-status__label")).to_have_text("已发货，待收货")

    # The same form once more, as a retried request would send it: answered like the first, nothing shipped.
    token = phone.locator('meta[name="csrf-token"]').get_attribute("content")
    again = phone.request.post(f"{base_url}/restock/{order_id}/ship", headers={"X-CSRFToken": token},
                               form={f"qty-{liquid}": "4", "submission_key": key}, max_redirects=0)
    assert again.status == 303 and again.headers["location"].endswith(f"/restock/{order_id}")
    with app.app_context():
        moved = db.session.scalars(select(StockMovement.on_hand_delta).where(
            StockMovement.restock_order_id == order_id, StockMovement.reason == StockReason.RESTOCK_OUT)).all()
        assert moved == [-4]
        assert db.session.scalar(select(RestockItem.shipped_quantity).where(
            RestockItem.restock_order_id == order_id)) == 4
