"""What a person sees while the H5 works for them, in a real Chromium at phone size with WeChat's user agent:
buttons held while a request is under way (a double tap sends once), the WeUI confirm dialog, toasts that
leave by themselves, photos checked (and shrunk) before they are sent, Back after paying, and 消息中心 from 我的."""
import io
import random
import re

import pytest
from PIL import Image

from tests.test_browser import (  # noqa: F401  (fixtures)
    MEMBER,
    VIEWPORT,
    WECHAT_UA,
    admin_site,
    base_url,
    browser,
    browser_wait_for,
    demo_login,
    demo_seeds,
    demo_site,
    desktop,
    expect,
    page,
    wait_for_htmx,
)

pytestmark = pytest.mark.browser


def requests_to(page, method: str, path_pattern: str) -> list[str]:
    """The URLs of the page's requests with ``method`` whose path matches, as they are made (a live list)."""
    pattern = re.compile(path_pattern)
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url)
            if request.method == method and pattern.search(request.url) else None)
    return seen


def hold_requests(page, url_glob: str) -> list:
    """Requests to ``url_glob`` wait until the test lets them go (``route.continue_()``)."""
    held: list = []
    page.route(url_glob, lambda route: held.append(route))
    return held


def place_an_order(page, base_url: str) -> str:
    """立即购买 → 提交订单: the order page of a new unpaid order; returns its number."""
    page.goto(f"{base_url}/products/1")
    page.get_by_role("button", name="立即购买").click()
    page.wait_for_url(re.compile(r".*/checkout/.*"))
    wait_for_htmx(page)  # the boosted page's buttons are htmx's once the swap has settled
    page.get_by_role("button", name="提交订单").click()
    page.wait_for_url(re.compile(r".*/orders/DQ\d+$"))
    expect(page.locator(".dq-status__label")).to_have_text("待支付")
    return page.url.rsplit("/", 1)[1]


def test_a_button_is_held_while_its_request_runs_and_a_double_tap_adds_once(page, base_url):
    demo_login(page, base_url, MEMBER)
    page.goto(f"{base_url}/products/1")
    wait_for_htmx(page)
    posts = requests_to(page, "POST", r"/cart/items$")
    held = hold_requests(page, "**/cart/items")
    add = page.get_by_role("button", name="加入购物车")

    add.dblclick()
    expect(add).to_be_disabled()
    expect(add).to_have_class(re.compile(r"\bdq-pressed\b"))  # the spinner
    expect(page.get_by_role("button", name="立即购买")).to_be_disabled()  # the form's other button too
    expect(page.locator("#dq-loading")).to_have_class(re.compile(r"\bdq-loading--on\b"))
    add.click(force=True)  # a third, impatient tap
    page.wait_for_function("() => document.getElementById('dq-loading').classList.contains('dq-loading--on')")
    browser_wait_for(page, lambda: held, "the first tap's request reached the network")  # the button is held first
    assert len(held) == 1 and len(posts) == 1, posts

    held[0].continue_()
    toast = page.locator("#flash .dq-toast--ok")
    expect(toast).to_contain_text("已加入购物车（共 1 件）")
    expect(add).to_be_enabled()
    expect(add).not_to_have_class(re.compile(r"\bdq-pressed\b"))
    expect(page.locator("#dq-loading")).not_to_have_class(re.compile(r"\bdq-loading--on\b"))
    # A success says so and goes by itself.
    expect(toast).to_have_count(0)
    assert len(posts) == 1, posts

    page.goto(f"{base_url}/cart/")
    expect(page.locator(".dq-stepper__num")).to_have_text(["1"])


