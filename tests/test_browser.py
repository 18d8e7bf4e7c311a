"""The H5 in a real headless Chromium at phone size, against the real app on a real HTTP server.

Each test gets its own seeded demo database (a SQLite file in tmp_path, or a Postgres database of its own when
TEST_DATABASE_URL is set; a copy of the module's seed, ``DemoSeeds``) and its own server; the browser is started once
for the module.
"""
import importlib.util
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy.engine import make_url

from dingqiao import create_app
from dingqiao.extensions import db
from dingqiao.services.demo_data import (
    CATEGORIES,
    DEMO_ADMIN_PASSWORD,
    DEMO_ADMIN_USERNAME,
    OUTLET_KEEPERS,
    OUTLETS,
    PRODUCTS,
    seed_demo,
    seed_demo_history,
)
from dingqiao.money import format_yuan as yuan
from tests.conftest import (
    TEST_DATABASE_URL,
    create_postgres_database,
    drop_postgres_database,
    empty_database,
    make_config,
    on_postgres,
    wait_for,
)
from tests.live_server import live_server

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (the `test` extra)")
expect = sync_api.expect
# A generous deadline for every expectation (Playwright's default is 5 s): CI shares two cores with other work.
expect.set_options(timeout=30_000)


def _load_screenshot_script():
    """scripts/screenshot.py is not a package: load it by path for its Chromium settings."""
    path = Path(__file__).resolve().parent.parent / "scripts" / "screenshot.py"
    spec = importlib.util.spec_from_file_location("dingqiao_screenshot_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_screenshot = _load_screenshot_script()
CHROMIUM, CHROMIUM_ARGS, WECHAT_UA = _screenshot.CHROMIUM, _screenshot.CHROMIUM_ARGS, _screenshot.WECHAT_UA

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test does)", allow_module_level=True)

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 390, "height": 844}
MEMBER = "王丽"
OUTLET = "文三路·黄姐"
PRICE = re.compile(r"^¥\d{1,3}(,\d{3})*\.\d{2}$")


def seeded_products(category: str | None = None) -> list[tuple[str, int]]:
    """(name, member price in fen) of the seed's products, in shop order, optionally of one category."""
    return [(name, price) for index, name, _sub, price, _colour in PRODUCTS
            if category is None or CATEGORIES[index] == category]


# --------------------------------------------------------------------------------------------- fixtures

def demo_config(database_url, tmp_path) -> dict:
    return make_config(database_url, tmp_path, DINGQIAO_DEMO=True, WECHAT_APP_ID="", WECHAT_APP_SECRET="",
                       WECHAT_MCH_ID="", WECHAT_MCH_KEY="")


class DemoSeeds:
    """The seeded demo database, made once per module for each kind (with a few weeks of trade or without) and
    copied for each test: seeding draws every product image and trades for weeks through the real services, seconds
    a time, while a copy is a file copy (SQLite) or a database made from it as a template (Postgres). Each test
    still gets a database of its own, with what the seed made and nothing else."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.made: dict[bool, tuple[str, Path]] = {}  # history -> (the seed's database URL, its upload folder)

    def seeded(self, history: bool) -> tuple[str, Path]:
        if history not in self.made:
            folder = self.folder / ("history" if history else "plain")
            folder.mkdir()
            url = (create_postgres_database(TEST_DATABASE_URL) if on_postgres()
                   else f"sqlite:///{folder / 'demo.sqlite3'}")
            config = demo_config(url, folder)
            self.made[history] = (url, Path(config["UPLOAD_FOLDER"]))
            app = create_app(config)
            with app.app_context():
                db.create_all()
                summary = seed_demo(db.session, config["UPLOAD_FOLDER"], None)
                assert summary.created, "the seed database must start empty"
                if history:
                    seed_demo_history(db.session)
                db.session.remove()
                db.engine.dispose()  # SQLite: the WAL folded into the file; Postgres: a template has no one on it
        return self.made[history]

    def copy(self, history: bool, database_url: str, tmp_path) -> str:
        """The seed copied for one test (its uploads into tmp_path/uploads); returns the copy's database URL."""
        url, uploads = self.seeded(history)
        shutil.copytree(uploads, tmp_path / "uploads")
        if on_postgres():
            return create_postgres_database(TEST_DATABASE_URL, template=make_url(url).database)
        target = Path(make_url(database_url).database)
        assert not target.exists(), "the test database must start empty"
        shutil.copyfile(make_url(url).database, target)
        return database_url

    def remove(self, database_url: str) -> None:
        """After a test: its copy goes (Postgres; a SQLite copy is in the test's tmp_path)."""
        if on_postgres() and database_url != TEST_DATABASE_URL:
            drop_postgres_database(TEST_DATABASE_URL, database_url)

    def drop(self) -> None:
        if on_postgres():
            for url, _uploads in self.made.values():
                drop_postgres_database(TEST_DATABASE_URL, url)


