"""Screenshots of the demo at phone size, as a person would see it, with Debian's Chromium.

    python scripts/screenshot.py [BASE_URL] [OUT_DIR]

BASE_URL defaults to http://127.0.0.1:5000 (the demo started by scripts/demo). Logs in as a demo member
through the demo login page and walks the member's path at 390×844: home, a product, the cart, checkout,
the unpaid order, then "模拟支付" and the paid order with its pickup QR code, and "我的". Then the back
half of the loop: 李娜 (whose upline is 陈静) buys and pays, the region's factory store redeems the code
by typing it, and 陈静's wallet shows the settled direct reward; the team board and 身份升级. Then the offline
side: an outlet's stock page, a restock order placed by the outlet and partly shipped by the factory store,
and the factory and outlet dashboards.
"""
import re
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN"
)


def confirm(page) -> None:
    """Answer 确定 in the page's confirm dialog (hx-confirm, drawn by app.js)."""
    page.get_by_role("alertdialog").get_by_role("button", name="确定").click()


def login_as(page, base_url: str, name: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base_url}/auth/login")
    page.locator("form", has_text=name).get_by_role("button").click()
    page.wait_for_url(f"{base_url}/")


def shoot(base_url: str, out_dir: Path, member_name: str = "王丽") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, user_agent=WECHAT_UA,
                                is_mobile=True, has_touch=True)
        page.goto(f"{base_url}/auth/login")
        page.locator("form", has_text=member_name).get_by_role("button").click()
        page.wait_for_url(f"{base_url}/")

        def snap(name: str, full_page: bool = False) -> None:
            page.wait_for_load_state("networkidle")
            page.wait_for_function(  # charts drawn (or known empty) before the picture is taken
                "() => [...document.querySelectorAll('canvas[data-chart-url]')].every(c => c.dataset.chartReady)")
            target = out_dir / f"{name}.png"
            page.screenshot(path=str(target), full_page=full_page)
            shots.append(target)

        page.goto(base_url + "/")
        snap("home")
        page.goto(base_url + "/products/2")
        snap("product")
        page.get_by_role("button", name="加入购物车").click()
        page.locator(".dq-toast--ok").wait_for()
        page.goto(base_url + "/cart/")
        snap("cart")
        page.goto(base_url + "/checkout/")
        snap("checkout")
        page.get_by_role("button", name="提交订单").click()
        page.wait_for_url("**/orders/DQ*")
        snap("order-unpaid")
        page.get_by_role("button", name="模拟支付").click()
        page.locator(".dq-pickup__qr").wait_for()
        snap("order-paid")
        page.goto(base_url + "/me/")
        snap("me")

        login_as(page, base_url, "李娜")
        page.goto(base_url + "/products/1")
        page.get_by_role("button", name="立即购买").click()
        page.wait_for_url("**/checkout/?buy=*")
        page.get_by_role("button", name="提交订单").click()
        page.wait_for_url("**/orders/DQ*")
        page.get_by_role("button", name="模拟支付").click()
        code = page.locator(".dq-pickup__code").inner_text().replace(" ", "")
        login_as(page, base_url, "西湖工厂店·林总")
        page.goto(base_url + "/outlet/redeem")
        page.get_by_placeholder("或输入 12 位核销码").fill(code)
        page.get_by_role("button", name="查询").click()
        page.get_by_role("button", name="确认核销，交付商品").wait_for()
        snap("redeem-confirm")
        page.get_by_role("button", name="确认核销，交付商品").click()
        page.get_by_text("核销成功").wait_for()
        snap("redeem-done")
        login_as(page, base_url, "陈静")
        page.goto(base_url + "/wallet/")
        snap("wallet", full_page=True)
        login_as(page, base_url, "王丽")
        page.goto(base_url + "/me/team")
        snap("team", full_page=True)
        page.goto(base_url + "/me/upgrade")
        snap("upgrade", full_page=True)

        # The offline side: an outlet's stock, a restock order through the factory store, the dashboards.
        login_as(page, base_url, "文三路·黄姐")
        page.goto(base_url + "/stock/")
        snap("outlet-stock", full_page=True)
        page.goto(base_url + "/restock/new")
        page.locator("input[name^=qty-]").nth(0).fill("12")
        page.locator("input[name^=qty-]").nth(1).fill("6")
        page.get_by_role("button", name="提交进货单").click()
        confirm(page)
        page.wait_for_url(re.compile(r".*/restock/\d+$"))
        restock_url = page.url
        login_as(page, base_url, "西湖工厂店·林总")
        page.goto(restock_url)
        page.locator("input[name^=qty-]").nth(0).fill("8")
        page.get_by_role("button", name="确认发货").click()
        confirm(page)
        page.get_by_text("部分发货").first.wait_for()
        snap("restock-order", full_page=True)
        page.goto(base_url + "/factory/")
        snap("factory-dashboard", full_page=True)
        login_as(page, base_url, "文三路·黄姐")
        page.goto(base_url + "/outlet/dashboard")
        snap("outlet-dashboard", full_page=True)
        browser.close()
    return shots


if __name__ == "__main__":
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "screenshots")
    for shot in shoot(base.rstrip("/"), out):
        print(shot)
