"""The demo runs production's WeChat paths against its simulated WeChat (dingqiao/wechat/simulator): the app is made
from the settings ``start_demo_wechat`` returns, put into the environment as `dingqiao demo` does, seeded with the
demo's weeks of trade and served on a real HTTP server; people act through HTTP — finance approves a refund and a payout,
the member confirms on the simulator's 确认收款 page, the worker sends template messages, a page asks for its JS-SDK
config, a stranger follows a member's QR code — and the simulator answers as WeChat would, notifies included."""
import re
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from dingqiao import create_app
from dingqiao.extensions import db
from dingqiao.models import (
    LedgerEntry,
    LedgerKind,
    Order,
    OrderItem,
    OrderStatus,
    ReferralBinding,
    Refund,
    User,
    Withdrawal,
    WithdrawalStatus,
)
from dingqiao.services.demo_data import DEMO_ADMIN_PASSWORD, DEMO_ADMIN_USERNAME, seed_demo, seed_demo_history
from dingqiao.services.invariants import check_money
from dingqiao.wechat.demo import DEMO_APP_ID
from dingqiao.wechat.simulator import start_demo_wechat
from dingqiao.worker import run as run_delivery
from tests.conftest import empty_database, wait_for
from tests.gunicorn_server import Visitor
from tests.live_server import live_server

DEADLINE_SECONDS = 30  # for what WeChat does in the background: a notify, a refund finishing


@dataclass(frozen=True)
class Demo:
    app: Flask
    url: str  # our server
    wechat: str  # the simulated WeChat: its API and its console


@pytest.fixture
def demo(database_url, tmp_path, monkeypatch) -> Iterator[Demo]:
    """The demo as `dingqiao demo` starts it — the simulated WeChat's settings in the environment, demo mode, the
    seeded data with its weeks of trade — on a live server, which is the app's PUBLIC_BASE_URL (where notifies go)."""
    instance = tmp_path / "instance"
    settings = start_demo_wechat(str(instance))
    for name, value in {**settings, "DINGQIAO_DEMO": "1", "DINGQIAO_JOBS": "0"}.items():
        monkeypatch.setenv(name, value)
    for name in ("SECRET_KEY", "PUBLIC_BASE_URL", "WECHAT_MCH_KEY", "WECHAT_MCH_CERT_PATH", "WECHAT_TEMPLATE_IDS"):
        monkeypatch.delenv(name, raising=False)
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "UPLOAD_FOLDER": str(tmp_path / "uploads"),
                      "RATELIMIT_KEY_PREFIX": uuid.uuid4().hex, "CATALOG_CACHE_SECONDS": 0},
                     instance_path=str(instance))
    try:
        with app.app_context():
            db.create_all()
            assert seed_demo(db.session, app.config["UPLOAD_FOLDER"], None).created
            seed_demo_history(db.session)
            db.session.remove()
        with live_server(app) as url:
            app.config["PUBLIC_BASE_URL"] = url
            yield Demo(app, url, settings["WECHAT_BASE_URL"])
    finally:
        empty_database(app)


def member(demo: Demo, user_id: int) -> Visitor:
    visitor = Visitor(demo.url)
    visitor.log_in(user_id)
    return visitor


def finance(demo: Demo) -> Visitor:
    """The demo's admin (a superadmin: may approve refunds and payouts), logged in through the login form."""
    admin = Visitor(demo.url)
    admin.get("/admin/login")
    answer = admin.post("/admin/login", {"username": DEMO_ADMIN_USERNAME, "password": DEMO_ADMIN_PASSWORD})
    assert answer.status_code == 302, answer.status_code
    admin.get("/admin/")
    return admin


def query(demo: Demo, statement):
    with demo.app.app_context():
        try:
            return db.session.scalar(statement)
        finally:
            db.session.remove()


def console(demo: Demo) -> str:
    return requests.get(f"{demo.wechat}/", timeout=30).text


def assert_money_adds_up(demo: Demo) -> None:
    with demo.app.app_context():
        assert check_money(db.session) == []
        db.session.remove()