@pytest.fixture(scope="module")
def demo_seeds(tmp_path_factory):
    seeds = DemoSeeds(tmp_path_factory.mktemp("demo-seeds"))
    yield seeds
    seeds.drop()


@contextmanager
def demo_app_site(database_url, tmp_path, *, history: bool = False, prepare=None,
                  seeds: DemoSeeds | None = None) -> Iterator[tuple[str, object]]:
    """The seeded demo app (with a few weeks of trade: ``history``; then ``prepare(session)`` for what a test needs
    beyond it) on a live server; yields its base URL and the app (the server's database, for counting what the
    clicks wrote) and leaves the database empty. With ``seeds`` (the module's ``demo_seeds``) the database is a
    copy of the module's seed, else seeded here."""
    if seeds is not None:
        database_url = seeds.copy(history, database_url, tmp_path)
    config = demo_config(database_url, tmp_path)
    app = create_app(config)
    try:
        with app.app_context():
            if seeds is None:
                db.create_all()
                summary = seed_demo(db.session, config["UPLOAD_FOLDER"], None)
                assert summary.created, "the test database must start empty"
                if history:
                    seed_demo_history(db.session)
            if prepare:
                prepare(db.session)
            db.session.remove()
        with live_server(app) as url:
            yield url, app
    finally:
        if seeds is not None and on_postgres():
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
            seeds.remove(database_url)
        else:
            empty_database(app)


@contextmanager
def demo_site(database_url, tmp_path, *, history: bool = False, prepare=None,
              seeds: DemoSeeds | None = None) -> Iterator[str]:
    """``demo_app_site``'s base URL alone."""
    with demo_app_site(database_url, tmp_path, history=history, prepare=prepare, seeds=seeds) as (url, _app):
        yield url


@pytest.fixture
def base_url(database_url, tmp_path, demo_seeds):
    with demo_site(database_url, tmp_path, seeds=demo_seeds) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def phone_page(browser):
    """A fresh WeChat-like phone browser (own cookies and storage) at 390×844. Close its context when done."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2, user_agent=WECHAT_UA,
                                  is_mobile=True, has_touch=True, locale="zh-CN")
    context.set_default_timeout(10_000)
    return context.new_page()


@pytest.fixture
def page(browser, base_url):
    """A fresh WeChat-like phone browser (own cookies and storage) per test, closed before the server stops."""
    page = phone_page(browser)
    yield page
    page.context.close()


def fresh_session(page) -> None:
    """Forget who is logged in. Leave the page first: a request still in flight (a QR image, say) would
    otherwise come back with Set-Cookie and quietly restore the session just cleared."""
    page.goto("about:blank")
    page.context.clear_cookies()


def demo_login(page, base_url: str, name: str) -> None:
    """Pick ``name`` on the demo login page and land on the home page, as a person would."""
    page.goto(f"{base_url}/auth/login")
    expect(page.get_by_role("heading", name="演示登录")).to_be_visible()
    page.locator("form", has_text=name).get_by_role("button", name="以此身份登录").click()
    page.wait_for_url(f"{base_url}/")
    expect(page.locator("#product-list")).to_be_visible()


def confirm_dialog(page) -> None:
    """Answer 确定 in the page's confirm dialog (hx-confirm, drawn as a WeUI dialog by app.js)."""
    page.get_by_role("alertdialog").get_by_role("button", name="确定").click()