def test_an_error_toast_stays_until_tapped_a_success_one_leaves(page, base_url):
    page.clock.install()  # the page's timers run on a clock the test moves on
    demo_login(page, base_url, MEMBER)
    page.goto(f"{base_url}/products/1")
    wait_for_htmx(page)
    page.locator("#buy-quantity-input").fill("abc")
    page.get_by_role("button", name="加入购物车").click()
    error = page.locator("#flash .dq-toast--error")
    expect(error).to_have_text(re.compile(r"^请输入正确的数量。"))
    expect(error).to_have_attribute("role", "alert")
    page.clock.run_for(60_000)
    expect(error).to_be_visible()
    error.get_by_role("button", name="关闭").click()
    expect(error).to_have_count(0)

    page.locator("#buy-quantity-input").fill("1")
    page.get_by_role("button", name="加入购物车").click()
    ok = page.locator("#flash .dq-toast--ok")
    expect(ok).to_be_visible()
    expect(ok).to_have_attribute("role", "status")
    expect(page.locator("#flash")).to_have_attribute("aria-live", "polite")
    page.clock.run_for(5_000)
    expect(ok).to_have_count(0)


def test_hx_confirm_asks_in_a_weui_dialog_cancel_sends_nothing_and_ok_sends_once(page, base_url):
    demo_login(page, base_url, MEMBER)
    order_no = place_an_order(page, base_url)
    wait_for_htmx(page)
    cancels = requests_to(page, "POST", rf"/orders/{order_no}/cancel$")
    cancel_order = page.get_by_role("button", name="取消订单")
    dialog = page.get_by_role("alertdialog")

    cancel_order.click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("确定取消该订单吗？")
    expect(dialog.get_by_role("button", name="取消")).to_be_focused()  # focus moved in, on the safe answer
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="确定")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="取消")).to_be_focused()  # and stays inside
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(cancel_order).to_be_focused()  # back where it was

    cancel_order.click()
    dialog.get_by_role("button", name="取消").click()
    expect(dialog).to_have_count(0)
    assert cancels == []

    cancel_order.click()
    dialog.get_by_role("button", name="确定").dblclick()
    expect(page.locator(".dq-status__label")).to_have_text("已取消")
    assert len(cancels) == 1, cancels


