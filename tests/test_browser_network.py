"""The network built in a real headless Chromium: an admin at desktop size creates the warehouse, a region, its
factory store and an outlet for members who logged in through WeChat; an outlet owner on a phone sets the
outlet's position with WeChat's getLocation, and outside WeChat is told it needs WeChat."""
from contextlib import contextmanager

import pytest

from dingqiao.extensions import db
from dingqiao.models import AdminRole, Outlet
from dingqiao.services.accounts import create_admin
from dingqiao.services.network import create_outlet, create_region
from tests.conftest import log_in_member
from tests.factories import make_user
from tests.live_server import live_server
from tests.test_browser import DESKTOP, VIEWPORT, WECHAT_UA, browser_wait_for, expect, fits_the_screen
from tests.test_browser import browser  # noqa: F401 (a fixture: the module's Chromium)

pytestmark = pytest.mark.browser

PASSWORD = "long-enough-password"
# WeChat's JS-SDK as the page meets it inside WeChat: configured at once, and a phone standing in the outlet.
WECHAT_STUB = """window.wx = {config: function () {}, ready: function (done) { setTimeout(done, 0); },
  error: function () {}, updateAppMessageShareData: function () {}, updateTimelineShareData: function () {},
  getLocation: function (options) { options.success({latitude: 30.2812341, longitude: 120.1234567}); }};"""


@pytest.fixture
def site(app):
    with live_server(app) as url:
        yield url


@contextmanager
def desktop_admin(browser, site: str):
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{site}/admin/login")
    page.get_by_label("用户名").fill("net-admin")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{site}/admin/")
    try:
        yield page
    finally:
        context.close()


def test_an_admin_builds_region_factory_store_and_outlet_on_a_desktop(app, browser, site, tmp_path):
    with app.app_context():
        create_admin(db.session, "net-admin", PASSWORD, AdminRole.OPERATOR)
        factory_owner = make_user("林总", phone="13900000001").id
        outlet_owner = make_user("周姐", phone="13900000002").id
    with desktop_admin(browser, site) as page:
        page.get_by_role("navigation").get_by_role("link", name="网络", exact=True).click()
        expect(page.locator("#regions")).to_contain_text("还没有区域")
        page.get_by_label("仓库名称").fill("平台总仓")
        page.get_by_role("button", name="设立平台仓库").click()
        expect(page.locator("#network")).to_contain_text("已设立平台仓库「平台总仓」")

        page.get_by_label("编号").fill("HZXH")
        page.locator("#region-form").get_by_label("名称").fill("杭州市西湖区")
        page.get_by_role("button", name="新建区域").click()
        expect(page.locator("#regions")).to_contain_text("杭州市西湖区")
        # The form posted the whole page: the new page's text is there before htmx has taken up its inputs, and
        # a fill before that is one input event nobody hears (a person types on and the next keystroke asks).
        page.wait_for_load_state("load")

        form = page.locator("#factory-store-form")
        form.get_by_label("独家区域").select_option(label="杭州市西湖区（HZXH）")
        form.get_by_label("店主").fill("1390000000")  # typing the phone number suggests the member
        expect(page.locator("#member-options option")).to_have_count(2)
        expect(page.locator(f'#member-options option[value="{factory_owner}"]')).to_contain_text("林总 · 13900000001")
        # Picking the suggestion asks for suggestions again; a tap on the form's button while that lookup is
        # still on its way sends the form (the lookup holds nothing). Here the lookup is held until the form went.
        lookups: list = []
        page.route("**/admin/network/members?*", lambda route: lookups.append(route))
        form.get_by_label("店主").fill(str(factory_owner))  # what picking the suggestion puts in the field
        browser_wait_for(page, lambda: lookups, "the member lookup after picking the suggestion")
        form.get_by_label("店名").fill("西湖工厂店")
        form.get_by_label("地址").fill("杭州市西湖区三墩镇振华路 200 号")
        form.get_by_label("电话").fill("0571-88000000")
        expect(form.get_by_role("button", name="开设工厂店")).to_be_enabled()
        form.get_by_role("button", name="开设工厂店").click()
        expect(page.locator("#network")).to_contain_text("已开设工厂店「西湖工厂店」")
        page.unroute("**/admin/network/members?*")

        form = page.locator("#outlet-form")
        form.get_by_label("区域").select_option(label="杭州市西湖区（HZXH）")
        form.get_by_label("店主").fill(str(outlet_owner))
        form.get_by_label("店名").fill("文三路邻里便利店")
        form.get_by_label("地址").fill("杭州市西湖区文三路 259 号")
        form.get_by_label("电话").fill("0571-88001001")
        form.get_by_label("营业时间").fill("08:00-21:30")
        form.get_by_label("纬度").fill("120.132145")  # swapped, as a map picker gives "经度,纬度"
        form.get_by_label("经度", exact=True).fill("30.279812")
        form.get_by_role("button", name="开设核销网点").click()
        expect(page.locator("#outlet-form [role=alert]")).to_contain_text("坐标无效")
        expect(page.locator("#outlet-form").get_by_label("店名")).to_have_value("文三路邻里便利店")
        # the page opens at the form that was refused; the browser scrolls to #outlet-form once it has laid the
        # page out, which on a busy machine may come after the alert is already in place
        page.wait_for_function("() => window.scrollY > 0", timeout=30_000)
        page.screenshot(path=str(tmp_path / "network-refused.png"), full_page=True)
        form = page.locator("#outlet-form")
        form.get_by_label("纬度").fill("30.279812")
        form.get_by_label("经度", exact=True).fill("120.132145")
        form.get_by_role("button", name="开设核销网点").click()
        expect(page.locator("#network")).to_contain_text("已开设核销网点「文三路邻里便利店」")
        rows = page.locator("#regions tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("西湖工厂店")
        expect(rows.nth(1)).to_contain_text("30.279812, 120.132145")
        fits_the_screen(page)
        page.screenshot(path=str(tmp_path / "network.png"), full_page=True)

        rows.nth(1).get_by_role("link", name="划转").click()
        expect(page.get_by_role("heading", name="划转网点「文三路邻里便利店」")).to_be_visible()
        fits_the_screen(page)
        page.screenshot(path=str(tmp_path / "network-move.png"), full_page=True)


@pytest.fixture
def outlet_owner(app):
    """An outlet owner (opened by an admin) and the session cookie of their login."""
    with app.app_context():
        admin_id = create_admin(db.session, "net-admin", PASSWORD, AdminRole.OPERATOR).id
        region_id = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=admin_id).id
        owner_id = make_user("周姐").id
        outlet = create_outlet(db.session, region_id=region_id, owner_user_id=owner_id, name="文三路邻里便利店",
                               address="杭州市西湖区文三路 259 号", phone="0571-88001001", opening_hours="08:00-21:30",
                               latitude="30.279812", longitude="120.132145", admin_id=admin_id)
        outlet_id = outlet.id
    client = app.test_client()
    log_in_member(client, owner_id)
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    return outlet_id, cookie_name, client.get_cookie(cookie_name).value