def wait_for_htmx(page) -> None:
    """The page is loaded and htmx has taken up what it last swapped in: htmx binds new content's triggers (and
    app.js its hooks) only when the swap settles, a moment after the new content is already on the screen."""
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'"
                           " && !document.querySelector('.htmx-added, .htmx-settling')")


def browser_wait_for(page, condition, what: str, seconds: float = 30):
    """``conftest.wait_for`` for a condition fed by Playwright's events (a request seen, a route held)."""
    return wait_for(condition, what, seconds, step=0.05, pause=lambda step: page.wait_for_timeout(step * 1000))


def load_all_cards(page, total: int) -> None:
    """Scroll the "load more" sentinel into view until ``total`` cards are there (infinite scroll)."""
    cards = page.locator("#product-list .dq-card")
    for _ in range(10):
        if cards.count() >= total:
            return
        # Scroll to the bottom, where the self-replacing "load more" sentinel is revealed.
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_timeout(150)
    expect(cards).to_have_count(total)


def card_prices(page) -> list[str]:
    return [p.strip() for p in page.locator("#product-list .dq-card .dq-price__now").all_inner_texts()]


def card_names(page) -> list[str]:
    return [n.strip() for n in page.locator("#product-list .dq-card .dq-card__name").all_inner_texts()]


# ------------------------------------------------------------------------------------------------ tests

def test_member_logs_in_and_sees_shop_with_tabbar_prices_and_chinese_text(page, base_url, tmp_path):
    demo_login(page, base_url, MEMBER)
    assert page.url == f"{base_url}/"
    # Logged in: the hero offers no login link any more.
    expect(page.locator("a.dq-hero__login")).to_have_count(0)

    tabbar = page.locator("nav.dq-tabbar")
    expect(tabbar).to_be_visible()
    labels = [label.strip() for label in tabbar.locator(".dq-tabbar__label").all_inner_texts()]
    for wanted in ("首页", "订单", "我的"):
        assert wanted in labels, labels
    expect(tabbar.locator(".dq-tabbar__item--on")).to_have_text("首页")
    # Fixed to the bottom edge of the phone screen, not somewhere down the long product page.
    box = tabbar.bounding_box()
    assert box is not None and abs(box["y"] + box["height"] - VIEWPORT["height"]) <= 1, box

    cards = page.locator("#product-list .dq-card")
    expect(cards).to_have_count(10)  # the first page
    load_all_cards(page, 20)  # the rest by infinite scroll
    expect(page.locator("#product-list .dq-more")).to_have_count(0)
    assert card_names(page) == [name for name, _ in seeded_products()]
    prices = card_prices(page)
    assert len(prices) == cards.count() and all(PRICE.match(p) for p in prices), prices
    assert prices == [yuan(price) for _, price in seeded_products()]
    tags = [t.strip() for t in cards.locator(".dq-price__tag").all_inner_texts()]
    assert tags == ["会员价"] * cards.count()

    # Chinese really renders. document.fonts.check() cannot tell: it answers true for any font that is not
    # a web font, installed or not. Instead ask Chromium itself (DevTools CSS.getPlatformFontsForNode) which
    # platform fonts drew the glyphs of a product name: without a CJK font every Chinese character would be
    # a tofu box drawn by a Latin font. Every CJK character of the name must come from a CJK-capable font.
    name = card_names(page)[0]
    cjk_chars = len(re.findall(r"[\u4e00-\u9fff]", name))
    assert cjk_chars >= 4
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "#product-list .dq-card__name"})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    cdp.detach()
    cjk_glyphs = sum(f["glyphCount"] for f in fonts
                     if re.search(r"CJK|Han|WenQuanYi|Droid Sans Fallback|AR PL|Hei|Song|Ming", f["familyName"]))
    assert cjk_glyphs >= cjk_chars, f"no CJK font drew {name!r}: {fonts}"

    shot = tmp_path / "home.png"
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # A blank or error page compresses to a few KB; the home page with pictures and text is far larger.
    assert len(data) > 20_000, len(data)


