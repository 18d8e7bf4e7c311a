"""No double submits, in a real Chromium (issue 21): a double tap on 确认提现 or 模拟支付 at phone size, and a
double click on a finance decision at desktop size, each leave exactly one write — counted in the database. Then
the same form is posted twice straight from the page's own session (page.request), without the browser's help,
and the server still writes once."""
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import (
    AuditLog,
    LedgerEntry,
    LedgerKind,
    PaymentEvent,
    User,
    Wallet,
    Withdrawal,
    WithdrawalStatus,
)
from tests.test_browser import (
    admin_desktop,
    browser,  # noqa: F401 - a fixture
    browser_wait_for,
    demo_app_site,
    demo_seeds,  # noqa: F401 (the module's seeded demo database)
    demo_login,
    expect,
    phone_page,
    wait_for_htmx,
)

pytestmark = pytest.mark.browser

DEADLINE_SECONDS = 30


@dataclass
class Site:
    url: str
    app: Flask  # the same database as the server's, for counting rows

    def scalar(self, statement):
        with self.app.app_context():
            return db.session.scalar(statement)


@pytest.fixture
def site(database_url, tmp_path, demo_seeds) -> Iterator[Site]:  # noqa: F811
    """The seeded demo with its weeks of trade (members with money, one withdrawal waiting) on a live server."""
    with demo_app_site(database_url, tmp_path, history=True, seeds=demo_seeds) as (url, app):
        yield Site(url, app)


@pytest.fixture
def phone(browser, site):
    page = phone_page(browser)
    yield page
    page.context.close()


@pytest.fixture
def desktop(browser, site):
    page = admin_desktop(browser, site.url)
    yield page
    page.context.close()


class Posts:
    """The page's POSTs to ``path``: how many were sent and how many have ended (answered, or cut off)."""

    def __init__(self, page, path: str):
        self.sent, self.ended = [], []
        pattern = re.compile(rf"{re.escape(path)}(\?.*)?$")

        def matches(request) -> bool:
            return request.method == "POST" and pattern.search(request.url) is not None

        page.on("request", lambda request: matches(request) and self.sent.append(request))
        page.on("requestfinished", lambda request: matches(request) and self.ended.append(request))
        page.on("requestfailed", lambda request: matches(request) and self.ended.append(request))

    def wait_until_all_ended(self, page) -> None:
        browser_wait_for(page, lambda: self.sent and len(self.ended) >= len(self.sent),
                         f"every post ended ({len(self.sent)} sent, {len(self.ended)} ended so far)", DEADLINE_SECONDS)


def tap_and_confirm(page, tap, outcome) -> list[str]:
    """Run ``tap``, then say yes to the 确认 the page asks (the browser's confirm(), or the page's own dialog,
    whose 确定 is tapped twice too) until ``outcome`` shows. Returns what was asked."""
    asked = getattr(page, "dq_asked", None)
    if asked is None:
        asked = page.dq_asked = []

        def answer(native_dialog):
            asked.append(native_dialog.message)
            native_dialog.accept()

        page.on("dialog", answer)
    tap()
    dialog = page.get_by_role("alertdialog")
    expect(dialog.or_(outcome).first).to_be_visible()
    if dialog.is_visible():
        asked.append(dialog.inner_text())
        dialog.get_by_role("button", name="确定").dblclick()
    expect(outcome).to_be_visible()
    return asked


def double_tap(page, button, outcome) -> list[str]:
    """Two taps on ``button`` dispatched at once, then yes to any 确认, until ``outcome`` shows."""
    return tap_and_confirm(page, lambda: button.evaluate("b => { b.click(); b.click(); }"), outcome)


def csrf_of(page) -> str:
    return page.locator('meta[name="csrf-token"]').get_attribute("content")