def _noise_jpeg(width: int, height: int) -> bytes:
    """A photo-sized JPEG that compresses badly (random noise), so it is many MB."""
    image = Image.frombytes("RGB", (width, height), random.Random(7).randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def test_photos_are_checked_before_sending_and_big_ones_shrunk(page, base_url):
    demo_login(page, base_url, MEMBER)
    page.goto(f"{base_url}/service/")
    wait_for_htmx(page)
    posts = requests_to(page, "POST", r"/service/")
    photos = page.locator('input[type="file"][name="photos"]')
    error = page.locator("#flash .dq-toast--error")

    # More than the server's 5 MB and nothing a browser can draw smaller: refused at once, nothing sent.
    photos.set_input_files(files=[{"name": "big.jpg", "mimeType": "image/jpeg",
                                   "buffer": random.Random(1).randbytes(6 * 1024 * 1024)}])
    expect(error).to_have_text(re.compile(r"^图片不能超过 5 MB，请压缩后重试。"))
    assert photos.evaluate("input => input.files.length") == 0
    error.click()

    photos.set_input_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    expect(error).to_have_text(re.compile(r"^只支持 JPG、PNG、WEBP、GIF 格式的图片。"))
    assert photos.evaluate("input => input.files.length") == 0
    error.click()

    # A phone photo over the limit is redrawn at 1600 px as a JPEG of a few hundred KB… a few MB at worst.
    big = _noise_jpeg(3000, 2250)
    assert len(big) > 5 * 1024 * 1024
    photos.set_input_files(files=[{"name": "IMG_0001.JPG", "mimeType": "image/jpeg", "buffer": big}])
    page.wait_for_function("""() => {
        const f = document.querySelector('input[name="photos"]').files[0];
        return f && f.name === 'IMG_0001.jpg' && f.type === 'image/jpeg' && f.size < 5 * 1024 * 1024; }""")
    assert error.count() == 0
    assert posts == []

    # … and the server takes it.
    page.locator('select[name="kind"]').select_option(index=1)
    page.locator('textarea[name="body"]').fill("瓶盖漏液，见图。")
    page.get_by_role("button", name="提交").click()
    page.wait_for_url(re.compile(r".*/service/\d+$"))
    assert len(posts) == 1
    expect(page.locator(".dq-photos img")).to_have_count(1)


def test_back_after_paying_shows_the_paid_order_and_the_emptied_cart(page, base_url):
    demo_login(page, base_url, MEMBER)
    # From the cart, through checkout, to paying: Back must not show the cart still holding what was bought.
    page.goto(f"{base_url}/products/1")
    wait_for_htmx(page)
    page.get_by_role("button", name="加入购物车").click()
    expect(page.locator("#flash .dq-toast--ok")).to_be_visible()
    page.locator(".dq-buybar__cart").click()  # boosted: the cart and checkout share one document
    page.wait_for_url(f"{base_url}/cart/")
    wait_for_htmx(page)  # the boosted page's buttons are htmx's once the swap has settled
    expect(page.locator(".dq-cart__line")).to_have_count(1)
    page.get_by_role("link", name="去结算").click()
    page.wait_for_url(re.compile(r".*/checkout/.*"))
    wait_for_htmx(page)  # the boosted page's buttons are htmx's once the swap has settled
    page.get_by_role("button", name="提交订单").click()
    page.wait_for_url(re.compile(r".*/orders/DQ\d+$"))
    wait_for_htmx(page)  # the boosted page's buttons are htmx's once the swap has settled
    page.get_by_role("button", name=re.compile("模拟支付")).click()
    expect(page.locator(".dq-status__label")).to_have_text("待自提")
    wait_for_htmx(page)  # a person reads the page before pressing Back
    page.go_back()
    expect(page.locator(".dq-cart__line")).to_have_count(0)
    assert "/orders/" not in page.url

    # From the order list to an unpaid order, paid there: Back shows the list with it paid.
    order_no = place_an_order(page, base_url)
    page.goto(f"{base_url}/orders/")
    row = page.locator(f'a[href$="/orders/{order_no}"]')
    expect(row).to_contain_text("待支付")
    row.click()
    page.wait_for_url(f"{base_url}/orders/{order_no}")
    wait_for_htmx(page)  # the boosted page's buttons are htmx's once the swap has settled
    page.get_by_role("button", name=re.compile("模拟支付")).click()
    expect(page.locator(".dq-status__label")).to_have_text("待自提")
    wait_for_htmx(page)  # a person reads the page before pressing Back
    page.go_back()
    page.wait_for_url(f"{base_url}/orders/")
    expect(page.locator(f'a[href$="/orders/{order_no}"]')).to_contain_text("待自提")
    expect(page.locator(f'a[href$="/orders/{order_no}"]')).not_to_contain_text("待支付")


@pytest.fixture
def history_site(database_url, tmp_path, demo_seeds):  # noqa: F811
    with demo_site(database_url, tmp_path, history=True, seeds=demo_seeds) as url:
        yield url


@pytest.fixture
def phone(browser, history_site):
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2, user_agent=WECHAT_UA,
                                  is_mobile=True, has_touch=True, locale="zh-CN")
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_the_message_centre_is_reached_from_me_with_its_unread_count(phone, history_site):
    page = phone
    demo_login(page, history_site, MEMBER)
    page.locator("nav.dq-tabbar a", has_text="我的").click()
    page.wait_for_url(f"{history_site}/me/")
    unread = page.locator("nav.dq-tabbar .dq-tabbar__badge").inner_text().strip()
    assert int(unread) > 0
    cell = page.get_by_role("link", name=re.compile("^消息中心"))
    expect(cell.locator(".weui-badge")).to_have_text(unread)
    cell.click()
    page.wait_for_url(f"{history_site}/messages/")
    expect(page.get_by_role("heading", name="消息中心")).to_be_visible()

    # Dated as their events were, over the past weeks, newest first.
    times = page.locator(".dq-msg__time time").evaluate_all("els => els.map(e => e.getAttribute('datetime'))")
    assert len(set(times)) >= 5, times
    assert times == sorted(times, reverse=True)

    # A message about an order opens that order.
    about_an_order = page.locator("a.dq-msg", has_text="支付成功，待自提").first
    expect(about_an_order.locator(".weui-cell__ft")).to_have_text("查看订单")
    about_an_order.click()
    page.wait_for_url(re.compile(r".*/orders/DQ\d+$"))
    expect(page.locator(".dq-status__label")).to_be_visible()