def deliver_all(demo: Demo) -> None:
    """What the outbox job does: passes until nothing is due (the seeded trade's messages go too)."""
    while run_delivery(demo.app, once=True, echo=lambda _line: None).claimed:
        pass


def unredeemed_order(demo: Demo) -> Order:
    return query(demo, select(Order).where(Order.status == OrderStatus.PAID).order_by(Order.id))


# ------------------------------------------------------------------------------------------------------- tests

def test_demo_mode_accepts_the_simulated_wechat_and_still_refuses_a_real_one(tmp_path):
    """The simulator's settings start the demo; the same app id elsewhere, or an https public URL, do not."""
    from dingqiao.config import ConfigError

    settings = start_demo_wechat(str(tmp_path / "instance"))
    demo = {**settings, "DINGQIAO_DEMO": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'd.db'}"}
    create_app(demo, instance_path=str(tmp_path / "instance"))
    with pytest.raises(ConfigError, match="DINGQIAO_DEMO.*WECHAT_APP_ID"):
        create_app({**demo, "WECHAT_BASE_URL": ""}, instance_path=str(tmp_path / "instance"))  # WeChat's real hosts
    with pytest.raises(ConfigError, match="DINGQIAO_DEMO.*WECHAT_APP_SECRET"):
        create_app({**demo, "WECHAT_APP_ID": "wx1234567890abcdef"}, instance_path=str(tmp_path / "instance"))
    with pytest.raises(ConfigError, match="DINGQIAO_DEMO.*PUBLIC_BASE_URL"):
        create_app({**demo, "PUBLIC_BASE_URL": "https://shop.example.cn"}, instance_path=str(tmp_path / "instance"))


@pytest.mark.parametrize("notified", [True, False], ids=["notified", "no-public-url"])
def test_finance_approves_a_refund_and_wechat_completes_it(demo, notified):
    """With PUBLIC_BASE_URL our refund carries a notify address: WeChat accepts it, and posts REFUND.SUCCESS there a
    moment later. Without one, the simulator does it at once, and the query our server makes right after finds it."""
    if not notified:
        demo.app.config["PUBLIC_BASE_URL"] = ""
    order = unredeemed_order(demo)
    buyer = member(demo, order.user_id)
    assert buyer.post(f"/orders/{order.order_no}/refund", {"reason": "买多了"}).status_code in (302, 303)
    refund_id = query(demo, select(Refund.id).where(Refund.order_id == order.id))

    assert finance(demo).post(f"/admin/refunds/{refund_id}/approve").status_code == 302
    notify = rf"REFUND.SUCCESS</td><td>{demo.url}/wechat/pay/v3/refund-notify</td><td>204"
    if notified:
        wait_for(lambda: re.search(notify, console(demo)), "our server takes WeChat's refund notify (204)", DEADLINE_SECONDS)
    assert query(demo, select(Order.status).where(Order.id == order.id)) == OrderStatus.REFUNDED
    assert "款项已原路退回" in buyer.get(f"/orders/{order.order_no}").text
    out_refund_no = query(demo, select(Refund.out_refund_no).where(Refund.id == refund_id))
    page = console(demo)
    assert re.search(rf"{out_refund_no}</td><td>{order.order_no}</td><td>[^<]+</td>\s*<td>SUCCESS", page)
    assert bool(re.search(notify, page)) == notified
    assert_money_adds_up(demo)