def test_a_double_tap_on_confirm_withdrawal_requests_once(phone, site, tmp_path):
    with site.app.app_context():
        earner = db.session.scalar(select(User).join(Wallet, Wallet.user_id == User.id)
                                   .order_by(Wallet.available_fen.desc()))
        name, user_id, had_phone = earner.nickname, earner.id, bool(earner.phone)
    withdrawals = select(func.count()).select_from(Withdrawal).where(Withdrawal.user_id == user_id)
    before = site.scalar(withdrawals)

    demo_login(phone, site.url, name)
    phone.goto(f"{site.url}/wallet/")
    wait_for_htmx(phone)
    phone.get_by_placeholder("金额（元）").fill("1")
    if not had_phone:
        phone.get_by_placeholder("11 位手机号").fill("13900001111")
    phone.get_by_role("button", name="提现", exact=True).click()
    form = phone.locator("#withdraw-form")
    expect(form).to_contain_text("实际到账")
    expect(form.get_by_role("button", name="确认提现")).to_be_visible()
    phone.screenshot(path=str(tmp_path / "wallet-review.png"), full_page=True)

    posts = Posts(phone, "/wallet/withdrawals")
    asked = double_tap(phone, form.get_by_role("button", name="确认提现"),
                       phone.get_by_role("status").filter(has_text="提现申请已提交"))
    posts.wait_until_all_ended(phone)
    phone.screenshot(path=str(tmp_path / "wallet-requested.png"), full_page=True)
    assert asked and "确认提现 ¥1.00？手续费 ¥0.00，实际到账 ¥1.00。" in asked[0]
    assert site.scalar(withdrawals) == before + 1

    # The server holds on its own: the same drawing of the form posted twice from the page's session.
    phone.get_by_role("button", name="全部提现").click()
    expect(form).to_contain_text("实际到账")
    key = form.locator('input[name="submission_key"]').input_value()
    amount = form.locator('input[name="amount"]').input_value()
    answers = [phone.request.post(f"{site.url}/wallet/withdrawals", max_redirects=0,
                                  form={"csrf_token": csrf_of(phone), "submission_key": key, "amount": amount})
               for _ in range(2)]
    assert [(a.status, a.headers["location"]) for a in answers] == [(303, "/wallet/")] * 2
    assert site.scalar(withdrawals) == before + 2
    assert site.scalar(select(Wallet.available_fen).where(Wallet.user_id == user_id)) == 0  # 全部提现: all of it


def test_a_double_tap_on_demo_pay_pays_once(phone, site):
    demo_login(phone, site.url, "王丽")

    def place_order() -> str:
        phone.goto(f"{site.url}/products/1")
        phone.get_by_role("button", name="立即购买").click()
        phone.wait_for_url(re.compile(r".*/checkout/"))
        phone.get_by_role("button", name="提交订单").click()
        phone.wait_for_url(re.compile(r".*/orders/DQ\d+$"))
        expect(phone.locator(".dq-status__label")).to_have_text("待支付")
        wait_for_htmx(phone)
        return phone.url.rsplit("/", 1)[1]

    def events_of(order_no: str) -> int:
        return site.scalar(select(func.count()).select_from(PaymentEvent).where(PaymentEvent.out_trade_no == order_no))

    order_no = place_order()
    posts = Posts(phone, f"/orders/{order_no}/demo-pay")
    double_tap(phone, phone.get_by_role("button", name=re.compile("模拟支付")),
               phone.locator(".dq-status__label", has_text="待自提"))
    posts.wait_until_all_ended(phone)
    assert events_of(order_no) == 1  # a second notify would be recorded as a duplicate

    order_no = place_order()
    key = phone.locator('form[action$="/demo-pay"] input[name="submission_key"]').input_value()
    answers = [phone.request.post(f"{site.url}/orders/{order_no}/demo-pay", max_redirects=0,
                                  form={"csrf_token": csrf_of(phone), "submission_key": key}) for _ in range(2)]
    assert [(a.status, a.headers["location"]) for a in answers] == [(303, f"/orders/{order_no}")] * 2
    assert events_of(order_no) == 1
    phone.reload()
    expect(phone.locator(".dq-status__label")).to_have_text("待自提")


def test_a_double_click_on_a_finance_decision_acts_once_and_shows_no_error(desktop, site, tmp_path):
    page = desktop
    waiting = site.scalar(select(Withdrawal.id).where(Withdrawal.status == WithdrawalStatus.REQUESTED))
    assert waiting is not None, "the demo's history leaves one withdrawal waiting"
    page.goto(f"{site.url}/admin/withdrawals")
    page.locator(f'input[name="withdrawal_id"][value="{waiting}"]').check()
    page.get_by_placeholder("拒绝原因").fill("核实中")
    posts = Posts(page, "/admin/withdrawals/review")
    double_tap(page, page.get_by_role("button", name="拒绝并退回余额"), page.locator(".dq-results", has_text="已拒绝"))
    posts.wait_until_all_ended(page)
    expect(page.locator(".dq-results")).not_to_contain_text("已处理")  # the repeat answered as the first did
    page.screenshot(path=str(tmp_path / "admin-withdrawal-rejected.png"), full_page=True)
    returned = select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.kind == LedgerKind.WITHDRAWAL_RETURNED, LedgerEntry.withdrawal_id == waiting)
    assert site.scalar(returned) == 1
    assert site.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "withdrawal.rejected")) == 1