def test_category_chip_swaps_only_the_product_list_with_htmx_and_pushes_the_url(page, base_url):
    demo_login(page, base_url, MEMBER)
    wait_for_htmx(page)
    # A full page load would wipe this; an htmx swap of #product-list keeps it.
    page.evaluate("() => { window.__marker = 1; }")
    chip = page.locator("nav.dq-chips a.dq-chip", has_text="厨房清洁")
    category_id = parse_qs(urlsplit(chip.get_attribute("href")).query)["category"][0]

    with page.expect_response(lambda r: "category=" in r.url) as response_info:
        chip.click()
    response = response_info.value
    assert response.status == 200
    assert response.request.headers.get("hx-request") == "true"
    body = response.text()
    assert "<html" not in body and 'id="product-list"' in body, "the server answers with the fragment only"

    page.wait_for_url(f"{base_url}/?category={category_id}")
    expected = seeded_products("厨房清洁")
    assert len(expected) == 4
    expect(page.locator("#product-list .dq-card")).to_have_count(4)
    assert card_names(page) == [name for name, _ in expected]
    assert card_prices(page) == [yuan(price) for _, price in expected]
    assert page.evaluate("() => window.__marker") == 1, "the chip caused a full page load"
    # The highlighted chip follows the list (they are swapped together).
    expect(page.locator("nav.dq-chips a.dq-chip--on")).to_have_text("厨房清洁")
    # The fragment replaced the list in place: one list, one tab bar, no page nested inside the page.
    expect(page.locator("#product-list")).to_have_count(1)
    expect(page.locator("nav.dq-tabbar")).to_have_count(1)