def test_a_payout_waits_for_the_members_confirmation_on_wechats_page_then_is_paid(demo):
    withdrawal = query(demo, select(Withdrawal).where(Withdrawal.status == WithdrawalStatus.REQUESTED))
    admin = finance(demo)
    answer = admin.post("/admin/withdrawals/review", {"action": "approve", "withdrawal_id": str(withdrawal.id)})
    assert answer.status_code == 302
    assert "待用户确认收款" in admin.get("/admin/withdrawals").text

    earner = member(demo, withdrawal.user_id)
    wallet = earner.get("/wallet/").text
    assert "待确认收款" in wallet
    package = re.search(r'data-package="([^"]+)"', wallet).group(1)
    # 确认收款 opens WeChat's confirmation page (the simulator's); the member confirms there.
    sheet = requests.get(f"{demo.wechat}/transfer/confirm", params={"package": package, "origin": demo.url}, timeout=30)
    assert sheet.status_code == 200 and "确认收款" in sheet.text
    confirmed = requests.post(f"{demo.wechat}/transfer/confirm", data={"package": package, "origin": demo.url},
                              timeout=30)
    assert 'data-result="requestMerchantTransfer:ok"' in confirmed.text
    # Back on the wallet our page asks our server, which asks WeChat (the notify may have been quicker).
    assert earner.post(f"/wallet/withdrawals/{withdrawal.withdrawal_no}/check").status_code in (302, 303)
    assert query(demo, select(Withdrawal.status).where(Withdrawal.id == withdrawal.id)) == WithdrawalStatus.PAID
    assert "已到账" in earner.get("/wallet/").text
    paid = query(demo, select(LedgerEntry.withdrawal_id).where(LedgerEntry.kind == LedgerKind.WITHDRAWAL_PAID))
    assert paid == withdrawal.id
    wait_for(lambda: "MCHTRANSFER.BILL.FINISHED</td><td>" + demo.url in console(demo), "the transfer notify is sent",
             DEADLINE_SECONDS)
    assert_money_adds_up(demo)


def test_a_payment_message_reaches_the_simulated_wechat_and_its_console_lists_it(demo):
    earlier = unredeemed_order(demo)  # a member buys again what they bought at that outlet before
    buyer = member(demo, earlier.user_id)
    buyer.put_in_cart(query(demo, select(OrderItem.product_id).where(OrderItem.order_id == earlier.id)))
    status, order_no = buyer.check_out(earlier.outlet_id)
    assert status in (302, 303) and order_no
    assert buyer.post(f"/orders/{order_no}/demo-pay").status_code in (302, 303)  # 模拟支付: the v3 notify path
    assert query(demo, select(Order.status).where(Order.order_no == order_no)) == OrderStatus.PAID

    deliver_all(demo)
    openid = query(demo, select(User.openid).where(User.id == earlier.user_id))
    assert re.search(rf"订单支付成功通知 → {openid}.*?订单编号</td><td>{order_no}</td>", console(demo), re.S)


def test_a_page_gets_a_jssdk_config_the_simulated_wechat_accepts(demo):
    owner = query(demo, select(User.id).where(User.openid == "demo-outlet1"))
    outlet = member(demo, owner)
    page = outlet.get("/outlet/redeem").text
    assert f'data-simulator="{demo.wechat}"' in page and "jweixin" in page  # the demo's bridge, then the JS-SDK
    url = f"{demo.url}/outlet/redeem"
    config = outlet.get("/wechat/jssdk-config", params={"url": url}).json()
    assert config["enabled"] and config["appId"] == DEMO_APP_ID and "scanQRCode" in config["jsApiList"]

    def verified(page_url: str) -> bool:
        fields = {"appId": config["appId"], "url": page_url, "timestamp": config["timestamp"],
                  "nonceStr": config["nonceStr"], "signature": config["signature"]}
        return requests.post(f"{demo.wechat}/jsapi/verify", data=fields, timeout=30).json()["ok"]

    assert verified(url) and verified(url + "#top")  # WeChat signs the URL without its fragment
    assert not verified(f"{demo.url}/wallet/")


def test_a_follow_of_a_members_qr_code_posted_by_the_simulator_binds_the_new_follower(demo):
    referrer = query(demo, select(User).where(User.openid == "demo-member1"))
    follower = "oDemoFollower" + uuid.uuid4().hex[:15]
    answer = requests.post(f"{demo.wechat}/follow", allow_redirects=False, timeout=30,
                           data={"code": referrer.referral_code, "openid": follower, "event": "subscribe",
                                 "app": demo.url})
    assert answer.status_code == 303
    page = console(demo)
    assert f"{follower} 扫码关注（推广码 {referrer.referral_code}）：顶俏应答 HTTP 200。回复：欢迎关注" in page
    new_id = query(demo, select(User.id).where(User.openid == follower))
    assert query(demo, select(ReferralBinding.upline_id).where(ReferralBinding.user_id == new_id)) == referrer.id
