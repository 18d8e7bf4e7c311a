"""The member's side of a 商家转账 payout in a real headless Chromium at phone size, against the real app and the
fake WeChat Pay v3: withdraw → finance approves (a transfer bill) → 待确认收款 → 确认收款 on the phone → 已到账.

WeChat's own confirmation page is played by the fake: the page's ``WeixinJSBridge`` (which only WeChat provides)
is stubbed to hand the bill's package to the fake, which confirms the bill as the member's tap would; our page
then asks the server, which asks WeChat — the path a real phone takes after its callback."""
import re

import pytest
from sqlalchemy import select

from dingqiao import create_app
from dingqiao.extensions import db
from dingqiao.models import LedgerEntry, LedgerKind, Withdrawal, WithdrawalStatus
from dingqiao.services.invariants import check_money
from dingqiao.services.withdrawals import approve_withdrawal
from dingqiao.models import AdminUser
from dingqiao.wechat import pay_gateways
from tests.conftest import empty_database, log_in_member, make_config
from tests.live_server import live_server
from tests.money_world import build_world, buy, pay, pick_up
from tests.test_browser import CHROMIUM_ARGS, VIEWPORT, WECHAT_UA, browser, expect  # noqa: F401 - the fixture
from tests.test_browser_submits import tap_and_confirm

pytestmark = pytest.mark.browser

BRIDGE_STUB = """
window.WeixinJSBridge = {
  invoke: function (name, params, callback) {
    if (name !== "requestMerchantTransfer") {  // the JS-SDK's own calls (wx.config's verification): accepted
      setTimeout(function () { callback({ err_msg: name + ":ok" }); }, 0);
      return;
    }
    window.dqWeChatConfirms(name, params).then(function (answer) { callback({ err_msg: answer }); });
  },
  on: function () {}
};
"""


@pytest.fixture
def shop(database_url, tmp_path, fake_wechat):
    config = make_config(database_url, tmp_path, fake_wechat, RECONCILE_AFTER_MINUTES=0)
    app = create_app(config)
    with app.app_context():
        db.create_all()
    try:
        yield app
    finally:
        empty_database(app)


def session_cookie(app, user_id: int) -> str:
    client = app.test_client()
    log_in_member(client, user_id)
    return client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value


def test_a_member_confirms_a_transfer_on_the_phone_and_sees_it_arrive(shop, browser, fake_wechat, tmp_path):
    app = shop
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)  # taken through v2 before the merchant switched: v2 and v3 side by side
    pick_up(app, world, order_no)
    app.config["WECHAT_PAY_API"] = "v3"

    confirmed = []

    def wechat_confirms(name: str, params: dict) -> str:
        """WeChat's confirmation page: the member checks the amount and taps 确认收款."""
        assert name == "requestMerchantTransfer"
        assert params["mchId"] == fake_wechat.mch_id and params["appId"] == fake_wechat.app_id
        bill_no = next(no for no, bill in fake_wechat.pay_v3.bills.items()
                       if bill.get("package_info") == params["package"])
        fake_wechat.pay_v3.confirm_bill(bill_no)
        confirmed.append(bill_no)
        return "requestMerchantTransfer:ok"

    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2, user_agent=WECHAT_UA, is_mobile=True,
                                  has_touch=True, locale="zh-CN")
    context.set_default_timeout(10_000)
    context.expose_function("dqWeChatConfirms", wechat_confirms)
    context.add_init_script(BRIDGE_STUB)
    with live_server(app) as url:
        context.add_cookies([{"name": app.config["SESSION_COOKIE_NAME"], "value": session_cookie(app, world.parent),
                              "url": url}])
        page = context.new_page()
        page.goto(f"{url}/wallet/")
        page.get_by_placeholder("金额（元）").fill("5")
        page.get_by_role("button", name="提现", exact=True).click()
        tap_and_confirm(page, page.get_by_role("button", name="确认提现").click,  # the amount and fee, then 确认
                        page.get_by_role("status").filter(has_text="提现申请已提交"))
        expect(page.locator(".weui-cells", has_text="¥5.00").first).to_contain_text("审核中")

        with app.app_context():  # finance approves: a transfer bill the member must confirm
            withdrawal = db.session.scalar(select(Withdrawal).where(Withdrawal.user_id == world.parent))
            finance = db.session.get(AdminUser, world.finance_id)
            approve_withdrawal(db.session, pay_gateways(app), finance, withdrawal.id)
            withdrawal_no = withdrawal.withdrawal_no

        page.reload()
        row = page.locator(".dq-transfer")
        expect(row).to_contain_text("待确认收款")
        assert page.evaluate("() => document.scrollingElement.scrollWidth") <= VIEWPORT["width"]
        page.screenshot(path=str(tmp_path / "wallet-awaiting-confirmation.png"), full_page=True)
        row.get_by_role("button", name="确认收款").click()
        expect(page.locator(".weui-cells", has_text="¥5.00").first).to_contain_text("已到账")
        page.screenshot(path=str(tmp_path / "wallet-paid.png"), full_page=True)
        context.close()

    assert confirmed == [withdrawal_no]
    assert fake_wechat.pay_v3.bills[withdrawal_no]["state"] == "SUCCESS"
    with app.app_context():
        withdrawal = db.session.scalar(select(Withdrawal).where(Withdrawal.withdrawal_no == withdrawal_no))
        assert withdrawal.status == WithdrawalStatus.PAID and withdrawal.payout_method == "wechat_bill"
        paid = db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == LedgerKind.WITHDRAWAL_PAID)).all()
        assert [entry.withdrawal_id for entry in paid] == [withdrawal.id]
        assert check_money(db.session) == []
    assert re.fullmatch(r"WD\d+", withdrawal_no)
