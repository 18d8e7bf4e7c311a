"""开店向导 in a real headless Chromium: the merchant follows the console's link at desktop size, creates the
superadmin and walks every step; a member on a phone (WeChat's user agent, 390×844) is told the shop is not open
until the commission rule is published, then sees the shop open."""
import pytest
from sqlalchemy import delete

from dingqiao.extensions import db
from dingqiao.models import CommissionRuleVersion
from dingqiao.services import setup
from tests.conftest import log_in_member
from tests.factories import make_user
from tests.live_server import live_server
from tests.test_browser import DESKTOP, VIEWPORT, WECHAT_UA, expect, fits_the_screen
from tests.test_browser import browser  # noqa: F401 (a fixture: the module's Chromium)

pytestmark = pytest.mark.browser


@pytest.fixture
def site(app):
    with live_server(app) as url:
        yield url


def member_page(browser, site: str, app, user_id: int):
    """A phone in WeChat, logged in as ``user_id`` (the session cookie of a real login session)."""
    client = app.test_client()
    log_in_member(client, user_id)
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    context = browser.new_context(viewport=VIEWPORT, user_agent=WECHAT_UA, locale="zh-CN")
    context.set_default_timeout(10_000)
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": site}])
    return context, context.new_page()


def test_the_merchant_walks_the_wizard_and_the_shop_opens(app, browser, site, tmp_path):  # noqa: F811
    with app.app_context():
        db.session.execute(delete(CommissionRuleVersion))  # a new install: no rule yet
        db.session.commit()
        owner_id, factory_id, member_id = (make_user(name).id for name in ("周姐", "林总", "王丽"))
        token = setup.issue_setup_token(db.session)
        db.session.remove()

    phone_context, phone = member_page(browser, site, app, member_id)
    phone.goto(site + "/")
    expect(phone.locator(".dq-closed")).to_contain_text("暂未开业")
    phone.screenshot(path=str(tmp_path / "closed-shop.png"))

    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto(f"{site}/setup/{token}")
        page.get_by_label("店铺名称").fill("街坊洗护")
        page.get_by_label("管理员用户名").fill("boss")
        page.get_by_label("密码（至少 12 位）").fill("correct-horse-9")
        page.get_by_label("再次输入密码").fill("correct-horse-9")
        page.get_by_role("button", name="创建超级管理员").click()
        page.wait_for_url(f"{site}/admin/setup/")
        expect(page.locator(".dq-admin-bar, header").first).to_contain_text("街坊洗护")
        expect(page.get_by_role("status").first).to_contain_text("本店尚未开业")

        page.get_by_role("button", name="创建平台仓库").click()
        expect(page.locator("#warehouse")).to_contain_text("✓")
        page.get_by_label("区域编号").fill("HZXH")
        page.get_by_label("区域名称").fill("杭州市西湖区")
        page.get_by_role("button", name="添加区域").click()
        expect(page.locator("#region").locator("xpath=..")).to_contain_text("杭州市西湖区")

        factory = page.locator(f'form[action$="/factory-store"]')
        factory.get_by_label("店主（已在微信中登录过的会员）").select_option(value=str(factory_id))
        factory.get_by_label("店名").fill("西湖工厂店")
        factory.get_by_label("地址").fill("杭州市西湖区振华路 200 号")
        factory.get_by_label("电话").fill("0571-88000000")
        factory.get_by_role("button", name="开通工厂店").click()
        expect(page.locator("#region").locator("xpath=..")).to_contain_text("工厂店：西湖工厂店")

        outlet = page.locator('form[action$="/outlet"]')
        outlet.get_by_label("店主（已在微信中登录过的会员）").select_option(value=str(owner_id))
        outlet.get_by_label("店名").fill("文三路网点")
        outlet.get_by_label("地址").fill("杭州市西湖区文三路 100 号")
        outlet.get_by_label("电话").fill("13900000002")
        outlet.get_by_label("纬度").fill("30.2812")
        outlet.get_by_label("经度").fill("120.1234")
        outlet.get_by_role("button", name="开通网点").click()
        expect(page.locator("#region").locator("xpath=..")).to_contain_text("文三路网点")

        rule = page.locator('form[action$="/commission-rule"]')
        rule.get_by_label("直推奖励 %").fill("12")
        rule.get_by_role("button", name="预览").click()
        expect(page.locator(".dq-preview")).to_contain_text("¥12.00")  # what a ¥100 order pays the upline
        rule = page.locator('form[action$="/commission-rule"]')
        rule.get_by_label("单笔总佣金上限 %").fill("50")
        rule.get_by_role("button", name="发布规则").click()
        expect(page.get_by_role("alert")).to_contain_text("上限")  # the guard rail, said in Chinese
        rule = page.locator('form[action$="/commission-rule"]')
        rule.get_by_label("单笔总佣金上限 %").fill("30")
        rule.get_by_role("button", name="发布规则").click()
        expect(page.locator("#rule")).to_contain_text("✓")

        page.get_by_role("button", name="发布身份规则").click()
        expect(page.locator("#identity")).to_contain_text("✓")
        expect(page.get_by_role("status").first).to_contain_text("本店已可下单")
        fits_the_screen(page)
        page.screenshot(path=str(tmp_path / "wizard.png"), full_page=True)
        page.get_by_role("button", name="完成开店向导，进入后台").click()
        page.wait_for_url(f"{site}/admin/")
        expect(page.locator("body")).not_to_contain_text("本店尚未开业")
    finally:
        context.close()

    app.config["HOME_CONTENT_CACHE_SECONDS"] = 0  # the home page keeps "open or not" for a few seconds
    phone.goto(site + "/")
    expect(phone.locator(".dq-hero__brand")).to_contain_text("街坊洗护")
    expect(phone.locator(".dq-closed")).to_have_count(0)
    phone_context.close()
