"""The demo's WeChat in a real headless Chromium at phone size, with the browser's own user agent (no WeChat): the
demo's WeixinJSBridge stand-in (dingqiao/static/js/demo_wechat.js) lets the pages' own code and the JS-SDK run
against the simulated WeChat — the outlet's 扫码核销 opens a code-entry sheet, and 确认收款 opens the simulator's
confirmation page, whose answer comes back to the wallet, which asks our server, which asks WeChat."""
import pytest
from sqlalchemy import select

from dingqiao.models import Order, OrderStatus, Outlet, User, Withdrawal, WithdrawalStatus
from dingqiao.money import format_yuan as yuan
from tests.test_browser import VIEWPORT, browser, demo_login, expect  # noqa: F401 - the fixture
from tests.test_demo_wechat import demo, finance, query  # noqa: F401 - the fixture

pytestmark = pytest.mark.browser


@pytest.fixture
def phone(browser):
    """A phone-sized Chromium that is not WeChat: its own user agent, no WeixinJSBridge of its own."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  locale="zh-CN")
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


def test_the_outlets_scan_button_opens_a_code_entry_sheet_and_redeems(demo, phone, tmp_path):
    order = query(demo, select(Order).where(Order.status == OrderStatus.PAID).order_by(Order.id))
    keeper = query(demo, select(User.nickname).join(Outlet, Outlet.owner_user_id == User.id)
                   .where(Outlet.id == order.outlet_id))
    page = phone
    demo_login(page, demo.url, keeper)
    page.goto(f"{demo.url}/outlet/redeem")
    scan = page.get_by_role("button", name="扫码核销")
    expect(scan).to_be_enabled()  # wx.config held: the JS-SDK signed by our server with the simulator's ticket
    scan.click()
    sheet = page.get_by_role("dialog", name="模拟扫一扫")
    expect(sheet).to_be_visible()
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= VIEWPORT["width"]
    page.screenshot(path=str(tmp_path / "scan-sheet.png"))
    sheet.get_by_label("扫码内容").fill(f"{demo.url}/outlet/redeem/{order.pickup_code}")  # what the QR holds
    sheet.get_by_role("button", name="确定").click()
    expect(sheet).to_be_hidden()
    result = page.locator("#redeem-result")
    expect(result).to_contain_text(yuan(order.total_fen))
    result.get_by_role("button", name="确认核销，交付商品").click()
    expect(result).to_contain_text("核销成功")
    assert query(demo, select(Order.status).where(Order.id == order.id)) == OrderStatus.COMPLETED


def test_confirming_a_payout_opens_the_simulated_wechat_page_and_the_wallet_shows_it_paid(demo, phone, tmp_path):
    withdrawal = query(demo, select(Withdrawal).where(Withdrawal.status == WithdrawalStatus.REQUESTED))
    earner = query(demo, select(User.nickname).where(User.id == withdrawal.user_id))
    finance(demo).post("/admin/withdrawals/review", {"action": "approve", "withdrawal_id": str(withdrawal.id)})
    page = phone
    demo_login(page, demo.url, earner)
    page.goto(f"{demo.url}/wallet/")
    row = page.locator(".dq-transfer")
    expect(row).to_contain_text("待确认收款")
    with page.expect_popup() as opened:
        row.get_by_role("button", name="确认收款").click()
    wechat = opened.value  # WeChat's own confirmation page, played by the simulator
    expect(wechat.get_by_text(yuan(withdrawal.amount_fen - withdrawal.fee_fen))).to_be_visible()
    wechat.screenshot(path=str(tmp_path / "wechat-confirm.png"))
    with wechat.expect_event("close"):
        wechat.get_by_role("button", name="确认收款").click()
    expect(page.locator(".weui-cells", has_text=yuan(withdrawal.amount_fen)).first).to_contain_text("已到账")
    assert query(demo, select(Withdrawal.status).where(Withdrawal.id == withdrawal.id)) == WithdrawalStatus.PAID
