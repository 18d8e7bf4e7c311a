"""How the member H5 looks on a phone (390×844, WeChat's user agent): nothing wider than the screen, order
numbers clear of their status, the first products on the first screen, status badges coloured by meaning and
the main buttons' text readable (WCAG AA contrast)."""
import re

import pytest
from sqlalchemy import select

from dingqiao.models import Outlet, Product, User
from dingqiao.services.demo_data import OUTLETS
from dingqiao.services.orders import cancel_order, place_order
from tests.test_browser import (  # noqa: F401 (fixtures)
    MEMBER,
    OUTLET,
    VIEWPORT,
    browser,
    demo_login,
    demo_seeds,
    demo_site,
    expect,
    fresh_session,
    no_sideways_scroll,
    page,
)

pytestmark = pytest.mark.browser


def unpaid_and_cancelled_orders(session) -> None:
    """王丽 also has an unpaid and a cancelled order (the list's badges)."""
    member = session.scalar(select(User).where(User.nickname == MEMBER))
    outlet_id = session.scalar(select(Outlet.id).where(Outlet.name == OUTLETS[0][0]))
    # the first product is out of stock there
    product_ids = list(session.scalars(select(Product.id).order_by(Product.sort_order).offset(1).limit(2)))
    place_order(session, member, outlet_id, {product_ids[0]: 1}, timeout_minutes=30, from_cart=False)
    cancelled = place_order(session, member, outlet_id, {product_ids[1]: 1}, timeout_minutes=30, from_cart=False)
    cancel_order(session, member.id, cancelled.order_no)


@pytest.fixture
def base_url(database_url, tmp_path, request, demo_seeds):  # noqa: F811
    with demo_site(database_url, tmp_path, history="order_list" in request.node.name,
                   prepare=unpaid_and_cancelled_orders, seeds=demo_seeds) as url:
        yield url


def box(locator) -> dict:
    found = locator.bounding_box()
    assert found is not None, locator
    return found


def overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def inside(inner: dict, outer: dict) -> bool:
    return (inner["x"] >= outer["x"] - 0.5 and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5)


def rgb(css: str) -> tuple[float, ...]:
    """"rgb(6, 128, 63)" / "rgba(0, 0, 0, 0.6)" as numbers (alpha 1 when not given)."""
    parts = [float(p) for p in re.findall(r"[\d.]+", css)]
    return tuple(parts[:3]) + (parts[3] if len(parts) > 3 else 1.0,)


def contrast(text: str, background: str) -> float:
    """WCAG contrast of ``text`` (its alpha blended over an opaque ``background``)."""
    *fg, alpha = rgb(text)
    *bg, bg_alpha = rgb(background)
    assert bg_alpha == 1, f"the background must be opaque, not {background}"
    fg = [alpha * f + (1 - alpha) * b for f, b in zip(fg, bg)]

    def luminance(colour) -> float:
        linear = [c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in colour]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def colours(locator) -> tuple[str, str]:
    return locator.evaluate("e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]")


def test_the_order_list_fits_and_colours_each_status_by_what_it_means(page, base_url):
    demo_login(page, base_url, MEMBER)
    page.goto(f"{base_url}/orders/")
    rows = page.locator("#order-list a.weui-cell")
    expect(rows.first).to_be_visible()
    no_sideways_scroll(page)
    assert rows.count() >= 3
    for index in range(rows.count()):
        row = rows.nth(index)
        number, status = row.locator(".dq-order__no"), row.locator(".weui-cell__ft")
        assert re.fullmatch(r"订单 DQ\d+", number.inner_text().strip())
        assert not overlap(box(number), box(status)), number.inner_text()
        assert inside(box(status), box(row))
    cancelled = page.locator("#order-list .dq-badge", has_text="已取消")
    waiting = page.locator("#order-list .dq-badge", has_text="待支付")
    collect = page.locator("#order-list .dq-badge", has_text="待自提").first
    expect(cancelled).to_have_count(1)
    assert colours(cancelled) != colours(waiting)
    assert colours(cancelled) != colours(collect)
    for badge in (cancelled, waiting, collect):
        assert contrast(*colours(badge)) >= 4.5, badge.inner_text()


def test_the_after_sales_form_and_the_dashboards_fit_a_phone(page, base_url):
    demo_login(page, base_url, MEMBER)
    page.goto(f"{base_url}/service/")
    form = page.locator("#new-case form")
    expect(form).to_be_visible()
    no_sideways_scroll(page)
    card = box(page.locator("#new-case"))
    for field in ("select[name=kind]", "select[name=order_no]", "input[name=subject]", "textarea[name=body]",
                  "input[name=photos]"):
        assert inside(box(form.locator(field)), card), field

    for person, path in ((OUTLET, "/outlet/dashboard"), ("西湖工厂店·林总", "/factory/")):
        fresh_session(page)
        demo_login(page, base_url, person)
        page.goto(base_url + path)
        query = page.locator(".dq-range").get_by_role("button", name="查询")
        expect(query).to_be_visible()
        no_sideways_scroll(page)
        assert inside(box(query), box(page.locator(".dq-range"))), path
        for field in page.locator(".dq-range input").all():
            assert inside(box(field), box(page.locator(".dq-range"))), path


def test_the_home_page_shows_four_products_on_the_first_screen(page, base_url):
    for member in (None, MEMBER):  # a visitor (with the 登录 button) and a member
        if member:
            demo_login(page, base_url, member)
        page.goto(f"{base_url}/")
        cards = page.locator("#product-list .dq-card")
        expect(cards.nth(3)).to_be_visible()
        page.wait_for_function("() => [...document.querySelectorAll('#product-list .dq-card__img')].slice(0, 4)"
                               ".every(img => img.complete && img.naturalWidth > 0)")
        bottom = box(page.locator("nav.dq-tabbar"))["y"] if member else VIEWPORT["height"]
        whole = [index for index in range(cards.count())
                 if box(cards.nth(index))["y"] >= 0
                 and box(cards.nth(index))["y"] + box(cards.nth(index))["height"] <= bottom]
        assert len(whole) >= 4, (member, whole)
        no_sideways_scroll(page)


def test_the_main_buttons_and_prices_are_readable(page, base_url):
    demo_login(page, base_url, MEMBER)
    page.goto(f"{base_url}/")
    page.locator("#product-list .dq-card").first.click()
    buy = page.locator(".dq-buybar__buy")
    expect(buy).to_be_visible()
    for element in (buy, page.locator(".dq-buybar__add"), page.locator(".dq-price__tag").first):
        text, background = colours(element)
        if rgb(background)[3] == 0:  # a transparent tag: the page under it
            background = "rgb(255, 255, 255)"
        assert contrast(text, background) >= 4.5, (element, text, background)
    page.goto(f"{base_url}/service/")
    submit = page.locator("#new-case button.weui-btn_primary")
    assert contrast(*colours(submit)) >= 4.5