def test_outlet_sees_outlet_prices(page, base_url):
    demo_login(page, base_url, OUTLET)
    cards = page.locator("#product-list .dq-card")
    expected = seeded_products()
    load_all_cards(page, len(expected))
    tags = [t.strip() for t in cards.locator(".dq-price__tag").all_inner_texts()]
    assert tags == ["核销网点价"] * len(expected)
    # Outlets buy at 80% of the member price, floored to the fen.
    assert card_names(page)[0] == "顶俏浓缩洗衣液 2kg"
    assert card_prices(page)[0] == "¥31.92"
    assert card_prices(page) == [yuan(price * 80 // 100) for _, price in expected]


def test_logout_from_me_ends_the_session(page, base_url):
    demo_login(page, base_url, MEMBER)
    page.locator("nav.dq-tabbar a", has_text="我的").click()
    page.wait_for_url(f"{base_url}/me/")
    expect(page.locator(".dq-profile__name")).to_have_text(MEMBER)

    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url(f"{base_url}/")
    # Back must not bring the profile out of htmx's history cache on a shared phone.
    page.go_back()
    page.wait_for_load_state("networkidle")
    assert page.locator(".dq-profile__name").count() == 0, "我的 came back from the history cache after logout"
    page.goto(f"{base_url}/")
    # Back on the shop as a visitor: the login link is offered and the member's name is nowhere.
    expect(page.locator("a.dq-hero__login")).to_be_visible()
    expect(page.locator(".dq-price__tag").first).to_have_text("会员价")

    page.goto(f"{base_url}/me/")
    assert urlsplit(page.url).path == "/auth/login"
    # ... and would bring the person back to 我的 after logging in again.
    next_urls = parse_qs(urlsplit(page.url).query).get("next")
    assert next_urls and urlsplit(next_urls[0]).path == "/me/", page.url
    expect(page.get_by_role("heading", name="演示登录")).to_be_visible()
    # The long-lived "remember me" cookie went with the session, so closing WeChat cannot bring it back.
    assert "remember_token" not in {cookie["name"] for cookie in page.context.cookies()}


def test_the_whole_loop_from_share_link_to_the_sharers_wallet(page, base_url):
    """A new visitor arrives by 陈静's share link, logs in (demo), buys and pays (demo pay); the pickup outlet's
    keeper logs in and redeems the code by typing it; 陈静's wallet shows the settled direct reward."""
    demo_login(page, base_url, "陈静")
    page.goto(f"{base_url}/me/")
    sharer_code = page.locator(".dq-profile__meta strong").inner_text().strip()
    fresh_session(page)

    page.goto(f"{base_url}/products/1?ref={sharer_code}")
    expect(page.get_by_role("heading", name="顶俏浓缩洗衣液 2kg")).to_be_visible()
    demo_login(page, base_url, "李娜")  # 李娜's upline in the demo tree is 陈静
    page.goto(f"{base_url}/products/1")
    page.get_by_role("button", name="立即购买").click()
    page.wait_for_url(re.compile(r".*/checkout/\?buy=1&qty=1$"))
    page.get_by_role("button", name="提交订单").click()
    page.wait_for_url(re.compile(r".*/orders/DQ\d+$"))
    expect(page.locator(".dq-status__label")).to_have_text("待支付")
    page.get_by_role("button", name=re.compile("模拟支付")).click()
    expect(page.locator(".dq-status__label")).to_have_text("待自提")
    code = page.locator(".dq-pickup__code").inner_text().replace(" ", "")
    assert re.fullmatch(r"\d{12}", code)
    # The QR is a separate request: wait for it to arrive, then check it decoded into a real image.
    page.wait_for_function("() => document.querySelector('img.dq-pickup__qr').complete")
    assert page.locator("img.dq-pickup__qr").evaluate("img => img.naturalWidth") > 0

    pickup_at = page.locator(".weui-cell", has_text="自提门店").locator(".weui-cell__ft").inner_text().strip()
    outlet_keeper = OUTLET_KEEPERS[[name for name, *_ in OUTLETS].index(pickup_at)]

    fresh_session(page)
    demo_login(page, base_url, outlet_keeper)  # the person who runs the pickup outlet
    page.locator("nav.dq-tabbar a", has_text="核销").click()
    page.get_by_placeholder("或输入 12 位核销码").fill(code)
    page.get_by_role("button", name="查询").click()
    expect(page.locator("#redeem-result")).to_contain_text("¥39.90")
    page.get_by_role("button", name="确认核销，交付商品").click()
    expect(page.locator("#redeem-result")).to_contain_text("核销成功")

    fresh_session(page)
    demo_login(page, base_url, "陈静")
    page.goto(f"{base_url}/wallet/")
    expect(page.locator(".dq-wallet-head__num")).to_have_text("¥3.99")  # 10% of ¥39.90, floored
    expect(page.locator("#earnings")).to_contain_text("直推奖励")
    expect(page.locator("#earnings")).to_contain_text("已结算")


def test_team_charts_draw_after_a_boosted_navigation_and_an_empty_wallet_says_so(page, base_url):
    """Chart.js is loaded on demand, also when htmx swapped the page in; an empty chart says 暂无数据."""
    demo_login(page, base_url, MEMBER)  # 王丽: the root of the demo tree, members joined over recent weeks
    page.goto(f"{base_url}/me/")
    page.get_by_role("link", name="我的团队").click()
    page.wait_for_url(f"{base_url}/me/team")
    joined = page.locator('canvas[data-chart-key="new_members"]')
    expect(joined).to_have_attribute("data-chart-ready", "1")
    assert joined.evaluate("c => c.width") > 100
    bars = page.evaluate("() => document.querySelector('canvas[data-chart-key=\"new_members\"]').chart.data.datasets[0].data")
    assert sum(bars) >= 1
    page.goto(f"{base_url}/wallet/")
    expect(page.locator('canvas[data-chart-key="by_kind"]')).to_have_attribute("data-chart-ready", "empty")
    expect(page.locator("[data-chart-empty]").first).to_be_visible()


def test_a_member_files_an_outlet_application_with_her_location(page, base_url):
    page.context.grant_permissions(["geolocation"], origin=base_url)
    page.context.set_geolocation({"latitude": 30.2801, "longitude": 120.1302})
    demo_login(page, base_url, "刘洋")
    page.goto(f"{base_url}/me/upgrade")
    form = page.locator("#upgrade-outlet form")
    expect(page.locator("#upgrade-outlet")).to_contain_text("累计购买实物商品满 ¥300.00")
    form.get_by_label("所在区域").select_option(label="杭州市西湖区")
    form.get_by_label("店名").fill("刘洋社区小店")
    form.get_by_label("详细地址").fill("杭州市西湖区文二路 88 号")
    form.get_by_label("联系电话").fill("13900000000")
    form.get_by_role("button", name="提交资料，达标后开通").click()
    # No position yet: refused, nothing saved, and said under the 使用我的位置 button; what was typed stays.
    expect(form.locator(".dq-field-error")).to_contain_text("请点击「使用我的位置」")
    expect(form.get_by_label("店名")).to_have_value("刘洋社区小店")
    form.get_by_role("button", name="使用我的位置").click()
    expect(form.locator("[data-locate-status]")).to_contain_text("已定位：30.28010, 120.13020")
    form.get_by_role("button", name="提交资料，达标后开通").click()
    expect(page.locator("#upgrade-outlet")).to_contain_text("等待达标")
    expect(page.locator("#upgrade-outlet")).to_contain_text("刘洋社区小店")


def no_sideways_scroll(page) -> None:
    """Nothing on the page is wider than the phone: no sideways scrolling."""
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= VIEWPORT["width"], page.url


def test_an_outlet_restocks_from_its_factory_store_on_a_phone(page, base_url, tmp_path):
    """The outlet's stock page, a restock order placed by the outlet and partly shipped by the factory store,
    received by the outlet, and the factory dashboard — each fitting a phone screen."""
    demo_login(page, base_url, OUTLET)
    page.locator("nav.dq-tabbar a", has_text="库存").click()
    page.wait_for_url(f"{base_url}/stock/")
    expect(page.locator(".dq-wallet-head__label")).to_contain_text("库存")
    no_sideways_scroll(page)
    page.screenshot(path=str(tmp_path / "outlet-stock.png"), full_page=True)
    page.get_by_role("link", name="去进货").click()
    page.wait_for_url(f"{base_url}/restock/new")
    wait_for_htmx(page)  # a boosted link: the form's confirm is htmx's once the swap has settled
    page.locator("input[name^=qty-]").nth(0).fill("12")
    page.get_by_role("button", name="提交进货单").click()
    confirm_dialog(page)
    page.wait_for_url(re.compile(r".*/restock/\d+$"))
    restock_url = page.url
    expect(page.locator(".dq-status__label")).to_have_text("待发货")

    fresh_session(page)
    demo_login(page, base_url, "西湖工厂店·林总")
    page.goto(restock_url)
    page.locator("input[name^=qty-]").first.fill("5")
    page.get_by_role("button", name="确认发货").click()
    confirm_dialog(page)
    expect(page.locator(".dq-status__label")).to_have_text("部分发货")
    no_sideways_scroll(page)
    page.screenshot(path=str(tmp_path / "restock-order.png"), full_page=True)
    page.locator("nav.dq-tabbar a", has_text="区域").click()
    page.wait_for_url(f"{base_url}/factory/")
    expect(page.locator('canvas[data-chart-key="restock"]')).to_have_attribute("data-chart-ready", "1")
    no_sideways_scroll(page)
    page.screenshot(path=str(tmp_path / "factory-dashboard.png"), full_page=True)

    fresh_session(page)
    demo_login(page, base_url, OUTLET)
    page.goto(restock_url)
    page.get_by_role("button", name="确认收货（5 件）").click()
    confirm_dialog(page)
    expect(page.locator(".weui-cells").first).to_contain_text("已收 5")


def test_checkout_sorts_outlets_by_the_members_position_with_one_request(page, base_url):
    """The located list replaces the first one once; it must not ask again for itself (it used to loop)."""
    page.context.grant_permissions(["geolocation"], origin=base_url)
    page.context.set_geolocation({"latitude": 30.2901, "longitude": 120.1355})  # next to 翠苑社区生活馆
    located = []
    page.on("request", lambda request: located.append(request.url) if "/checkout/outlets" in request.url else None)
    demo_login(page, base_url, MEMBER)
    page.goto(f"{base_url}/products/1")
    page.get_by_role("button", name="立即购买").click()
    page.wait_for_url(re.compile(r".*/checkout/\?buy=1&qty=1$"))
    expect(page.locator("#outlet-list .dq-distance").first).to_be_visible()
    expect(page.locator("#outlet-list .weui-cell").first).to_contain_text("翠苑社区生活馆")
    page.wait_for_timeout(1500)
    assert len(located) == 1, located


# --------------------------------------------------------------------------------------------- the admin

DESKTOP = {"width": 1366, "height": 900}


@pytest.fixture
def admin_site(database_url, tmp_path, demo_seeds):
    with demo_site(database_url, tmp_path, history=True, seeds=demo_seeds) as url:
        yield url


def admin_desktop(browser, base_url: str):
    """A 1366×900 page logged into the demo's admin, on its dashboard. Close its context when done."""
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{base_url}/admin/login")
    page.get_by_label("用户名").fill(DEMO_ADMIN_USERNAME)
    page.get_by_label("密码").fill(DEMO_ADMIN_PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{base_url}/admin/")
    return page


@pytest.fixture
def desktop(browser, admin_site):
    page = admin_desktop(browser, admin_site)
    yield page
    page.context.close()


def fits_the_screen(page) -> None:
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= DESKTOP["width"], page.url


def test_the_admin_dashboard_order_detail_and_withdrawal_queue_on_a_desktop(desktop, admin_site, tmp_path):
    """What the operations team sees first: figures with money in yuan, the 30-day chart drawn, an order's
    whole story reached from the order search, and the withdrawal queue with its bulk actions."""
    page = desktop
    expect(page.locator('[data-stat="month-sales"]')).to_have_text(PRICE)
    page.wait_for_function("() => document.querySelectorAll('canvas[data-chart-url]').length === 2"
                           " && [...document.querySelectorAll('canvas[data-chart-url]')].every(c => c.dataset.chartReady)")
    fits_the_screen(page)
    page.screenshot(path=str(tmp_path / "admin-dashboard.png"), full_page=True)

    page.get_by_role("navigation").get_by_role("link", name="订单", exact=True).click()
    expect(page.locator("table.model-list tbody tr")).to_have_count(48)
    page.get_by_placeholder(re.compile("订单号")).fill("DQ")
    page.get_by_placeholder(re.compile("订单号")).press("Enter")
    first = page.locator("table.model-list tbody tr").first.locator("a", has_text=re.compile(r"^DQ\d+$"))
    order_no = first.inner_text()
    first.click()
    expect(page.get_by_role("heading", name=re.compile(f"订单 {order_no}"))).to_be_visible()
    for section in ("商品", "支付", "佣金", "钱包流水", "库存变动"):
        expect(page.get_by_role("heading", name=section, exact=True)).to_be_visible()
    fits_the_screen(page)
    page.screenshot(path=str(tmp_path / "admin-order.png"), full_page=True)

    page.get_by_role("link", name="提现审核").click()
    expect(page.locator("tbody tr", has_text="待审核")).to_have_count(1)
    expect(page.get_by_role("button", name="同意（微信打款）")).to_be_visible()
    fits_the_screen(page)
    page.screenshot(path=str(tmp_path / "admin-withdrawals.png"), full_page=True)
