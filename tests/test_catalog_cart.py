"""Catalog, cart and the checkout outlet list: the services directly, then the same behaviour over HTTP as
whole pages and htmx fragments, including the visitor's cart surviving a real WeChat login."""
import html as html_lib
import math
import re
from urllib.parse import quote

import pytest
from sqlalchemy import select, update

from dingqiao.extensions import db
from dingqiao.models import (
    CartItem,
    Category,
    Identity,
    LocationKind,
    Outlet,
    Product,
    Region,
    SiteStatus,
    StockLevel,
    StockLocation,
    User,
)
from dingqiao.services import NotFound, catalog, demo_data
from dingqiao.services import cart as carts
from dingqiao.services import outlets as pickup
from dingqiao.services.demo_data import CATEGORIES, OUTLETS, PRODUCTS, seed_demo
from dingqiao.web import domain_error_status
from tests.conftest import csrf_token
from tests.factories import make_outlet, make_product, make_user, stock
from tests.fake_wechat import FakeWeChatUser
from tests.test_access import log_in
from tests.test_wechat_login import wechat_round_trip

HX = {"HX-Request": "true"}
SEED_NAMES = [row[1] for row in PRODUCTS]
SEED_PRICE = {row[1]: row[3] for row in PRODUCTS}
LAUNDRY_LIQUID = "顶俏浓缩洗衣液 2kg"  # seed product 0: no stock at 文三路 (the first outlet)
DISH_SOAP = "顶俏洗洁精 1.5kg"
SHOWER_GEL = "顶俏沐浴露 1L"
LAVENDER = "顶俏薰衣草洗衣液 3kg"  # seed product 1: stocked at every outlet, 13/14/15 units
SHORT_OUTLET = OUTLETS[0][0]  # 文三路邻里便利店


@pytest.fixture
def seeded(app, monkeypatch):
    """The demo data set, minus the product pictures (drawing them is most of the seed's time)."""
    monkeypatch.setattr(demo_data, "_draw_product_image", lambda *_args, **_kwargs: None)
    with app.app_context():
        seed_demo(db.session, app.config["UPLOAD_FOLDER"])


# --- helpers ------------------------------------------------------------------------------------------

def product_named(name: str) -> Product:
    return db.session.execute(select(Product).where(Product.name == name)).scalar_one()


def product_id(app, name: str) -> int:
    with app.app_context():
        return product_named(name).id


def seed_matches(*words: str, category: int | None = None) -> list[str]:
    """The oracle for search: seed products whose name or subtitle holds every word, case-insensitively."""
    return [
        name for cat, name, subtitle, *_ in PRODUCTS
        if (category is None or cat == category)
        and all(w.lower() in name.lower() or w.lower() in subtitle.lower() for w in words)
    ]


def names(page: catalog.ProductPage) -> list[str]:
    return [p.name for p in page.products]


def card_names(body: str) -> list[str]:
    return re.findall(r'<div class="dq-card__name">([^<]+)</div>', body)


def cards_by_name(body: str) -> dict[str, str]:
    pieces = re.findall(r'<a class="dq-card.*?</a>', body, re.S)
    return {re.search(r'dq-card__name">([^<]+)<', piece).group(1): piece for piece in pieces}


def yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def identity_price(member_price_fen: int, identity: Identity) -> int:
    """The seed's price rule, written out here: outlets pay 80%, factory stores 65%, floored to the fen."""
    return {Identity.MEMBER: member_price_fen, Identity.OUTLET: member_price_fen * 80 // 100,
            Identity.FACTORY: member_price_fen * 65 // 100}[identity]


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


def outlets_by_distance(lat: float, lng: float) -> list[tuple[str, float]]:
    found = [(name, haversine_m(lat, lng, la / 1e6, ln / 1e6)) for name, _addr, la, ln, *_ in OUTLETS]
    return sorted(found, key=lambda item: item[1])


def outlet_rows(body: str) -> list[dict]:
    """The outlet list as the member sees it: name, distance text, stock note, radio state."""
    rows = []
    for label in re.findall(r'<label class="weui-cell.*?</label>', body, re.S):
        first = re.search(r'<p>([^<]+?)(?: <span class="dq-distance">([^<]+)</span>)?</p>', label)
        radio = re.search(r'<input type="radio"[^>]*>', label).group(0)
        rows.append({
            "name": first.group(1).strip(),
            "distance": first.group(2),
            "short": "dq-outlet--short" in label and "部分商品缺货" in label,
            "in_stock": "有货" in label,
            "disabled": " disabled" in radio,
            "checked": " checked" in radio,
        })
    return rows


def member_cart_of(app, user_id: int) -> dict[int, int]:
    with app.app_context():
        return carts.member_cart(db.session, user_id)


# --- 1. catalog service -------------------------------------------------------------------------------

def test_paging_walks_the_whole_catalog_in_order_and_knows_the_last_page(session, seeded):
    first = catalog.list_products(session)
    second = catalog.list_products(session, page=2)
    assert catalog.PAGE_SIZE == 10
    assert (first.page, len(first.products), first.has_more) == (1, 10, True)
    # 20 products: page 2 is exactly full and still the last one.
    assert (second.page, len(second.products), second.has_more) == (2, 10, False)
    assert names(first) + names(second) == SEED_NAMES
    assert set(first.available) == {p.id for p in first.products}
    third = catalog.list_products(session, page=3)
    assert third.products == [] and third.has_more is False
    assert names(catalog.list_products(session, page=0)) == names(first)
    assert catalog.list_products(session, page=-4).page == 1

    # One more product makes page 2 not the last; page 3 carries the one left over.
    make_product(999, "加页测试品")
    assert catalog.list_products(session, page=2).has_more is True
    last = catalog.list_products(session, page=3)
    assert len(last.products) == 1 and last.has_more is False


def test_category_filter_lists_only_that_category(session, seeded):
    categories = catalog.active_categories(session)
    assert [c.name for c in categories] == CATEGORIES
    laundry, kitchen = categories[0], categories[1]
    page = catalog.list_products(session, category_id=laundry.id)
    assert names(page) == seed_matches(category=0) and len(page.products) == 6
    assert {p.category_id for p in page.products} == {laundry.id}
    # Category and keyword narrow together.
    assert names(catalog.list_products(session, category_id=kitchen.id, keyword="洗")) == seed_matches("洗", category=1)
    assert catalog.list_products(session, category_id=kitchen.id, keyword="洗衣液").products == []
    # A category with no products on sale is an empty page, not everything.
    empty = Category(name="空分类", sort_order=9)
    session.add(empty)
    session.commit()
    assert catalog.list_products(session, category_id=empty.id).products == []


CHINESE_SEARCHES = [
    # keyword, a product it must find, one it must not
    ("洗衣", "顶俏洗护全家福套装", DISH_SOAP),  # the set matches on its subtitle "洗衣液+柔顺剂+洗洁精"
    ("抑菌", "顶俏泡沫洗手液 300ml", LAUNDRY_LIQUID),  # only in a subtitle: "抑菌99.9% · 儿童适用"
    ("留香", "顶俏薰衣草洗衣液 3kg", LAUNDRY_LIQUID),  # only in a subtitle: "持久留香 · 家庭装"
    ("除菌", "顶俏除菌洗衣粉 2.5kg", "顶俏泡沫洗手液 300ml"),
    ("ML", "顶俏玻璃清洁剂 500ml", LAUNDRY_LIQUID),  # Latin letters match whatever their case
]


def test_chinese_keywords_match_name_or_subtitle(session, seeded):
    for keyword, must_include, must_exclude in CHINESE_SEARCHES:
        found = names(catalog.list_products(session, keyword=keyword))
        assert found == seed_matches(keyword), keyword
        assert must_include in found and must_exclude not in found, keyword
        assert 0 < len(found) < len(SEED_NAMES), keyword


def test_several_words_must_all_match(session, seeded):
    both = names(catalog.list_products(session, keyword="洗衣液 家"))
    assert both == seed_matches("洗衣液", "家") == ["顶俏薰衣草洗衣液 3kg", "顶俏洗护全家福套装"]
    # Each word alone finds more: the words AND together, they do not OR.
    assert len(seed_matches("洗衣液")) > len(both) and len(seed_matches("家")) > len(both)
    messy = catalog.clean_keyword("  洗衣液 \t  家  ")
    assert messy == "洗衣液 家" and names(catalog.list_products(session, keyword=messy)) == both
    assert catalog.list_products(session, keyword="洗衣液 不存在的词").products == []


LITERAL_SEARCHES = [
    # Only the two subtitles with a literal "%" ("除菌率99%", "抑菌99.9%"), not every product.
    ("%", ["顶俏除菌洗衣粉 2.5kg", "顶俏泡沫洗手液 300ml"]),
    ("99%", ["顶俏除菌洗衣粉 2.5kg"]),  # as a wildcard it would also match "99.9%"
    ("_", []),
    ("9_9", []),  # as a wildcard it would match "99.9"
    ("洗%液", []),  # as a wildcard it would match every 洗衣液
    ("\\", []),
    ("\\%", []),
]


def test_like_wildcards_in_the_keyword_are_literal(session, seeded):
    for keyword, expected in LITERAL_SEARCHES:
        assert names(catalog.list_products(session, keyword=keyword)) == expected, keyword


def test_percent_finds_nothing_when_no_product_has_one(session):
    make_product(1000, "纯棉洗衣液")
    make_product(1000, "厨房_清洁")
    assert catalog.list_products(session, keyword="%").products == []
    assert names(catalog.list_products(session, keyword="_")) == ["厨房_清洁"]


def test_products_off_sale_are_never_listed(session, seeded):
    product = product_named(LAUNDRY_LIQUID)
    product.is_on_sale = False
    session.commit()
    listed = names(catalog.list_products(session)) + names(catalog.list_products(session, page=2))
    assert LAUNDRY_LIQUID not in listed and len(listed) == 19
    assert catalog.list_products(session, page=2).has_more is False
    assert LAUNDRY_LIQUID not in names(catalog.list_products(session, keyword="浓缩"))
    assert LAUNDRY_LIQUID not in names(catalog.list_products(session, category_id=product.category_id))
    with pytest.raises(NotFound):
        catalog.get_product(session, product.id)


def test_available_units_count_free_units_at_active_outlets_only(session):
    product, unstocked = make_product(3990, "库存测试"), make_product(1990, "无库存测试")
    active, suspended = make_outlet(make_user()), make_outlet(make_user())
    active_level = stock(active, product, 5)
    stock(suspended, product, 7)
    warehouse = StockLocation(kind=LocationKind.PLATFORM, name="平台总仓")
    factory = StockLocation(kind=LocationKind.FACTORY, name="工厂店")
    session.add_all([warehouse, factory])
    session.flush()
    session.add_all([StockLevel(location_id=warehouse.id, product_id=product.id, on_hand=500),
                     StockLevel(location_id=factory.id, product_id=product.id, on_hand=120)])
    session.commit()
    both = catalog.available_units(session, [product.id, unstocked.id])
    assert both == {product.id: 12, unstocked.id: 0}

    suspended.status = SiteStatus.SUSPENDED
    session.commit()
    assert catalog.available_units(session, [product.id]) == {product.id: 5}

    active_level.reserved = 3
    session.commit()
    assert catalog.available_units(session, [product.id]) == {product.id: 2}

    active_level.reserved = 5  # every unit at the active outlet is held for an unpaid order: sold out
    session.commit()
    assert catalog.available_units(session, [product.id]) == {product.id: 0}
    page = catalog.list_products(session)
    assert page.available == {product.id: 0, unstocked.id: 0}
    assert catalog.available_units(session, []) == {}


# --- 2. catalog over HTTP -----------------------------------------------------------------------------

def test_search_as_you_type_swaps_only_the_catalog_block(client, seeded):
    response = client.get("/?q=洗衣", headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<div id="catalog">') and body.rstrip().endswith("</div>")
    assert card_names(body) == seed_matches("洗衣")
    assert 'class="dq-search"' not in body  # the input stays put while the list under it changes
    assert f"q={quote('洗衣')}" in body  # the category chips keep the keyword
    assert "HX-Request" in response.headers["Vary"]
    # The same address without htmx is the whole page, the keyword back in the search box.
    whole = client.get("/?q=洗衣").get_data(as_text=True)
    assert whole.startswith("<!doctype html>") and 'name="q" value="洗衣"' in whole
    assert card_names(whole) == seed_matches("洗衣")


def test_a_search_without_results_says_so_in_chinese(client, seeded):
    body = client.get("/?q=不存在的东西", headers=HX).get_data(as_text=True)
    assert "<html" not in body and card_names(body) == []
    assert "没有找到“不存在的东西”相关的商品" in body
    assert "dq-more" not in body
    # The keyword is echoed escaped.
    hostile = client.get("/?q=<img src=x onerror=alert(1)>", headers=HX).get_data(as_text=True)
    assert "没有找到" in hostile and "<img src=x" not in hostile and "&lt;img src=x" in hostile


def test_load_more_fragments_end_on_the_last_page(client, seeded):
    first = client.get("/", headers=HX).get_data(as_text=True)
    assert card_names(first) == SEED_NAMES[:10]
    assert re.search(r'<a class="dq-more" href="/\?page=2" hx-get="/\?page=2" hx-trigger="revealed"', first)
    response = client.get("/?page=2", headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert 'id="catalog"' not in body and "dq-chip" not in body  # only cards, appended where the link was
    assert card_names(body) == SEED_NAMES[10:]
    assert "dq-more" not in body and "加载更多" not in body and "page=3" not in body


def test_load_more_keeps_the_keyword(client, seeded):
    first = client.get("/?q=顶俏", headers=HX).get_data(as_text=True)
    assert len(card_names(first)) == 10
    more = html_lib.unescape(re.search(r'<a class="dq-more" href="([^"]+)"', first).group(1))
    assert "page=2" in more and f"q={quote('顶俏')}" in more
    body = client.get(more, headers=HX).get_data(as_text=True)
    assert card_names(body) == SEED_NAMES[10:] and "dq-more" not in body


def test_sold_out_product_is_flagged_and_cannot_be_added(app, client, seeded):
    in_stock = client.get("/").get_data(as_text=True)
    assert "已售罄" not in in_stock and "dq-card--soldout" not in in_stock
    with app.app_context():
        gel = product_named(SHOWER_GEL)
        gel_id = gel.id
        outlet_locations = select(Outlet.location_id)
        # Every unit at every outlet is reserved; the platform warehouse (500) and factory (120) still hold stock.
        db.session.execute(
            update(StockLevel)
            .where(StockLevel.product_id == gel_id, StockLevel.location_id.in_(outlet_locations))
            .values(reserved=StockLevel.on_hand)
        )
        db.session.commit()
        other_units = catalog.available_units(db.session, [product_named(DISH_SOAP).id])
    page = client.get("/?page=2", headers=HX).get_data(as_text=True)
    cards = cards_by_name(page)
    assert "已售罄" in cards[SHOWER_GEL] and "dq-card--soldout" in cards[SHOWER_GEL]
    assert page.count("已售罄") == 1  # the others are still in stock

    product = client.get(f"/products/{gel_id}").get_data(as_text=True)
    assert '<button class="dq-buybar__add" type="button" disabled>已售罄</button>' in product
    assert "已售罄，门店补货中" in product
    assert "加入购物车" not in product and "立即购买" not in product

    soap = client.get(f"/products/{product_id(app, DISH_SOAP)}").get_data(as_text=True)
    units = next(iter(other_units.values()))
    assert units > 0 and f"门店现货 {units} 件" in soap
    assert '<button class="dq-buybar__add" type="submit">加入购物车</button>' in soap and "disabled" not in soap


# --- 3. cart service ----------------------------------------------------------------------------------

def test_member_adds_sets_and_removes_lines(session):
    alice, bob = make_user("爱丽丝"), make_user("鲍勃")
    soap, gel = make_product(1590, "洗洁精"), make_product(3990, "沐浴露")
    assert carts.add_to_member_cart(session, alice.id, soap.id, 2) == 2
    assert carts.add_to_member_cart(session, alice.id, soap.id, 3) == 5
    assert carts.add_to_member_cart(session, alice.id, gel.id, 1) == 1
    assert carts.member_cart(session, alice.id) == {soap.id: 5, gel.id: 1}
    carts.set_member_cart_quantity(session, alice.id, soap.id, 7)
    assert carts.member_cart(session, alice.id) == {soap.id: 7, gel.id: 1}
    carts.set_member_cart_quantity(session, alice.id, gel.id, 0)
    assert carts.member_cart(session, alice.id) == {soap.id: 7}
    assert len(session.scalars(select(CartItem).where(CartItem.user_id == alice.id)).all()) == 1
    # Setting a line that is not there yet creates it.
    carts.set_member_cart_quantity(session, alice.id, gel.id, 4)
    assert carts.member_cart(session, alice.id) == {soap.id: 7, gel.id: 4}
    assert carts.member_cart(session, bob.id) == {}

    member = carts.view_cart(session, carts.member_cart(session, alice.id), Identity.MEMBER)
    assert member.total_fen == 7 * 1590 + 4 * 3990 and member.item_count == 11
    outlet = carts.view_cart(session, carts.member_cart(session, alice.id), Identity.OUTLET)
    assert outlet.total_fen == 7 * (1590 * 80 // 100) + 4 * (3990 * 80 // 100)


def test_a_line_holds_at_most_99(session):
    user, product, other = make_user(), make_product(), make_product(1990, "另一件")
    assert carts.add_to_member_cart(session, user.id, product.id, 99) == 99
    with pytest.raises(carts.CartError, match="最多购买 99 件") as refused:
        carts.add_to_member_cart(session, user.id, product.id, 1)
    assert domain_error_status(refused.value) == 400
    with pytest.raises(carts.CartError, match="最多购买 99 件"):
        carts.set_member_cart_quantity(session, user.id, product.id, 100)
    with pytest.raises(carts.CartError, match="最多购买 99 件"):
        carts.add_to_member_cart(session, user.id, other.id, 100)
    assert carts.member_cart(session, user.id) == {product.id: 99}
    with pytest.raises(carts.CartError, match="最多购买 99 件"):
        carts.add_to_guest_cart(session, {product.id: 98}, product.id, 2)
    with pytest.raises(carts.CartError):
        carts.add_to_member_cart(session, user.id, other.id, 0)


@pytest.mark.parametrize("raw", ["abc", "-1", "1e3", "", "   ", None, "1.5", "100", "0x10", "一", "1 2"])
def test_junk_quantities_are_refused_in_chinese(raw):
    with pytest.raises(carts.CartError) as refused:
        carts.parse_quantity(raw)
    assert re.search(r"[\u4e00-\u9fff]", refused.value.message)


@pytest.mark.parametrize(("raw", "quantity"), [("1", 1), (" 7 ", 7), ("99", 99), ("0", 0), (3, 3)])
def test_sensible_quantities_are_read(raw, quantity):
    assert carts.parse_quantity(raw) == quantity


@pytest.mark.parametrize("raw", ["1_0", "１０", "²", "٣"])
def test_quantities_are_ascii_digits_only(raw):
    # int() alone reads "1_0" as 10 and "１０" as 10: the parser must not (it did before the ASCII-only check).
    with pytest.raises(carts.CartError):
        carts.parse_quantity(raw)


def test_products_off_sale_cannot_be_added_but_can_be_removed(session):
    user, product = make_user(), make_product()
    carts.add_to_member_cart(session, user.id, product.id, 2)
    product.is_on_sale = False
    session.commit()
    with pytest.raises(NotFound, match="已下架"):
        carts.add_to_member_cart(session, user.id, product.id, 1)
    with pytest.raises(NotFound, match="已下架"):
        carts.set_member_cart_quantity(session, user.id, product.id, 3)
    with pytest.raises(NotFound, match="已下架"):
        carts.add_to_guest_cart(session, {}, product.id, 1)
    with pytest.raises(NotFound):
        carts.add_to_member_cart(session, user.id, 987_654, 1)
    assert carts.member_cart(session, user.id) == {product.id: 2}
    assert carts.view_cart(session, {product.id: 2}, Identity.MEMBER).lines == []  # it drops out of the view
    carts.set_member_cart_quantity(session, user.id, product.id, 0)
    assert carts.member_cart(session, user.id) == {}


def test_a_cart_holds_at_most_30_different_products(session):
    user = make_user()
    products = [make_product(1000 + i, f"商品{i:02d}") for i in range(carts.MAX_LINES + 1)]
    for product in products[:30]:
        carts.add_to_member_cart(session, user.id, product.id, 1)
    with pytest.raises(carts.CartError, match="最多放 30 种"):
        carts.add_to_member_cart(session, user.id, products[30].id, 1)
    with pytest.raises(carts.CartError, match="最多放 30 种"):
        carts.set_member_cart_quantity(session, user.id, products[30].id, 1)
    assert carts.add_to_member_cart(session, user.id, products[0].id, 1) == 2  # more of a line it has is fine
    assert len(carts.member_cart(session, user.id)) == 30

    guest = {p.id: 1 for p in products[:30]}
    with pytest.raises(carts.CartError, match="最多放 30 种"):
        carts.add_to_guest_cart(session, guest, products[30].id, 1)
    with pytest.raises(carts.CartError, match="最多放 30 种"):
        carts.set_guest_cart_quantity(session, guest, products[30].id, 1)
    assert carts.set_guest_cart_quantity(session, guest, products[0].id, 5)[products[0].id] == 5

    # A full member cart takes a visitor's extra quantities at login, but no new line.
    carts.merge_guest_cart(session, user.id, {products[1].id: 4, products[30].id: 1})
    merged = carts.member_cart(session, user.id)
    assert len(merged) == 30 and merged[products[1].id] == 5 and products[30].id not in merged


def test_guest_cart_functions_return_new_mappings_and_leave_the_input_alone(session):
    soap, gel = make_product(1590, "洗洁精"), make_product(3990, "沐浴露")
    cart = {soap.id: 2}
    added = carts.add_to_guest_cart(session, cart, soap.id, 3)
    assert added == {soap.id: 5} and cart == {soap.id: 2} and added is not cart
    assert carts.add_to_guest_cart(session, cart, gel.id, 1) == {soap.id: 2, gel.id: 1}
    assert cart == {soap.id: 2}
    changed = carts.set_guest_cart_quantity(session, cart, soap.id, 9)
    assert changed == {soap.id: 9} and cart == {soap.id: 2} and changed is not cart
    removed = carts.set_guest_cart_quantity(session, cart, soap.id, 0)
    assert removed == {} and cart == {soap.id: 2}
    with pytest.raises(carts.CartError):
        carts.add_to_guest_cart(session, cart, soap.id, 98)
    assert cart == {soap.id: 2}
    assert session.scalars(select(CartItem)).first() is None  # a visitor's cart never touches the table


def test_merge_adds_quantities_caps_at_99_and_skips_products_off_sale(session):
    user = make_user()
    soap, gel, brush, retired = (make_product(1000 + i, n) for i, n in enumerate(["洗洁精", "沐浴露", "牙刷", "停售品"]))
    carts.add_to_member_cart(session, user.id, soap.id, 60)
    carts.add_to_member_cart(session, user.id, gel.id, 1)
    retired.is_on_sale = False
    session.commit()
    guest = {soap.id: 50, brush.id: 2, retired.id: 3, 987_654: 1}
    snapshot = dict(guest)
    carts.merge_guest_cart(session, user.id, guest)
    assert carts.member_cart(session, user.id) == {soap.id: 99, gel.id: 1, brush.id: 2}
    assert guest == snapshot
    carts.merge_guest_cart(session, user.id, {brush.id: 3})
    assert carts.member_cart(session, user.id)[brush.id] == 5
    carts.merge_guest_cart(session, user.id, {})
    assert carts.member_cart(session, user.id) == {soap.id: 99, gel.id: 1, brush.id: 5}


# --- 4. cart over HTTP --------------------------------------------------------------------------------

def test_a_visitors_cart_survives_the_real_wechat_login(app, client, seeded, fake_wechat):
    liquid, soap = product_id(app, LAUNDRY_LIQUID), product_id(app, DISH_SOAP)
    token = csrf_token(client)
    plain = client.post("/cart/items", data={"product_id": liquid, "quantity": "2"}, headers={"X-CSRFToken": token})
    assert plain.status_code == 302 and plain.headers["Location"] == "/cart/"
    toast = client.post("/cart/items", data={"product_id": soap, "quantity": "1"}, headers={**HX, "X-CSRFToken": token})
    assert toast.status_code == 200 and "<html" not in toast.get_data(as_text=True)
    assert "已加入购物车（共 3 件）" in toast.get_data(as_text=True)
    total = 2 * SEED_PRICE[LAUNDRY_LIQUID] + SEED_PRICE[DISH_SOAP]
    page = client.get("/cart/").get_data(as_text=True)
    assert LAUNDRY_LIQUID in page and DISH_SOAP in page and yuan(total) in page and "共 3 件" in page
    with app.app_context():
        assert db.session.scalars(select(CartItem)).first() is None  # a visitor's cart lives in the session

    fake_wechat.current_user = FakeWeChatUser("o-cart-visitor", "购物达人")
    done = wechat_round_trip(client, fake_wechat, entry="/checkout/")
    assert done.status_code == 302 and done.headers["Location"] == "/checkout/"
    with app.app_context():
        user_id = db.session.execute(select(User.id).where(User.openid == "o-cart-visitor")).scalar_one()
    assert member_cart_of(app, user_id) == {liquid: 2, soap: 1}
    with client.session_transaction() as s:
        assert "cart" not in s  # merged once; a later login cannot add it again
    checkout = client.get("/checkout/").get_data(as_text=True)
    assert LAUNDRY_LIQUID in checkout and yuan(total) in checkout

    # Logged out, the cart is not on the device any more; it is the member's, in the database.
    client.post("/auth/logout", headers={"X-CSRFToken": csrf_token(client)})
    assert "购物车还是空的" in client.get("/cart/").get_data(as_text=True)
    assert member_cart_of(app, user_id) == {liquid: 2, soap: 1}


def test_login_merges_the_visitors_lines_into_the_members_saved_cart(app, client, seeded, fake_wechat):
    liquid, gel = product_id(app, LAUNDRY_LIQUID), product_id(app, SHOWER_GEL)
    with app.app_context():
        user_id = make_user("老会员", openid="o-returning").id
        carts.add_to_member_cart(db.session, user_id, liquid, 98)
    token = csrf_token(client)
    for pid, quantity in ((liquid, "5"), (gel, "1")):
        assert client.post("/cart/items", data={"product_id": pid, "quantity": quantity},
                           headers={"X-CSRFToken": token}).status_code == 302
    fake_wechat.current_user = FakeWeChatUser("o-returning", "老会员")
    wechat_round_trip(client, fake_wechat, entry="/me/")
    assert member_cart_of(app, user_id) == {liquid: 99, gel: 1}


def test_htmx_line_update_returns_the_cart_body_with_the_new_total(app, client, seeded):
    for identity in (Identity.MEMBER, Identity.OUTLET, Identity.FACTORY):
        check_line_update_at_identity_price(app, client, identity)


def check_line_update_at_identity_price(app, client, identity: Identity) -> None:
    liquid, soap = product_id(app, LAUNDRY_LIQUID), product_id(app, DISH_SOAP)
    with app.app_context():
        user_id = make_user(f"结算{identity.value}", identity=identity).id
        carts.add_to_member_cart(db.session, user_id, liquid, 1)
        carts.add_to_member_cart(db.session, user_id, soap, 2)
    log_in(client, user_id)
    token = csrf_token(client)
    liquid_price = identity_price(SEED_PRICE[LAUNDRY_LIQUID], identity)
    soap_price = identity_price(SEED_PRICE[DISH_SOAP], identity)

    response = client.post(f"/cart/items/{liquid}", data={"quantity": "3"}, headers={**HX, "X-CSRFToken": token})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<div id="cart-body">')
    assert f"合计 <span class=\"dq-price__now\">{yuan(3 * liquid_price + 2 * soap_price)}</span>" in body
    assert "共 5 件" in body and yuan(liquid_price) in body and f"{identity.label}价" in body
    assert member_cart_of(app, user_id) == {liquid: 3, soap: 2}

    removed = client.post(f"/cart/items/{soap}", data={"quantity": "0"}, headers={**HX, "X-CSRFToken": token})
    body = removed.get_data(as_text=True)
    assert DISH_SOAP not in body and f"合计 <span class=\"dq-price__now\">{yuan(3 * liquid_price)}</span>" in body
    assert member_cart_of(app, user_id) == {liquid: 3}

    too_many = client.post(f"/cart/items/{liquid}", data={"quantity": "100"}, headers={**HX, "X-CSRFToken": token})
    assert too_many.status_code == 400 and too_many.headers["HX-Retarget"] == "#flash"
    assert "1 到 99" in too_many.get_data(as_text=True)
    junk = client.post(f"/cart/items/{liquid}", data={"quantity": "abc"}, headers={**HX, "X-CSRFToken": token})
    assert junk.status_code == 400 and "请输入正确的数量" in junk.get_data(as_text=True)
    assert member_cart_of(app, user_id) == {liquid: 3}


def test_a_visitor_can_change_a_line_by_htmx_too(app, client, seeded):
    gel = product_id(app, SHOWER_GEL)
    token = csrf_token(client)
    client.post("/cart/items", data={"product_id": gel, "quantity": "1"}, headers={"X-CSRFToken": token})
    body = client.post(f"/cart/items/{gel}", data={"quantity": "4"},
                       headers={**HX, "X-CSRFToken": token}).get_data(as_text=True)
    assert body.lstrip().startswith('<div id="cart-body">') and yuan(4 * SEED_PRICE[SHOWER_GEL]) in body
    with client.session_transaction() as s:
        assert s["cart"] == {str(gel): 4}


def test_cart_posts_without_the_csrf_token_are_refused(app, client, seeded):
    liquid = product_id(app, LAUNDRY_LIQUID)
    refused = client.post("/cart/items", data={"product_id": liquid, "quantity": "1"})
    assert refused.status_code == 400 and "页面已过期" in refused.get_data(as_text=True)
    forged = client.post("/cart/items", data={"product_id": liquid, "quantity": "1"}, headers={"X-CSRFToken": "x"})
    assert forged.status_code == 400
    assert "购物车还是空的" in client.get("/cart/").get_data(as_text=True)

    with app.app_context():
        user_id = make_user("会员").id
        carts.add_to_member_cart(db.session, user_id, liquid, 2)
    log_in(client, user_id)
    update_refused = client.post(f"/cart/items/{liquid}", data={"quantity": "0"}, headers=HX)
    assert update_refused.status_code == 400
    add_refused = client.post("/cart/items", data={"product_id": liquid, "quantity": "1"}, headers=HX)
    assert add_refused.status_code == 400
    assert member_cart_of(app, user_id) == {liquid: 2}


def test_adding_by_http_follows_the_service_rules(app, client, seeded):
    liquid = product_id(app, LAUNDRY_LIQUID)
    token = csrf_token(client)
    for quantity in ("abc", "-1", "1e3", "", "0"):
        response = client.post("/cart/items", data={"product_id": liquid, "quantity": quantity},
                               headers={**HX, "X-CSRFToken": token})
        assert response.status_code == 400, quantity
    missing = client.post("/cart/items", data={"product_id": "987654", "quantity": "1"},
                          headers={**HX, "X-CSRFToken": token})
    assert missing.status_code == 404 and "已下架" in missing.get_data(as_text=True)
    no_product = client.post("/cart/items", data={"product_id": "abc"}, headers={**HX, "X-CSRFToken": token})
    assert no_product.status_code == 400 and "请选择商品" in no_product.get_data(as_text=True)
    with client.session_transaction() as s:
        assert not s.get("cart")


def test_a_superscript_digit_as_an_id_is_a_clean_400(app, client, seeded):
    # "²".isdigit() is True but int("²") raises: an isdigit() check in front of int() made this a 500.
    token = csrf_token(client)
    add = client.post("/cart/items", data={"product_id": "²", "quantity": "1"}, headers={**HX, "X-CSRFToken": token})
    with app.app_context():
        user_id = make_user("结算").id
        carts.add_to_member_cart(db.session, user_id, product_named(LAUNDRY_LIQUID).id, 1)
    log_in(client, user_id)
    place = client.post("/checkout/", data={"outlet_id": "²"}, headers={**HX, "X-CSRFToken": csrf_token(client)})
    assert (add.status_code, place.status_code) == (400, 400)


def test_huge_numbers_in_the_address_are_not_server_errors(app, client, seeded):
    # Unchecked, a number beyond 64 bits reaches the database: OverflowError (SQLite) / DataError (Postgres) -> 500.
    headers = {"X-CSRFToken": csrf_token(client)}
    huge = "99999999999999999999"
    statuses = {
        "page": client.get(f"/?page={huge}").status_code,  # an empty page
        "category": client.get(f"/?category={huge}").status_code,  # an empty category
        "product": client.get(f"/products/{huge}").status_code,  # no such product
        "cart line": client.post(f"/cart/items/{huge}", data={"quantity": "1"}, headers=headers).status_code,
        "cart add": client.post("/cart/items", data={"product_id": huge, "quantity": "1"}, headers=headers).status_code,
    }
    assert {k: statuses[k] for k in ("page", "category", "product")} == {"page": 200, "category": 200, "product": 404}
    assert statuses["cart line"] in (400, 404) and statuses["cart add"] in (400, 404)  # a clean refusal


# --- 5. checkout outlet list --------------------------------------------------------------------------

@pytest.fixture
def member_with_laundry_liquid(app, client, seeded):
    """A logged-in member whose cart holds the product 文三路 has none of."""
    with app.app_context():
        user_id = make_user("结算会员").id
        carts.add_to_member_cart(db.session, user_id, product_named(LAUNDRY_LIQUID).id, 1)
    log_in(client, user_id)
    return user_id


POSITIONS = [(30.2840, 120.1180), (30.2920, 120.1370), (30.2790, 120.1330)]


def name_order_by_region(session) -> list[str]:
    rows = session.execute(select(Region.name, Outlet.name).join(Region, Region.id == Outlet.region_id)
                           .where(Outlet.status == SiteStatus.ACTIVE))
    return [outlet for _region, outlet in sorted(rows, key=lambda row: (row[0], row[1]))]


def test_pickup_options_are_nearest_first_with_plausible_distances(session, seeded):
    orders = set()
    for lat, lng in POSITIONS:
        options = pickup.pickup_options(session, {}, pickup.parse_position(str(lat), str(lng)))
        expected = outlets_by_distance(lat, lng)
        assert [o.outlet.name for o in options] == [name for name, _ in expected]
        for option, (_name, metres) in zip(options, expected):
            assert abs(option.distance_m - metres) <= 5 and option.distance_m < 3000
            assert option.has_all_goods  # an empty cart is in stock anywhere
        orders.add(tuple(o.outlet.name for o in options))
    assert len(orders) == 3  # the positions give three different orders, so the sort is what decides

    # Far from every outlet (Shanghai): nothing in the search box, so all of them, still nearest first.
    far = pickup.pickup_options(session, {}, pickup.parse_position("31.2304", "121.4737"))
    expected = outlets_by_distance(31.2304, 121.4737)
    assert [o.outlet.name for o in far] == [name for name, _ in expected]
    assert all(150_000 < o.distance_m < 180_000 for o in far)
    assert [o.distance_m for o in far] == sorted(o.distance_m for o in far)


def test_pickup_options_without_a_position_go_by_region_then_name(session, seeded):
    shanghai = session.execute(select(Region).where(Region.name == "上海市浦东新区")).scalar_one()
    make_outlet(make_user("浦东店主"), region=shanghai)
    closed = session.execute(select(Outlet).where(Outlet.name == OUTLETS[2][0])).scalar_one()
    closed.status = SiteStatus.SUSPENDED
    session.commit()
    options = pickup.pickup_options(session, {})
    listed = [o.outlet.name for o in options]
    assert listed == name_order_by_region(session)
    assert len(listed) == 3 and OUTLETS[2][0] not in listed
    assert listed[0].startswith("网点")  # 上海… sorts before 杭州…, though 网点 would sort last by name alone
    assert all(o.distance_m is None for o in options)
    located = pickup.pickup_options(session, {}, pickup.parse_position("30.2920", "120.1370"))
    assert OUTLETS[2][0] not in [o.outlet.name for o in located]


def test_an_outlet_short_of_one_cart_line_does_not_have_all_goods(session, seeded):
    liquid, lavender = product_named(LAUNDRY_LIQUID), product_named(LAVENDER)
    levels = {
        name: session.execute(
            select(StockLevel).join(Outlet, Outlet.location_id == StockLevel.location_id)
            .where(Outlet.name == name, StockLevel.product_id == lavender.id)
        ).scalar_one()
        for name, *_ in OUTLETS
    }
    by_name = lambda options: {o.outlet.name: o.has_all_goods for o in options}  # noqa: E731
    # The liquid is out at 文三路; a cart with it and the lavender liquid (stocked everywhere) cannot be picked up there.
    assert by_name(pickup.pickup_options(session, {liquid.id: 1, lavender.id: 1})) == {
        OUTLETS[0][0]: False, OUTLETS[1][0]: True, OUTLETS[2][0]: True}
    assert all(by_name(pickup.pickup_options(session, {lavender.id: 1})).values())
    # Exactly the units on hand is enough; one more is not; reserved units are not there to sell.
    middle = sorted(level.on_hand for level in levels.values())[1]
    expected = {name: level.on_hand >= middle for name, level in levels.items()}
    assert by_name(pickup.pickup_options(session, {lavender.id: middle})) == expected
    assert sorted(expected.values()) == [False, True, True]
    for level in levels.values():
        level.reserved = 1
    session.commit()
    expected = {name: level.on_hand - 1 >= middle for name, level in levels.items()}
    assert by_name(pickup.pickup_options(session, {lavender.id: middle})) == expected
    assert sorted(expected.values()) == [False, False, True]
    # An outlet that never stocked the product at all.
    hangzhou = session.execute(select(Region).where(Region.name == "杭州市西湖区")).scalar_one()
    bare = make_outlet(make_user("新店"), region=hangzhou)
    assert by_name(pickup.pickup_options(session, {lavender.id: 1}))[bare.name] is False


@pytest.mark.parametrize(("raw_lat", "raw_lng"), [
    ("999", "120.13"), ("30.28", "abc"), ("NaN", "NaN"), ("nan", "120.13"), ("30.28", "inf"), ("", ""),
    (None, "120.13"), ("-91", "0"), ("0", "180.5"),
])
def test_nonsense_positions_are_ignored(raw_lat, raw_lng):
    assert pickup.parse_position(raw_lat, raw_lng) is None


def test_sensible_positions_are_read_in_micro_degrees():
    assert pickup.parse_position("30.279812", "120.132145") == (30_279_812, 120_132_145)
    assert pickup.parse_position(" -90 ", "180") == (-90_000_000, 180_000_000)


def test_outlet_list_over_http_nearest_first_with_the_short_one_disabled(client, member_with_laundry_liquid):
    for lat, lng in POSITIONS:
        check_outlet_list_from(client, lat, lng)


def check_outlet_list_from(client, lat: float, lng: float) -> None:
    response = client.get(f"/checkout/outlets?lat={lat}&lng={lng}", headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<div id="outlet-list"') and "正在获取位置" not in body
    assert 'data-located="1"' in body  # app.js must not ask for the position again (it would loop)
    rows = outlet_rows(body)
    expected = outlets_by_distance(lat, lng)
    assert [row["name"] for row in rows] == [name for name, _ in expected]
    for row, (_name, metres) in zip(rows, expected):
        shown = float(row["distance"][:-2]) * 1000 if row["distance"].endswith("km") else float(row["distance"][:-1])
        assert abs(shown - metres) <= (60 if metres >= 1000 else 5), row
    for row in rows:
        short = row["name"] == SHORT_OUTLET
        assert (row["short"], row["disabled"], row["in_stock"]) == (short, short, not short)
    checked = [row["name"] for row in rows if row["checked"]]
    assert checked == [next(row["name"] for row in rows if not row["short"])]


NONSENSE_QUERIES = ["?lat=999&lng=120.13", "?lat=30.28&lng=abc", "?lat=NaN&lng=NaN", "?lat=nan&lng=120.1",
                    "?lat=30.28", "", "?lat=1e999&lng=1e999", "?lat=-inf&lng=120.1"]


def test_outlet_list_ignores_nonsense_coordinates(app, client, member_with_laundry_liquid):
    with app.app_context():
        by_region = name_order_by_region(db.session)
    for query in NONSENSE_QUERIES:
        response = client.get(f"/checkout/outlets{query}", headers=HX)
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and "<html" not in body, query
        assert "dq-distance" not in body and "按区域排列" in body and 'data-located="1"' in body, query
        assert [row["name"] for row in outlet_rows(body)] == by_region, query


def test_checkout_page_lists_outlets_by_region_and_name_before_it_knows_the_position(app, client,
                                                                                    member_with_laundry_liquid):
    response = client.get("/checkout/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and body.startswith("<!doctype html>")
    rows = outlet_rows(body)
    with app.app_context():
        assert [row["name"] for row in rows] == name_order_by_region(db.session)
    assert all(row["distance"] is None for row in rows)
    assert [row["disabled"] for row in rows] == [row["name"] == SHORT_OUTLET for row in rows]
    assert LAUNDRY_LIQUID in body and yuan(SEED_PRICE[LAUNDRY_LIQUID]) in body


def test_checkout_needs_a_member_and_a_cart(app, client, seeded):
    visitor = client.get("/checkout/")
    assert visitor.status_code == 302 and visitor.headers["Location"] == "/auth/login?next=/checkout/"
    assert client.get("/checkout/outlets?lat=30.28&lng=120.13").headers["Location"].startswith("/auth/login")
    htmx_visitor = client.get("/checkout/outlets", headers=HX)
    assert htmx_visitor.status_code == 401 and htmx_visitor.headers["HX-Redirect"].startswith("/auth/login")

    with app.app_context():
        user_id = make_user("空车会员").id
    log_in(client, user_id)
    empty = client.get("/checkout/")
    assert empty.status_code == 302 and empty.headers["Location"] == "/cart/"

    # A cart whose only product went off sale is empty too.
    with app.app_context():
        liquid = product_named(LAUNDRY_LIQUID)
        carts.add_to_member_cart(db.session, user_id, liquid.id, 1)
        assert client.get("/checkout/").status_code == 200
        liquid.is_on_sale = False
        db.session.commit()
    assert client.get("/checkout/").headers["Location"] == "/cart/"
