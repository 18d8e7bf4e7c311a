"""分享 in a real Chromium at phone size with WeChat's user agent: the product page's sheet (复制链接 puts the link with
the member's referral code on the clipboard, 生成海报 shows the poster in the page for a long press) and 我的推广码's
poster — never a new tab."""
import re

import pytest

from tests.test_browser import (  # noqa: F401  (fixtures)
    VIEWPORT,
    WECHAT_UA,
    base_url,
    browser,
    demo_login,
    demo_seeds,
    expect,
    wait_for_htmx,
)

pytestmark = pytest.mark.browser

MEMBER = "王丽"


@pytest.fixture
def phone(browser, base_url):  # noqa: F811
    """A WeChat-like phone whose page may use the clipboard, as WeChat's web view lets a tap copy."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2, user_agent=WECHAT_UA, is_mobile=True,
                                  has_touch=True, locale="zh-CN", permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


def referral_code(page, base_url: str) -> str:  # noqa: F811
    page.goto(f"{base_url}/me/share")
    return page.locator(".dq-share__code").inner_text().strip()


def open_sheet(page):
    page.get_by_role("button", name="分享", exact=True).click()
    sheet = page.get_by_role("dialog", name="分享", exact=True)
    expect(sheet).to_be_visible()
    expect(sheet).to_have_class(re.compile(r"\bweui-actionsheet_toggle\b"))  # slid up into view
    return sheet


def test_share_on_a_product_copies_the_link_with_the_code_and_shows_the_poster_in_the_page(phone, base_url):  # noqa: F811
    page = phone
    demo_login(page, base_url, MEMBER)
    code = referral_code(page, base_url)
    page.goto(f"{base_url}/products/2")
    wait_for_htmx(page)
    sheet = open_sheet(page)
    expect(sheet.get_by_role("button", name="发送给朋友")).to_be_visible()  # inside WeChat only
    sheet.get_by_role("button", name="复制链接").click()
    expect(page.locator(".dq-share-toast")).to_have_text("链接已复制，去粘贴给好友吧")
    expect(sheet).to_be_hidden()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == f"{base_url}/products/2?ref={code}"

    open_sheet(page).get_by_role("button", name="生成海报").click()
    poster = page.get_by_role("dialog", name="分享海报")
    expect(poster.get_by_role("img", name="分享海报")).to_be_visible()
    expect(poster.get_by_text("长按保存图片，分享给好友")).to_be_visible()
    size = poster.get_by_role("img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size == [750, 1200]
    box = poster.get_by_role("img").bounding_box()
    assert box["width"] <= VIEWPORT["width"] and box["y"] + box["height"] <= VIEWPORT["height"]  # whole, on screen
    assert len(page.context.pages) == 1 and page.url == f"{base_url}/products/2"  # no new tab, no navigation
    poster.get_by_role("button", name="关闭").click()
    expect(poster).to_have_count(0)


def test_without_the_clipboard_api_the_link_is_selected_for_a_long_press(phone, base_url):  # noqa: F811
    page = phone
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', { value: undefined })")
    demo_login(page, base_url, MEMBER)
    code = referral_code(page, base_url)
    page.goto(f"{base_url}/products/3")
    wait_for_htmx(page)
    open_sheet(page).get_by_role("button", name="复制链接").click()
    expect(page.locator(".dq-share-toast")).to_have_text(re.compile("链接已复制|已选中链接，请长按复制"))
    field = page.locator(".dq-sheet__link input")
    selected = field.evaluate("el => el.value.slice(el.selectionStart, el.selectionEnd)")
    assert selected.endswith(f"/products/3?ref={code}")


def test_the_share_page_shows_the_shop_poster_in_the_page(phone, base_url):  # noqa: F811
    page = phone
    demo_login(page, base_url, MEMBER)
    page.goto(f"{base_url}/me/share")
    wait_for_htmx(page)
    page.get_by_role("link", name="生成推广海报").click()
    poster = page.get_by_role("dialog", name="分享海报")
    expect(poster.get_by_role("img", name="分享海报")).to_be_visible()
    expect(poster.get_by_text("长按保存图片，分享给好友")).to_be_visible()
    assert len(page.context.pages) == 1 and page.url == f"{base_url}/me/share"
    page.keyboard.press("Escape")
    expect(poster).to_have_count(0)
