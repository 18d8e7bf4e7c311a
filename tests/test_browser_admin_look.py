"""The admin on the team's desktop (1366×900) in a real Chromium: every item of the one menu, clicked from the
dashboard as a person would, opens a styled page under the same menu, on one line, with nothing refused by the
CSP and no script error; a refused approval is shown inside the admin's layout in an error colour."""
import os
import re
from pathlib import Path

import pytest

from tests.test_browser import (  # noqa: F401 - fixtures
    DESKTOP,
    admin_site,
    browser,
    demo_seeds,
    desktop,
    expect,
    fits_the_screen,
)

pytestmark = pytest.mark.browser

ERROR_RED = "rgb(255, 240, 240)"  # .dq-toast--error's background in app.css


def shots_folder(tmp_path) -> Path:
    """Screenshots go to the test's own folder, or where DQ_SHOTS says (to look at them)."""
    folder = Path(os.environ.get("DQ_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def watch_console(page) -> list[str]:
    """Every console error (Chromium reports each CSP refusal there) and every uncaught script error."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console on {page.url}: {message.text[:150]}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"pageerror on {page.url}: {error}"))
    return problems


def menu_entries(page) -> list[dict]:
    """The menu as drawn: each link's name, address and the group (its trigger's text) it sits in, if any."""
    return page.evaluate("""() => [...document.querySelectorAll('.dq-admin-nav a')].map(a => {
        const top = a.closest('.dq-menu > li');
        const grouped = Boolean(a.closest('.dq-menu__sub'));
        return {name: a.textContent.trim(), href: a.getAttribute('href'),
                group: grouped ? top.firstElementChild.textContent.trim() : null,
                index: [...top.parentElement.children].indexOf(top)};
    })""")


def assert_admin_page_styled(page, entry) -> None:
    """Our stylesheet and, on a data page, Bootstrap are applied: values no unstyled page has."""
    looks = page.evaluate("""() => {
        const style = (el, prop) => el ? getComputedStyle(el)[prop] : null;
        const bar = document.querySelector('.dq-admin-bar');
        const menu = document.querySelector('.dq-menu');
        const item = menu && menu.firstElementChild;
        return {
            bar: style(bar, 'display'), menuList: style(menu, 'listStyleType'),
            bodyMargin: style(document.body, 'margin'),
            menuHeight: menu && menu.getBoundingClientRect().height, itemHeight: item && item.getBoundingClientRect().height,
            tabs: document.querySelectorAll('.dq-tabbar').length,
            bootstrapTabs: style(document.querySelector('.nav-tabs'), 'display'),
            current: [...document.querySelectorAll('.dq-admin-nav a[aria-current="page"]')].map(a => a.textContent.trim()),
        };
    }""")
    where = f"{entry['name']} → {page.url}"
    assert looks["bar"] == "flex", where  # a <header> is display: block in an unstyled page
    assert looks["menuList"] == "none", where  # a <ul> is "disc"
    assert looks["bodyMargin"] == "0px", where  # the browser's default is 8px
    assert looks["menuHeight"] == looks["itemHeight"] and looks["itemHeight"] < 40, (where, looks)  # one line
    assert looks["tabs"] == 0, where  # never the member's tab bar
    if "/admin/data/" in page.url and looks["bootstrapTabs"] is not None:
        assert looks["bootstrapTabs"] == "flex", where  # Bootstrap's .nav; a plain <ul> is block
    assert entry["name"] in looks["current"], (where, looks["current"])
    fits_the_screen(page)


def test_every_menu_item_opens_a_styled_admin_page_without_console_errors(desktop, admin_site, tmp_path):
    page = desktop
    problems = watch_console(page)
    home = f"{admin_site}/admin/"
    page.goto(home)
    entries = menu_entries(page)
    names = [entry["name"] for entry in entries]
    # The superadmin's whole menu, the daily queues on top and the rest in groups
    for name in ("概览", "订单", "会员", "商品", "网点", "审计日志", "退款审核", "提现审核", "佣金规则", "导出", "后台账号"):
        assert name in names, name
    assert [entry["name"] for entry in entries if entry["group"] is None] == [
        "概览", "订单", "会员", "退款审核", "提现审核", "身份申请", "客服售后", "商品", "网络", "规则"]
    shots = shots_folder(tmp_path)
    for number, entry in enumerate(entries):
        page.goto(home)
        page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")
        nav = page.get_by_role("navigation", name="后台菜单")
        item = nav.locator(".dq-menu > li").nth(entry["index"])
        if entry["group"]:
            item.locator("> a, > button").hover()  # the group opens on hover, as under a mouse
            link = item.locator(".dq-menu__sub").get_by_role("link", name=entry["name"], exact=True)
            if entry is next(e for e in entries if e["group"] == entry["group"]):
                expect(link).to_be_visible()
                page.screenshot(path=str(shots / f"open-{entry['group']}.png"), full_page=False)
        else:
            link = item.locator("> a")
            expect(link).to_have_text(entry["name"])
        expect(link).to_be_visible()
        link.click()
        target = entry["href"]
        page.wait_for_url(re.compile(re.escape(admin_site + target) + r"(\?.*)?$"))
        page.wait_for_load_state("load")
        expect(page.locator(f'.dq-admin-nav a[aria-current="page"]', has_text=entry["name"]).first).to_be_attached()
        assert_admin_page_styled(page, entry)
        page.mouse.move(0, DESKTOP["height"] - 1)  # close a hovered group before the picture
        page.screenshot(path=str(shots / f"menu-{number:02d}-{entry['name']}.png"), full_page=False)
    # A data form, reached from its table
    page.goto(f"{admin_site}/admin/data/products/")
    page.locator("table.model-list a[title='编辑记录'], table.model-list a.icon[href*='/edit/']").first.click()
    expect(page.locator("form.admin-form")).to_be_visible()
    page.wait_for_load_state("load")  # its styles are read next
    assert_admin_page_styled(page, {"name": "商品"})
    page.screenshot(path=str(shots / "product-form.png"), full_page=True)
    assert problems == [], "\n".join(problems)


def test_a_refused_approval_is_shown_in_the_admin_layout_in_an_error_colour(desktop, admin_site, tmp_path):
    page = desktop
    problems = watch_console(page)
    page.get_by_role("navigation", name="后台菜单").get_by_role("link", name="提现审核").click()
    expect(page.locator("tbody tr", has_text="待审核")).to_have_count(1)
    page.get_by_role("button", name="同意（微信打款）").click()  # nothing ticked
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("请选择提现申请")
    expect(alert).to_have_css("background-color", ERROR_RED)
    expect(page.locator(".dq-admin-bar")).to_be_visible()
    expect(page.locator(".dq-tabbar")).to_have_count(0)
    page.screenshot(path=str(shots_folder(tmp_path) / "refused-approval.png"), full_page=False)
    # Every 4xx page is console-logged by Chromium as the failed load it is; nothing else may be.
    assert [problem for problem in problems if "status of 400" not in problem] == []