def phone(browser, site: str, session_cookie: tuple[str, str], user_agent: str | None = None):
    options = {"user_agent": user_agent} if user_agent else {}
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  locale="zh-CN", **options)
    context.set_default_timeout(10_000)
    name, value = session_cookie
    context.add_cookies([{"name": name, "value": value, "url": site}])
    return context


def test_the_owner_sets_the_outlet_position_with_wechat_and_types_it_elsewhere(app, browser, site, outlet_owner,
                                                                                tmp_path):
    outlet_id, *cookie = outlet_owner
    context = phone(browser, site, tuple(cookie), WECHAT_UA)
    context.route("**/vendor/jweixin/**", lambda route: route.fulfill(content_type="text/javascript",
                                                                       body=WECHAT_STUB))
    context.route("**/wechat/jssdk-config**", lambda route: route.fulfill(json={
        "enabled": True, "appId": "wx", "timestamp": 1, "nonceStr": "n", "signature": "s", "jsApiList": []}))
    page = context.new_page()
    page.goto(f"{site}/outlet/profile")
    page.get_by_role("button", name="使用我的位置").click()
    expect(page.get_by_label("纬度")).to_have_value("30.281234")
    expect(page.get_by_label("经度")).to_have_value("120.123457")
    expect(page.locator("[data-locate-status]")).to_contain_text("已定位")
    page.screenshot(path=str(tmp_path / "outlet-profile-wechat.png"), full_page=True)
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_text("资料已保存")).to_be_visible()
    with app.app_context():
        outlet = db.session.get(Outlet, outlet_id)
        assert (outlet.latitude_e6, outlet.longitude_e6) == (30_281_234, 120_123_457)
    context.close()

    context = phone(browser, site, tuple(cookie))
    page = context.new_page()
    page.goto(f"{site}/outlet/profile")
    expect(page.get_by_role("button", name="定位需在微信中打开")).to_be_disabled()
    page.get_by_label("纬度").fill("30.279812")
    page.get_by_label("经度").fill("120.132145")
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= VIEWPORT["width"]
    page.screenshot(path=str(tmp_path / "outlet-profile-browser.png"), full_page=True)
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_text("资料已保存")).to_be_visible()
    with app.app_context():
        outlet = db.session.get(Outlet, outlet_id)
        assert (outlet.latitude_e6, outlet.longitude_e6) == (30_279_812, 120_132_145)
    context.close()