def test_an_admin_approval_posted_as_a_whole_page_shows_it_is_under_way_and_posts_once(desktop, admin_site):
    """The withdrawal queue posts without htmx (hx-boost="false"): the same held buttons, spinner and bar, and
    a double click posts once."""
    page = desktop
    page.goto(f"{admin_site}/admin/withdrawals")
    wait_for_htmx(page)
    posts = requests_to(page, "POST", r"/admin/withdrawals/review$")
    # What the page looked like just after the post left, kept across the navigation that follows.
    page.evaluate("""() => document.addEventListener('submit', () => setTimeout(() => {
        if (sessionStorage.getItem('seen')) return;
        const button = name => [...document.querySelectorAll('button')].find(b => b.textContent.trim() === name);
        sessionStorage.setItem('seen', JSON.stringify({
            approve: button('同意（微信打款）').disabled, reject: button('拒绝并退回余额').disabled,
            spinner: button('拒绝并退回余额').classList.contains('dq-pressed'),
            bar: document.getElementById('dq-loading').classList.contains('dq-loading--on')}));
    }, 0))""")
    page.get_by_role("checkbox").first.check()
    page.get_by_placeholder("拒绝原因").fill("实名信息不符")
    page.get_by_role("button", name="拒绝并退回余额").dblclick()
    expect(page.locator(".dq-results")).to_be_visible()
    assert page.evaluate("() => JSON.parse(sessionStorage.getItem('seen'))") == {
        "approve": True, "reject": True, "spinner": True, "bar": True}
    assert len(posts) == 1, posts


def test_a_refusal_about_one_field_is_said_next_to_it_and_what_was_typed_stays(page, base_url):
    demo_login(page, base_url, MEMBER)
    page.goto(f"{base_url}/service/")
    wait_for_htmx(page)
    form = page.locator("#new-case form")
    form.locator("select[name=kind]").select_option(index=1)
    form.locator("input[name=subject]").fill("洗衣液漏了")
    body = form.locator("textarea[name=body]")
    body.fill("   ")  # passes the browser's "required", not the service's rule
    form.get_by_role("button", name="提交").click()

    said = form.locator('[data-field-slot="body"] .dq-field-error')
    expect(said).to_have_text("请填写留言内容。")
    expect(body).to_have_attribute("aria-invalid", "true")
    expect(form.locator("input[name=subject]")).to_have_value("洗衣液漏了")  # nothing typed is lost
    assert page.locator("#flash .dq-toast--error").count() == 0  # said once, where it belongs
    assert page.url.endswith("/service/")

    body.fill("瓶盖破了，漏了一半。")
    form.get_by_role("button", name="提交").click()
    page.wait_for_url(re.compile(r".*/service/\d+$"))
    expect(page.locator("body")).to_contain_text("瓶盖破了，漏了一半。")


def test_a_refusal_the_form_has_no_place_for_stays_in_the_message_area(page, base_url):
    """The slot is found in the form that was sent only: a refusal about a field it does not show goes to #flash."""
    demo_login(page, base_url, MEMBER)
    page.goto(f"{base_url}/service/")
    wait_for_htmx(page)
    page.evaluate("document.querySelector('[data-field-slot=body]').remove()")
    form = page.locator("#new-case form")
    form.locator("select[name=kind]").select_option(index=1)
    form.locator("textarea[name=body]").fill("   ")
    form.get_by_role("button", name="提交").click()
    expect(page.locator("#flash .dq-toast--error")).to_contain_text("请填写留言内容。")  # and its × button
