"""WeChat Pay API v3 and 商家转账 end to end: the real v3 client code (``dingqiao.wechat.pay_v3`` over the
``wechatpayv3`` library) against the fake WeChat's v3 half (tests/fake_wechat_pay_v3.py), which checks every
request's signature and signs every answer and notify with real keys. Pay, notify, refund, pay out by a transfer bill
the member confirms, and everything that can go wrong on the way; the money invariants are checked at the end of
every money test."""
import base64
import html
import json
import re
import secrets
import time
from datetime import timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import func, select

from dingqiao import create_app
from dingqiao.config import ConfigError
from dingqiao.extensions import db
from dingqiao.models import (
    AdminUser,
    AuditLog,
    LedgerEntry,
    LedgerKind,
    Order,
    OrderStatus,
    OutboxMessage,
    Payment,
    PaymentEvent,
    PaymentEventKind,
    RefusedNotify,
    Refund,
    RefundStatus,
    StockLevel,
    User,
    Wallet,
    Withdrawal,
    WithdrawalStatus,
)
from dingqiao.services.orders import place_order
from dingqiao.services.refunds import RefundError, approve_refund, open_after_sales_refund, request_refund
from dingqiao.services.withdrawals import (
    WithdrawalError,
    WithdrawalRules,
    approve_withdrawal,
    cancel_transfer,
    check_transfer,
    request_withdrawal,
)
from dingqiao.wechat import pay_gateways
from tests.conftest import (
    csrf_token,
    empty_database,
    log_in_admin,
    log_in_member,
    make_config,
    open_for_business,
    run_concurrently,
)
from tests.factories import make_outlet, make_product, make_user, stock
from tests.money_world import assert_money_consistent, balances, build_world, buy, pick_up
from tests.test_config import AES_KEY

RULES = WithdrawalRules(min_fen=100, fee_bps=0, daily_cap_fen=500_000)
PAY_NOTIFY = "/wechat/pay/v3/notify"
REFUND_NOTIFY = "/wechat/pay/v3/refund-notify"
TRANSFER_NOTIFY = "/wechat/pay/v3/transfer-notify"
BILLS = "/v3/fund-app/mch-transfer/transfer-bills"
CERTIFICATES = "/v3/certificates"


@pytest.fixture
def app_config(app_config):
    # The merchant is on API v3 (its v2 key still set, as for a merchant who switched); every refund and payout is
    # due for the cron's query at once.
    return {**app_config, "WECHAT_PAY_API": "v3", "RECONCILE_AFTER_MINUTES": 0}


@pytest.fixture
def v3(fake_wechat):
    return fake_wechat.pay_v3


# ------------------------------------------------------------------------------------------------ helpers

def post_notify(app, path: str, notify: tuple[dict, bytes], address: str = "198.51.100.7"):
    headers, body = notify
    return app.test_client().post(path, data=body, headers=headers, environ_base={"REMOTE_ADDR": address})


def assert_refused(answer, status: int = 400) -> None:
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.get_json()["code"] == "FAIL"


def member_client(app, user_id: int):
    client = app.test_client()
    log_in_member(client, user_id)
    return client


def start_v3_payment(app, user_id: int, order_no: str) -> dict:
    """Tap 微信支付: the fragment's JS-bridge parameters for getBrandWCPayRequest."""
    client = member_client(app, user_id)
    answer = client.post(f"/orders/{order_no}/pay",
                         headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client)})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    match = re.search(r"data-wechat-pay='([^']*)'", answer.get_data(as_text=True))
    assert match, answer.get_data(as_text=True)
    return json.loads(html.unescape(match.group(1)))


def verify_pay_sign(v3, params: dict) -> None:
    """API v3's paySign: RSA-SHA256 over appId, timeStamp, nonceStr and package, one per line, with the merchant's
    private key — checked here with its public half, as WeChat's client does."""
    public = serialization.load_pem_private_key(v3.merchant_private_key_pem.encode(), None).public_key()
    message = "".join(f"{params[k]}\n" for k in ("appId", "timeStamp", "nonceStr", "package"))
    public.verify(base64.b64decode(params["paySign"]), message.encode(), padding.PKCS1v15(), hashes.SHA256())


def pay_v3(app, v3, user_id: int, order_no: str) -> None:
    """The member pays through API v3 and WeChat's notify is delivered."""
    start_v3_payment(app, user_id, order_no)
    answer = post_notify(app, PAY_NOTIFY, v3.pay(order_no))
    assert answer.status_code == 204, answer.get_data(as_text=True)


def earn(app, v3, world, orders: int = 1, quantity: int = 1) -> None:
    """The parent earns ¥10.00 per unit: a v3-paid order of the buyer's, picked up (commissions settle)."""
    for _ in range(orders):
        order_no = buy(app, world, quantity=quantity)
        pay_v3(app, v3, world.buyer, order_no)
        pick_up(app, world, order_no)


def order_row(app, order_no: str) -> Order:
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        db.session.expunge(order)
        return order


def withdrawal_row(app, withdrawal_id: int) -> Withdrawal:
    with app.app_context():
        withdrawal = db.session.get(Withdrawal, withdrawal_id)
        db.session.expunge(withdrawal)
        return withdrawal


def refund_row(app, refund_id: int) -> Refund:
    with app.app_context():
        refund = db.session.get(Refund, refund_id)
        db.session.expunge(refund)
        return refund


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def ledger(app, kind: LedgerKind) -> int:
    return count(app, LedgerEntry, LedgerEntry.kind == kind)


def events(app) -> list[tuple[str, bool]]:
    with app.app_context():
        return [(e.kind, e.needs_attention) for e in db.session.scalars(select(PaymentEvent).order_by(PaymentEvent.id))]


def refused(app) -> dict[str, int]:
    with app.app_context():
        return {row.reason: row.count for row in db.session.scalars(select(RefusedNotify))}


def withdrawn(app, user_id: int) -> tuple[int, int]:
    """(withdrawing, withdrawn) in fen."""
    with app.app_context():
        wallet = db.session.scalar(select(Wallet).where(Wallet.user_id == user_id))
        return wallet.withdrawing_fen, wallet.withdrawn_fen


def finance(world) -> AdminUser:
    return db.session.get(AdminUser, world.finance_id)


def approved_bill(app, v3, world, amount_fen: int = 500, payee_name: str = "") -> Withdrawal:
    """The parent earned ¥10 per ¥100 bought, asked to withdraw ``amount_fen``, and finance approved it: a bill
    waiting for the member's 确认收款."""
    with app.app_context():
        withdrawal_id = request_withdrawal(db.session, world.parent, amount_fen, RULES, payee_name=payee_name).id
        approve_withdrawal(db.session, pay_gateways(app), finance(world), withdrawal_id)
    withdrawal = withdrawal_row(app, withdrawal_id)
    assert withdrawal.status == WithdrawalStatus.APPROVED and withdrawal.payout_method == "wechat_bill"
    assert withdrawal.transfer_state == "WAIT_USER_CONFIRM"
    assert withdrawal.transfer_package == v3.bills[withdrawal.withdrawal_no]["package_info"]
    return withdrawal


def reconcile(app) -> str:
    """The cron: `flask reconcile-wechat-pay`."""
    outcome = app.test_cli_runner().invoke(args=["reconcile-wechat-pay"])
    assert outcome.exit_code == 0, outcome.output
    return outcome.output


def resigned(v3, notify: tuple[dict, bytes], event_type: str, **changes) -> tuple[dict, bytes]:
    """The same resource with ``changes``, properly encrypted and signed: what WeChat would send in that case."""
    resource = v3.decrypt_notification(notify[1]) | changes
    return v3.notification(event_type, resource)


# ------------------------------------------------------------------------------------------- 1: the v3 loop

def test_the_v3_loop_pay_pick_up_withdraw_confirm_and_get_paid(app, fake_wechat, v3):
    world = build_world(app)
    order_no = buy(app, world)

    params = start_v3_payment(app, world.buyer, order_no)
    at_wechat = v3.orders[order_no]
    assert params["package"] == f"prepay_id={at_wechat.prepay_id}" and params["signType"] == "RSA"
    assert params["appId"] == fake_wechat.app_id
    verify_pay_sign(v3, params)
    with pytest.raises(InvalidSignature):  # the signature covers the package: it is not decorative
        verify_pay_sign(v3, {**params, "package": "prepay_id=wx0000"})
    assert at_wechat.total == 10_000 and at_wechat.notify_url == "http://localhost" + PAY_NOTIFY
    assert fake_wechat.calls("/mch/pay/unifiedorder") == []  # not through v2

    answer = post_notify(app, PAY_NOTIFY, v3.pay(order_no))
    assert answer.status_code == 204 and answer.get_data() == b""
    order = order_row(app, order_no)
    assert order.status == OrderStatus.PAID and order.pickup_code
    with app.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == order_no))
        assert (payment.api, payment.status, payment.amount_fen) == ("v3", "paid", 10_000)
        assert payment.transaction_id == v3.orders[order_no].transaction_id
    assert events(app) == [("accepted", False)]
    assert balances(app, world.parent) == (0, 1000)

    pick_up(app, world, order_no)  # redeemed at the outlet: the commissions settle
    assert balances(app, world.parent) == (1000, 0)

    member = member_client(app, world.parent)
    asked = member.post("/wallet/withdrawals", data={"amount": "10", "csrf_token": csrf_token(member)})
    assert asked.status_code in (302, 303), asked.get_data(as_text=True)
    with app.app_context():
        withdrawal_id, withdrawal_no = db.session.execute(select(Withdrawal.id, Withdrawal.withdrawal_no)).one()

    staff = app.test_client()
    log_in_admin(staff, world.finance_id)
    staff.post("/admin/withdrawals/review", data={"csrf_token": csrf_token(staff), "action": "approve",
                                                  "withdrawal_id": [withdrawal_id]})
    assert "待用户确认收款" in staff.get("/admin/withdrawals").get_data(as_text=True)
    bill = v3.bills[withdrawal_no]
    assert bill["state"] == "WAIT_USER_CONFIRM" and bill["transfer_amount"] == 1000
    with app.app_context():
        assert bill["openid"] == db.session.get(User, world.parent).openid
    assert bill["notify_url"] == "http://localhost" + TRANSFER_NOTIFY and bill["user_name_plain"] == ""
    assert fake_wechat.calls("/mch/mmpaymkttransfers/promotion/transfers") == []  # no legacy transfer
    withdrawal = withdrawal_row(app, withdrawal_id)
    assert withdrawal.status == WithdrawalStatus.APPROVED and withdrawal.transfer_state == "WAIT_USER_CONFIRM"
    assert withdrawn(app, world.parent) == (1000, 0)

    page = member.get("/wallet/").get_data(as_text=True)
    assert "待确认收款" in page and "确认收款" in page
    assert f'data-package="{bill["package_info"]}"' in page
    assert f'data-mch-id="{fake_wechat.mch_id}"' in page and f'data-app-id="{fake_wechat.app_id}"' in page
    with app.app_context():
        [told] = db.session.scalars(select(OutboxMessage).where(OutboxMessage.event == "withdrawal_confirm"))
        assert told.user_id == world.parent

    answer = post_notify(app, TRANSFER_NOTIFY, v3.confirm_bill(withdrawal_no))
    assert answer.status_code == 204
    withdrawal = withdrawal_row(app, withdrawal_id)
    assert withdrawal.status == WithdrawalStatus.PAID and withdrawal.payment_no == bill["transfer_bill_no"]
    assert withdrawal.transfer_package is None and withdrawal.transfer_state == "SUCCESS"
    assert ledger(app, LedgerKind.WITHDRAWAL_PAID) == 1 and ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 0
    assert balances(app, world.parent) == (0, 0) and withdrawn(app, world.parent) == (0, 1000)
    page = member.get("/wallet/").get_data(as_text=True)
    assert "已到账" in page and "data-transfer-confirm" not in page
    assert_money_consistent(app)


# --------------------------------------------------------------------------------------------- 2: notifies

@pytest.fixture
def waiting(app, v3):
    """An order the buyer has opened the v3 pay sheet for: (world, order_no)."""
    world = build_world(app)
    order_no = buy(app, world)
    start_v3_payment(app, world.buyer, order_no)
    return world, order_no


def assert_unpaid(app, order_no: str) -> None:
    order = order_row(app, order_no)
    assert order.status == OrderStatus.PENDING_PAYMENT and order.pickup_code is None
    assert count(app, OutboxMessage) == 0


def test_a_forged_notify_is_refused_and_counted_as_a_bad_signature(app, v3, waiting):
    _world, order_no = waiting
    resource = v3.decrypt_notification(v3.pay(order_no)[1])
    assert_refused(post_notify(app, PAY_NOTIFY, v3.notification("TRANSACTION.SUCCESS", resource, forge=True)))
    assert_unpaid(app, order_no)
    assert refused(app) == {"bad_signature": 1} and events(app) == []


@pytest.mark.parametrize("skew", [-600, 600], ids=["ten minutes old", "ten minutes ahead"])
def test_a_replayed_notify_outside_the_time_window_is_refused_as_stale(app, v3, waiting, skew):
    _world, order_no = waiting
    resource = v3.decrypt_notification(v3.pay(order_no)[1])
    old = v3.notification("TRANSACTION.SUCCESS", resource, timestamp=int(time.time()) + skew)
    assert_refused(post_notify(app, PAY_NOTIFY, old))
    assert_unpaid(app, order_no)
    assert refused(app) == {"stale": 1} and events(app) == []


def test_the_same_notify_twice_is_answered_204_and_nothing_is_doubled(app, v3, waiting):
    world, order_no = waiting
    notify = v3.pay(order_no)
    assert post_notify(app, PAY_NOTIFY, notify).status_code == 204
    code, messages = order_row(app, order_no).pickup_code, count(app, OutboxMessage)
    assert post_notify(app, PAY_NOTIFY, notify).status_code == 204
    assert post_notify(app, PAY_NOTIFY, v3.pay(order_no)).status_code == 204  # WeChat's resend: a new notify id
    assert order_row(app, order_no).pickup_code == code
    assert events(app) == [("accepted", False), ("duplicate", False), ("duplicate", False)]
    assert count(app, OutboxMessage) == messages and count(app, Payment) == 1
    assert count(app, OutboxMessage, OutboxMessage.event == "order_paid") == 1
    assert ledger(app, LedgerKind.COMMISSION_FROZEN) == 4  # one per beneficiary, once
    assert balances(app, world.parent) == (0, 1000)
    assert_money_consistent(app)


def test_a_notify_for_another_amount_is_a_mismatch_and_the_order_stays_unpaid(app, v3, waiting):
    _world, order_no = waiting
    answer = post_notify(app, PAY_NOTIFY, v3.pay(order_no, total=1))
    assert_refused(answer)
    assert_unpaid(app, order_no)
    assert events(app) == [("mismatch", True)] and refused(app) == {}
    assert_money_consistent(app)


def test_a_notify_encrypted_under_another_apiv3_key_is_refused(app, v3, waiting):
    _world, order_no = waiting
    resource = v3.decrypt_notification(v3.pay(order_no)[1])
    other = v3.notification("TRANSACTION.SUCCESS", resource, apiv3_key=secrets.token_hex(16))
    assert_refused(post_notify(app, PAY_NOTIFY, other))
    assert_unpaid(app, order_no)
    assert refused(app) == {"bad_signature": 1} and events(app) == []


def test_a_merchant_switching_keys_accepts_notifies_signed_by_the_platform_certificate_too(app_config, request, v3,
                                                                                         tmp_path):
    """Public key and platform-certificate folder both set (WeChat signs with either while a merchant moves to
    the 微信支付公钥): a notify signed by the certificate is verified with it, fetched once into the folder."""
    cert_dir = tmp_path / "platform-certs"
    app_config["WECHAT_PAY_PLATFORM_CERT_DIR"] = str(cert_dir)
    app = request.getfixturevalue("app")
    world = build_world(app)
    first, second = buy(app, world), buy(app, world)
    start_v3_payment(app, world.buyer, first)
    start_v3_payment(app, world.buyer, second)

    v3.signer = "platform_cert"
    by_certificate = v3.pay(first)
    assert by_certificate[0]["Wechatpay-Serial"] == v3.platform_cert_serial
    assert post_notify(app, PAY_NOTIFY, by_certificate).status_code == 204
    assert post_notify(app, PAY_NOTIFY, v3.pay(first)).status_code == 204  # a resend: the certificate is known now
    assert len(v3.calls(CERTIFICATES)) == 1
    assert [p.name for p in cert_dir.iterdir()] == [f"{v3.platform_cert_serial}.pem"]

    v3.signer = "public_key"
    assert post_notify(app, PAY_NOTIFY, v3.pay(second)).status_code == 204
    assert order_row(app, first).status == order_row(app, second).status == OrderStatus.PAID
    assert events(app) == [("accepted", False), ("duplicate", False), ("accepted", False)]
    assert len(v3.calls(CERTIFICATES)) == 1 and refused(app) == {}
    assert_money_consistent(app)


def junk_serials() -> list[str]:
    return [secrets.token_hex(20).upper(), secrets.token_hex(20).upper(), "F" * 40, "not-hex-at-all", "9" * 200]


@pytest.mark.parametrize("cert_dir", [False, True], ids=["public key only", "with a certificate folder"])
def test_junk_with_made_up_serials_does_not_make_the_app_hammer_the_certificate_endpoint(app_config, request, v3,
                                                                                       tmp_path, cert_dir):
    if cert_dir:
        app_config["WECHAT_PAY_PLATFORM_CERT_DIR"] = str(tmp_path / "platform-certs")
    app = request.getfixturevalue("app")
    world = build_world(app)
    order_no = buy(app, world)
    start_v3_payment(app, world.buyer, order_no)
    headers, body = v3.pay(order_no)
    for serial in junk_serials():
        assert_refused(post_notify(app, PAY_NOTIFY, ({**headers, "Wechatpay-Serial": serial}, body)))
    assert refused(app) == {"bad_signature": 5}
    assert len(v3.calls(CERTIFICATES)) <= 1
    if not cert_dir:
        assert v3.calls(CERTIFICATES) == []
        v3.signer = "platform_cert"  # a merchant without the folder does not know the certificate at all
        assert_refused(post_notify(app, PAY_NOTIFY, v3.pay(order_no)))
        assert v3.calls(CERTIFICATES) == [] and refused(app) == {"bad_signature": 6}
    assert_unpaid(app, order_no)
    assert events(app) == []


# -------------------------------------------------------------------------------------------- 3: refunds

def refund_requested(app, v3, world, picked_up: bool = False) -> tuple[str, int]:
    """The buyer paid through v3 (and picked the goods up, for an after-sales refund) and the refund is open."""
    order_no = buy(app, world)
    pay_v3(app, v3, world.buyer, order_no)
    with app.app_context():
        if picked_up:
            pick_up(app, world, order_no)
            return order_no, open_after_sales_refund(db.session, finance(world), order_no, "质量问题").id
        return order_no, request_refund(db.session, world.buyer, order_no, "不想要了").id


def approve(app, world, refund_id: int) -> Refund:
    with app.app_context():
        approve_refund(db.session, pay_gateways(app), finance(world), refund_id)
    return refund_row(app, refund_id)


def reserved(app, world) -> tuple[int, int]:
    with app.app_context():
        level = db.session.scalar(select(StockLevel).where(StockLevel.product_id == world.product_id))
        return level.on_hand, level.reserved


def accepted_refund(app, v3, world) -> tuple[str, int, str]:
    """A refund WeChat accepted (PROCESSING) and has not finished: (order_no, refund id, out_refund_no)."""
    order_no, refund_id = refund_requested(app, v3, world)
    v3.refund_outcome = "PROCESSING"
    refund = approve(app, world, refund_id)
    assert refund.status == RefundStatus.PROCESSING and refund.wechat_refund_id
    [sent] = v3.calls("/v3/refund/domestic/refunds")
    assert sent["out_refund_no"] == refund.out_refund_no and sent["out_trade_no"] == order_no
    assert sent["amount"] == {"refund": 10_000, "total": 10_000, "currency": "CNY"}
    assert sent["notify_url"] == "http://localhost" + REFUND_NOTIFY
    assert order_row(app, order_no).status == OrderStatus.PAID  # nothing reversed on acceptance alone
    assert balances(app, world.parent) == (0, 1000) and reserved(app, world) == (100, 1)
    assert_money_consistent(app)
    return order_no, refund_id, refund.out_refund_no


def test_a_v3_refund_closed_after_acceptance_is_failed_and_a_retry_refunds_once(app, v3):
    world = build_world(app)
    order_no, refund_id, number = accepted_refund(app, v3, world)
    reconcile(app)
    assert refund_row(app, refund_id).status == RefundStatus.PROCESSING  # WeChat is still at it

    assert post_notify(app, REFUND_NOTIFY, v3.finish_refund(number, "CLOSED")).status_code == 204
    refund = refund_row(app, refund_id)
    assert refund.status == RefundStatus.FAILED and "关闭" in refund.reject_reason
    assert order_row(app, order_no).status == OrderStatus.PAID and order_row(app, order_no).after_sales_open
    assert balances(app, world.parent) == (0, 1000) and reserved(app, world) == (100, 1)
    staff = app.test_client()
    log_in_admin(staff, world.finance_id)
    page = staff.get("/admin/refunds").get_data(as_text=True)
    assert order_no in page and "退款失败" in page and "重新退款" in page
    assert_money_consistent(app)

    v3.refund_outcome = "SUCCESS"
    staff.post(f"/admin/refunds/{refund_id}/approve", data={"csrf_token": csrf_token(staff)})
    refund = refund_row(app, refund_id)
    assert refund.status == RefundStatus.SUCCEEDED and refund.out_refund_no == f"{number}-2"
    assert {no: r["status"] for no, r in v3.refunds.items()} == {number: "CLOSED", f"{number}-2": "SUCCESS"}
    assert order_row(app, order_no).status == OrderStatus.REFUNDED
    assert balances(app, world.parent) == (0, 0) and reserved(app, world) == (100, 0)
    assert post_notify(app, REFUND_NOTIFY, v3.refund_notification(number)).status_code == 204  # late repeat
    assert post_notify(app, REFUND_NOTIFY, v3.refund_notification(f"{number}-2")).status_code == 204
    assert refund_row(app, refund_id).status == RefundStatus.SUCCEEDED
    assert ledger(app, LedgerKind.COMMISSION_REVERSED) == 4
    assert count(app, PaymentEvent, PaymentEvent.kind == PaymentEventKind.LATE_RESULT) == 0
    with app.app_context(), pytest.raises(RefundError, match="已处理"):
        approve_refund(db.session, pay_gateways(app), finance(world), refund_id)
    assert len(v3.calls("/v3/refund/domestic/refunds")) == 2
    assert_money_consistent(app)


def test_an_abnormal_v3_refund_stays_processing_with_its_reason_until_wechat_succeeds(app, v3):
    world = build_world(app)
    order_no, refund_id, number = accepted_refund(app, v3, world)
    assert post_notify(app, REFUND_NOTIFY, v3.finish_refund(number, "ABNORMAL")).status_code == 204
    refund = refund_row(app, refund_id)
    assert refund.status == RefundStatus.PROCESSING and "退款异常" in refund.reject_reason
    approve(app, world, refund_id)  # finance's 查询结果 asks, and sends nothing new
    assert len(v3.calls("/v3/refund/domestic/refunds")) == 1
    assert refund_row(app, refund_id).status == RefundStatus.PROCESSING
    assert order_row(app, order_no).status == OrderStatus.PAID and reserved(app, world) == (100, 1)
    assert_money_consistent(app)

    assert post_notify(app, REFUND_NOTIFY, v3.finish_refund(number, "SUCCESS")).status_code == 204
    assert refund_row(app, refund_id).status == RefundStatus.SUCCEEDED
    assert order_row(app, order_no).status == OrderStatus.REFUNDED
    assert balances(app, world.parent) == (0, 0) and reserved(app, world) == (100, 0)
    assert_money_consistent(app)


@pytest.mark.parametrize("picked_up", [False, True], ids=["before pickup", "after-sales"])
def test_a_v3_refund_that_succeeds_at_once_refunds_once_by_the_existing_rules(app, v3, picked_up):
    world = build_world(app)
    order_no, refund_id = refund_requested(app, v3, world, picked_up=picked_up)
    refund = approve(app, world, refund_id)  # WeChat's SUCCESS comes back with the query right after the request
    assert refund.status == RefundStatus.SUCCEEDED
    notify = v3.refund_notification(refund.out_refund_no)
    for _ in range(2):  # the notify still comes, and again: nothing twice
        assert post_notify(app, REFUND_NOTIFY, notify).status_code == 204
    order = order_row(app, order_no)
    assert order.status == OrderStatus.REFUNDED and not order.after_sales_open
    if picked_up:  # the goods stay with the buyer; settled commissions are clawed back
        assert reserved(app, world) == (99, 0)
        assert ledger(app, LedgerKind.COMMISSION_CLAWED_BACK) == 4
        assert balances(app, world.parent) == (0, 0)
    else:  # the reservation is released; frozen commissions reversed
        assert reserved(app, world) == (100, 0)
        assert ledger(app, LedgerKind.COMMISSION_REVERSED) == 4
        assert balances(app, world.parent) == (0, 0)
    assert count(app, AuditLog, AuditLog.action == "refund.succeeded") == 1
    assert len(v3.calls("/v3/refund/domestic/refunds")) == 1
    assert_money_consistent(app)


def test_a_refund_notify_for_another_amount_or_forged_changes_nothing(app, v3):
    world = build_world(app)
    order_no, refund_id, number = accepted_refund(app, v3, world)
    success = v3.finish_refund(number, "SUCCESS")
    resource = v3.decrypt_notification(success[1])
    other_amount = v3.notification("REFUND.SUCCESS", {**resource, "amount": {**resource["amount"], "refund": 1}})
    assert_refused(post_notify(app, REFUND_NOTIFY, other_amount))
    assert_refused(post_notify(app, REFUND_NOTIFY, v3.notification("REFUND.SUCCESS", resource, forge=True)))
    assert_refused(post_notify(app, REFUND_NOTIFY, v3.notification("REFUND.SUCCESS", resource,
                                                                  timestamp=int(time.time()) - 600)))
    assert refund_row(app, refund_id).status == RefundStatus.PROCESSING
    assert order_row(app, order_no).status == OrderStatus.PAID
    assert refused(app) == {"bad_signature": 1, "stale": 1}
    assert post_notify(app, REFUND_NOTIFY, success).status_code == 204  # the genuine one still works
    assert refund_row(app, refund_id).status == RefundStatus.SUCCEEDED
    assert_money_consistent(app)


# ---------------------------------------------------------------------------- 4: v2 and v3 side by side

def test_money_taken_through_v2_goes_back_through_v2_and_new_orders_take_v3(app, fake_wechat, v3):
    world = build_world(app)
    old = buy(app, world)
    app.config["WECHAT_PAY_API"] = "v2"  # before the switch
    client = member_client(app, world.buyer)
    answer = client.post(f"/orders/{old}/pay", headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client)})
    v2_params = json.loads(html.unescape(re.search(r"data-wechat-pay='([^']*)'", answer.get_data(as_text=True))[1]))
    assert v2_params["signType"] != "RSA" and v2_params["package"].startswith("prepay_id=")
    paid = client.post("/wechat/pay/notify", data=fake_wechat.pay(old), content_type="text/xml")
    assert paid.status_code == 200 and "SUCCESS" in paid.get_data(as_text=True)

    app.config["WECHAT_PAY_API"] = "v3"  # the merchant switched
    new = buy(app, world)
    params = start_v3_payment(app, world.buyer, new)
    assert params["signType"] == "RSA"
    assert post_notify(app, PAY_NOTIFY, v3.pay(new)).status_code == 204
    with app.app_context():
        apis = dict(db.session.execute(select(Payment.out_trade_no, Payment.api)).all())
    assert apis == {old: "v2", new: "v3"}
    assert [c["out_trade_no"] for c in fake_wechat.calls("/mch/pay/unifiedorder")] == [old]
    assert list(v3.orders) == [new]

    with app.app_context():
        old_refund = request_refund(db.session, world.buyer, old, "买错了").id
        new_refund = request_refund(db.session, world.buyer, new, "买错了").id
    assert approve(app, world, old_refund).status == RefundStatus.SUCCEEDED
    assert [c["out_trade_no"] for c in fake_wechat.calls("/mch/secapi/pay/refund")] == [old]
    assert v3.calls("/v3/refund/domestic/refunds") == []
    assert approve(app, world, new_refund).status == RefundStatus.SUCCEEDED
    assert [c["out_trade_no"] for c in v3.calls("/v3/refund/domestic/refunds")] == [new]
    assert len(fake_wechat.calls("/mch/secapi/pay/refund")) == 1
    assert order_row(app, old).status == order_row(app, new).status == OrderStatus.REFUNDED
    assert_money_consistent(app)


# -------------------------------------------------------------------------------------------- 5: payouts

def test_a_bill_the_member_never_confirms_expires_and_the_money_goes_back_once(app, v3):
    world = build_world(app)
    earn(app, v3, world)
    withdrawal = approved_bill(app, v3, world, 600)
    assert balances(app, world.parent) == (400, 0)
    v3.cancel_bill_by_user(withdrawal.withdrawal_no)  # opened WeChat, left without confirming: nothing happens
    expired = v3.expire_bill(withdrawal.withdrawal_no)
    for _ in range(2):
        assert post_notify(app, TRANSFER_NOTIFY, expired).status_code == 204
    withdrawal = withdrawal_row(app, withdrawal.id)
    assert withdrawal.status == WithdrawalStatus.FAILED and "24 小时" in withdrawal.failure_reason
    assert withdrawal.transfer_package is None
    assert ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 1 and ledger(app, LedgerKind.WITHDRAWAL_PAID) == 0
    assert balances(app, world.parent) == (1000, 0) and withdrawn(app, world.parent) == (0, 0)
    assert "打款失败" in member_client(app, world.parent).get("/wallet/").get_data(as_text=True)
    assert_money_consistent(app)


def test_finance_cancels_an_unconfirmed_bill_and_the_money_goes_back(app, v3):
    world = build_world(app)
    earn(app, v3, world)
    withdrawal = approved_bill(app, v3, world, 500)
    staff = app.test_client()
    log_in_admin(staff, world.finance_id)
    staff.post("/admin/withdrawals/review", data={"csrf_token": csrf_token(staff), "action": "cancel_transfer",
                                                  "withdrawal_id": [withdrawal.id]})
    assert v3.bills[withdrawal.withdrawal_no]["state"] == "CANCELLED"
    assert [m for m, path, _ in v3.requests if path.endswith(f"/out-bill-no/{withdrawal.withdrawal_no}/cancel")] \
        == ["POST"]
    cancelled = withdrawal_row(app, withdrawal.id)
    assert cancelled.status == WithdrawalStatus.FAILED and "撤销" in cancelled.failure_reason
    assert balances(app, world.parent) == (1000, 0)
    # WeChat's notify of the cancel comes afterwards: nothing changes twice.
    assert post_notify(app, TRANSFER_NOTIFY, v3.bill_notification(withdrawal.withdrawal_no)).status_code == 204
    assert ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 1
    with app.app_context(), pytest.raises(WithdrawalError):
        cancel_transfer(db.session, pay_gateways(app), finance(world), withdrawal.id)  # nothing left to cancel
    assert balances(app, world.parent) == (1000, 0)
    assert_money_consistent(app)


def test_a_cancel_wechat_holds_as_canceling_finishes_by_its_notify(app, v3):
    world = build_world(app)
    earn(app, v3, world)
    withdrawal = approved_bill(app, v3, world, 500)
    v3.cancel_outcome = "CANCELING"
    with app.app_context(), pytest.raises(WithdrawalError, match="撤销已提交"):
        cancel_transfer(db.session, pay_gateways(app), finance(world), withdrawal.id)
    assert withdrawal_row(app, withdrawal.id).status == WithdrawalStatus.APPROVED
    assert balances(app, world.parent) == (500, 0)
    assert post_notify(app, TRANSFER_NOTIFY, v3.finish_cancel(withdrawal.withdrawal_no)).status_code == 204
    assert withdrawal_row(app, withdrawal.id).status == WithdrawalStatus.FAILED
    assert balances(app, world.parent) == (1000, 0) and ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 1
    assert_money_consistent(app)


def test_not_enough_in_the_operating_account_keeps_the_payout_for_a_retry_under_the_same_number(app, v3):
    """NOT_ENOUGH: "商户运营账户资金不足，充值后可以原单号发起重试，请勿更换商户单号". The payout is not failed (which
    would hand the money back for a new withdrawal under a new number): it stays approved, finance is told, and
    approving again once the account is topped up makes the bill under the same number."""
    world = build_world(app)
    earn(app, v3, world)
    with app.app_context():
        withdrawal_id = request_withdrawal(db.session, world.parent, 500, RULES).id
    v3.transfer_err_code = "NOT_ENOUGH"
    with app.app_context(), pytest.raises(WithdrawalError, match="余额不足") as told:
        approve_withdrawal(db.session, pay_gateways(app), finance(world), withdrawal_id)
    assert "已退回" not in told.value.message
    withdrawal = withdrawal_row(app, withdrawal_id)
    assert withdrawal.status == WithdrawalStatus.APPROVED and withdrawal.transfer_package is None
    assert v3.bills == {} and balances(app, world.parent) == (500, 0)
    assert ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 0
    reconcile(app)  # WeChat has no bill under that number: the cron decides nothing
    assert withdrawal_row(app, withdrawal_id).status == WithdrawalStatus.APPROVED
    assert_money_consistent(app)

    v3.transfer_err_code = ""  # topped up
    with app.app_context():
        approve_withdrawal(db.session, pay_gateways(app), finance(world), withdrawal_id)
    withdrawal = withdrawal_row(app, withdrawal_id)
    assert withdrawal.status == WithdrawalStatus.APPROVED and withdrawal.transfer_state == "WAIT_USER_CONFIRM"
    assert [c["out_bill_no"] for c in v3.calls(BILLS)] == [withdrawal.withdrawal_no] * 2
    assert post_notify(app, TRANSFER_NOTIFY, v3.confirm_bill(withdrawal.withdrawal_no)).status_code == 204
    assert withdrawal_row(app, withdrawal_id).status == WithdrawalStatus.PAID
    assert balances(app, world.parent) == (500, 0) and ledger(app, LedgerKind.WITHDRAWAL_PAID) == 1
    assert_money_consistent(app)


def test_finance_can_give_up_a_payout_wechat_never_made_a_bill_for(app, v3):
    """After NOT_ENOUGH finance may decide not to top up: 撤销 finds no bill at WeChat and the money goes back once."""
    world = build_world(app)
    earn(app, v3, world)
    with app.app_context():
        withdrawal_id = request_withdrawal(db.session, world.parent, 500, RULES).id
    v3.transfer_err_code = "NOT_ENOUGH"
    with app.app_context(), pytest.raises(WithdrawalError, match="撤销微信转账"):
        approve_withdrawal(db.session, pay_gateways(app), finance(world), withdrawal_id)
    with app.app_context(), pytest.raises(WithdrawalError, match="处理中"):
        # Right after the approval a missing bill may still be on its way: nothing is returned yet.
        cancel_transfer(db.session, pay_gateways(app), finance(world), withdrawal_id)
    assert withdrawal_row(app, withdrawal_id).status == WithdrawalStatus.APPROVED
    with app.app_context():
        cancel_transfer(db.session, pay_gateways(app), finance(world), withdrawal_id, timedelta(0))
    withdrawal = withdrawal_row(app, withdrawal_id)
    assert withdrawal.status == WithdrawalStatus.FAILED and "未在微信建立转账" in withdrawal.failure_reason
    assert balances(app, world.parent) == (1000, 0) and ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 1
    with app.app_context(), pytest.raises(WithdrawalError):  # once
        cancel_transfer(db.session, pay_gateways(app), finance(world), withdrawal_id, timedelta(0))
    assert ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 1
    assert_money_consistent(app)


def test_a_certain_refusal_still_returns_the_money_at_once(app, v3):
    world = build_world(app)
    earn(app, v3, world)
    with app.app_context():
        withdrawal_id = request_withdrawal(db.session, world.parent, 500, RULES).id
    v3.transfer_err_code = "NO_AUTH"
    with app.app_context(), pytest.raises(WithdrawalError, match="已退回"):
        approve_withdrawal(db.session, pay_gateways(app), finance(world), withdrawal_id)
    assert withdrawal_row(app, withdrawal_id).status == WithdrawalStatus.FAILED
    assert balances(app, world.parent) == (1000, 0) and ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 1
    assert_money_consistent(app)


def test_another_scene_the_merchant_was_granted_sends_its_own_report_items_and_perception(app, v3):
    """A merchant whose platform shows another scene (1006 企业报销, say) names its items as 类型=内容 pairs."""
    v3.transfer_scenes["1006"] = {"report_types": ("报销类型", "报销说明"), "perceptions": ("报销款",)}
    app.config.update(WECHAT_TRANSFER_SCENE_ID="1006", WECHAT_TRANSFER_REPORT=("报销类型=推广物料", "报销说明=门店推广费用"),
                      WECHAT_TRANSFER_PERCEPTION="报销款")
    world = build_world(app)
    earn(app, v3, world)
    withdrawal = approved_bill(app, v3, world, 500)
    [sent] = v3.calls(BILLS)
    assert sent["transfer_scene_id"] == "1006" and sent["user_recv_perception"] == "报销款"
    assert sent["transfer_scene_report_infos"] == [{"info_type": "报销类型", "info_content": "推广物料"},
                                                   {"info_type": "报销说明", "info_content": "门店推广费用"}]
    assert post_notify(app, TRANSFER_NOTIFY, v3.confirm_bill(withdrawal.withdrawal_no)).status_code == 204
    assert withdrawal_row(app, withdrawal.id).status == WithdrawalStatus.PAID


@pytest.mark.parametrize(
    ("scene", "report", "perception", "message"),
    [
        ("1005", ("推广员",), "", "needs exactly the report items 岗位类型 | 报酬说明"),
        ("1005", ("报酬说明=佣金", "岗位类型=推广员"), "", "in that order"),
        ("1000", ("推广员", "x" * 33), "", "at most 32 characters"),
        ("1006", ("推广物料", "门店推广费用"), "报销款", "name each report item as 类型=内容"),
        ("1006", ("报销类型=推广物料",), "", "WECHAT_TRANSFER_PERCEPTION"),
        ("佣金", ("推广员", "推广佣金"), "", "the number the merchant platform shows"),
    ],
    ids=["one item short", "items swapped", "item too long", "unknown scene without types", "no perception",
         "scene not a number"],
)
def test_transfer_scene_settings_that_wechat_would_refuse_refuse_to_start(tmp_path, fake_wechat, scene, report,
                                                                          perception, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        create_app(production_v3(tmp_path, fake_wechat, WECHAT_TRANSFER_SCENE_ID=scene, WECHAT_TRANSFER_REPORT=report,
                                 WECHAT_TRANSFER_PERCEPTION=perception))


def test_from_two_thousand_yuan_the_payees_real_name_reaches_wechat_encrypted(app, v3):
    world = build_world(app, units=300)
    earn(app, v3, world, quantity=200)  # a ¥20,000 order: ¥2,000 for the parent
    assert balances(app, world.parent) == (200_000, 0)
    with app.app_context(), pytest.raises(WithdrawalError, match="真实姓名"):
        request_withdrawal(db.session, world.parent, 200_000, RULES)
    withdrawal = approved_bill(app, v3, world, 200_000, payee_name=" 张  三 ")
    assert withdrawal.payee_name == "张 三"
    bill = v3.bills[withdrawal.withdrawal_no]
    assert bill["user_name_plain"] == "张 三" and bill["transfer_amount"] == 200_000
    [sent] = v3.calls(BILLS)
    assert sent["user_name"] and "张" not in sent["user_name"]  # encrypted for WeChat Pay's public key
    assert post_notify(app, TRANSFER_NOTIFY, v3.confirm_bill(withdrawal.withdrawal_no)).status_code == 204
    assert withdrawal_row(app, withdrawal.id).status == WithdrawalStatus.PAID
    assert_money_consistent(app)


def test_repeated_and_out_of_order_bill_notifies_change_nothing_twice(app, v3):
    world = build_world(app)
    earn(app, v3, world)
    withdrawal = approved_bill(app, v3, world, 500)
    success = v3.confirm_bill(withdrawal.withdrawal_no)
    for _ in range(2):
        assert post_notify(app, TRANSFER_NOTIFY, success).status_code == 204
    late_fail = resigned(v3, success, "MCHTRANSFER.BILL.FINISHED", state="FAIL", fail_reason="ACCOUNT_FROZEN")
    assert post_notify(app, TRANSFER_NOTIFY, late_fail).status_code == 204
    assert withdrawal_row(app, withdrawal.id).status == WithdrawalStatus.PAID
    assert ledger(app, LedgerKind.WITHDRAWAL_PAID) == 1 and ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 0
    assert balances(app, world.parent) == (500, 0)
    with app.app_context():
        assert check_transfer(db.session, pay_gateways(app), world.parent, withdrawal.withdrawal_no).status == "paid"
    assert count(app, OutboxMessage, OutboxMessage.event == "withdrawal_paid") == 1
    assert_money_consistent(app)


def test_a_bill_notify_that_does_not_match_the_withdrawal_is_refused_and_shown_to_finance(app, v3):
    world = build_world(app)
    earn(app, v3, world)
    withdrawal = approved_bill(app, v3, world, 500)
    success = v3.confirm_bill(withdrawal.withdrawal_no)
    more = resigned(v3, success, "MCHTRANSFER.BILL.FINISHED", transfer_amount=50_000)
    assert_refused(post_notify(app, TRANSFER_NOTIFY, more))
    forged = v3.bill_notification(withdrawal.withdrawal_no, forge=True)
    assert_refused(post_notify(app, TRANSFER_NOTIFY, forged))
    assert withdrawal_row(app, withdrawal.id).status == WithdrawalStatus.APPROVED
    assert [e for e in events(app) if e[0] != "accepted"] == [("late_result", True)]
    assert refused(app) == {"bad_signature": 1}
    assert post_notify(app, TRANSFER_NOTIFY, success).status_code == 204
    assert withdrawal_row(app, withdrawal.id).status == WithdrawalStatus.PAID
    assert_money_consistent(app)


def test_only_the_member_can_check_their_own_transfer(app, v3):
    world = build_world(app)
    earn(app, v3, world)
    withdrawal = approved_bill(app, v3, world, 500)
    v3.confirm_bill(withdrawal.withdrawal_no)  # paid; the notify is late
    stranger = member_client(app, world.grandparent)
    answer = stranger.post(f"/wallet/withdrawals/{withdrawal.withdrawal_no}/check",
                           data={"csrf_token": csrf_token(stranger)})
    assert answer.status_code == 404
    assert withdrawal_row(app, withdrawal.id).status == WithdrawalStatus.APPROVED
    assert withdrawal.withdrawal_no not in stranger.get("/wallet/").get_data(as_text=True)
    owner = member_client(app, world.parent)
    answer = owner.post(f"/wallet/withdrawals/{withdrawal.withdrawal_no}/check", data={"csrf_token": csrf_token(owner)})
    assert answer.status_code in (302, 303)
    assert withdrawal_row(app, withdrawal.id).status == WithdrawalStatus.PAID
    assert ledger(app, LedgerKind.WITHDRAWAL_PAID) == 1
    assert_money_consistent(app)


def test_checking_a_bill_still_waiting_keeps_its_confirm_button(app, v3):
    world = build_world(app)
    earn(app, v3, world)
    withdrawal = approved_bill(app, v3, world, 500)
    owner = member_client(app, world.parent)
    owner.post(f"/wallet/withdrawals/{withdrawal.withdrawal_no}/check", data={"csrf_token": csrf_token(owner)})
    still = withdrawal_row(app, withdrawal.id)
    assert still.status == WithdrawalStatus.APPROVED and still.transfer_package == withdrawal.transfer_package
    assert f'data-package="{withdrawal.transfer_package}"' in owner.get("/wallet/").get_data(as_text=True)


def test_the_cron_finishes_bills_whose_notify_was_lost(app, v3):
    world = build_world(app)
    earn(app, v3, world)
    paid = approved_bill(app, v3, world, 300)
    expired = approved_bill(app, v3, world, 200)
    waiting = approved_bill(app, v3, world, 100)
    reconcile(app)  # nothing decided yet
    assert {withdrawal_row(app, w.id).status for w in (paid, expired, waiting)} == {WithdrawalStatus.APPROVED}
    v3.confirm_bill(paid.withdrawal_no)  # both notifies are lost on the way
    v3.expire_bill(expired.withdrawal_no)
    assert "2 payout(s)" in reconcile(app)
    assert "0 payout(s)" in reconcile(app)
    assert withdrawal_row(app, paid.id).status == WithdrawalStatus.PAID
    assert withdrawal_row(app, expired.id).status == WithdrawalStatus.FAILED
    still = withdrawal_row(app, waiting.id)
    assert still.status == WithdrawalStatus.APPROVED and still.transfer_package == waiting.transfer_package
    assert ledger(app, LedgerKind.WITHDRAWAL_PAID) == 1 and ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 1
    assert balances(app, world.parent) == (1000 - 300 - 100, 0)
    assert_money_consistent(app)


# ---------------------------------------------------------------------------------------- 6: concurrency

def test_concurrent_deliveries_of_the_success_notify_and_checks_pay_once(app, v3):
    world = build_world(app)
    earn(app, v3, world)
    withdrawal = approved_bill(app, v3, world, 500)
    headers, body = v3.confirm_bill(withdrawal.withdrawal_no)
    pay_gateways(app)  # built once before the race, as a running worker has it

    def deliver():
        return app.test_client().post(TRANSFER_NOTIFY, data=body, headers=headers).status_code

    def check():
        return check_transfer(db.session, pay_gateways(app), world.parent, withdrawal.withdrawal_no).status

    outcomes = run_concurrently(app, lambda work: work(), [(deliver,)] * 8 + [(check,)] * 4)
    assert outcomes == [204] * 8 + [WithdrawalStatus.PAID] * 4, outcomes
    assert withdrawal_row(app, withdrawal.id).status == WithdrawalStatus.PAID
    assert ledger(app, LedgerKind.WITHDRAWAL_PAID) == 1 and ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 0
    assert count(app, PaymentEvent, PaymentEvent.kind == PaymentEventKind.LATE_RESULT) == 0
    assert count(app, OutboxMessage, OutboxMessage.event == "withdrawal_paid") == 1
    assert balances(app, world.parent) == (500, 0) and withdrawn(app, world.parent) == (0, 500)
    assert_money_consistent(app)


def test_concurrent_deliveries_of_one_pay_notify_pay_the_order_once(app, v3, waiting):
    world, order_no = waiting
    headers, body = v3.pay(order_no)
    pay_gateways(app)

    outcomes = run_concurrently(
        app, lambda: app.test_client().post(PAY_NOTIFY, data=body, headers=headers).status_code, [()] * 8)
    assert outcomes == [204] * 8, outcomes
    assert order_row(app, order_no).status == OrderStatus.PAID
    assert sorted(events(app)) == [("accepted", False)] + [("duplicate", False)] * 7
    assert ledger(app, LedgerKind.COMMISSION_FROZEN) == 4 and balances(app, world.parent) == (0, 1000)
    assert_money_consistent(app)


# --------------------------------------------------------------------------------------------- 7: config

def production_v3(tmp_path, fake_wechat, **overrides) -> dict:
    """A production merchant on API v3 with everything set, against the fake's keys."""
    settings = {"TESTING": False, "WECHAT_PAY_API": "v3", "WECHAT_MCH_KEY": "", "WECHAT_SERVER_IP": "198.51.100.10",
                "WECHAT_ENCODING_AES_KEY": AES_KEY}
    return make_config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, fake_wechat, **(settings | overrides))


def test_a_whole_v3_merchant_starts(tmp_path, fake_wechat):
    app = create_app(production_v3(tmp_path, fake_wechat))
    gateways = pay_gateways(app)
    assert gateways.current.api == "v3" and gateways.v2 is None
    assert gateways.for_api("v2") is gateways.current  # nothing taken through v2 to send back that way


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"WECHAT_PAY_PUBLIC_KEY_ID": ""}, "WECHAT_PAY_PUBLIC_KEY_PATH and WECHAT_PAY_PUBLIC_KEY_ID"),
        ({"WECHAT_PAY_PUBLIC_KEY_PATH": ""}, "WECHAT_PAY_PUBLIC_KEY_PATH and WECHAT_PAY_PUBLIC_KEY_ID"),
        ({"WECHAT_PAY_PUBLIC_KEY_PATH": "", "WECHAT_PAY_PUBLIC_KEY_ID": ""}, "WECHAT_PAY_PLATFORM_CERT_DIR"),
        ({"WECHAT_MCH_SERIAL_NO": ""}, "WECHAT_MCH_SERIAL_NO"),
        ({"WECHAT_APIV3_KEY": "k" * 31}, "32-character APIv3 key"),
        ({"WECHAT_APIV3_KEY": "钥" * 32}, "32-character APIv3 key"),  # 32 characters, 96 bytes
        ({"WECHAT_PAY_PUBLIC_KEY_ID": "1234567890"}, "PUB_KEY_ID_"),
        ({"WECHAT_MCH_KEY_PATH": "/nonexistent/apiclient_key.pem"}, "key file cannot be read"),
        ({"WECHAT_SERVER_IP": ""}, "WECHAT_SERVER_IP"),
    ],
    ids=["public key without id", "id without public key", "neither key", "no serial", "short apiv3 key",
         "apiv3 key of multibyte characters", "malformed public key id", "missing key file", "no server address"],
)
def test_a_half_configured_v3_merchant_refuses_to_start(tmp_path, fake_wechat, change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        create_app(production_v3(tmp_path, fake_wechat, **change))


@pytest.mark.parametrize("which", ["WECHAT_MCH_KEY_PATH", "WECHAT_PAY_PUBLIC_KEY_PATH"])
def test_a_key_file_that_is_not_a_key_refuses_to_start(tmp_path, fake_wechat, which):
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="key file cannot be read"):
        create_app(production_v3(tmp_path, fake_wechat, **{which: str(junk)}))


@pytest.mark.parametrize("which", ["WECHAT_MCH_KEY_PATH", "WECHAT_PAY_PUBLIC_KEY_PATH"])
def test_a_key_path_that_cannot_be_read_refuses_to_start(tmp_path, fake_wechat, which):
    """A folder where the key file should be (a mount gone wrong): unreadable whoever runs the app, root too."""
    with pytest.raises(ConfigError, match="key file cannot be read"):
        create_app(production_v3(tmp_path, fake_wechat, **{which: str(tmp_path)}))


# ------------------------------------------------------------------------------------------------ 8: demo

def test_demo_pay_posts_a_v3_notify_through_the_real_path_with_private_key_files(app_config, tmp_path):
    app_config.update(DINGQIAO_DEMO=True, WECHAT_APP_ID="", WECHAT_APP_SECRET="", WECHAT_MCH_ID="",
                      WECHAT_MCH_KEY="")
    instance = tmp_path / "instance"
    demo = create_app(app_config, instance_path=str(instance))
    with demo.app_context():
        db.create_all()
        open_for_business(db.session)
    try:
        with demo.app_context():
            member = make_user("演示", openid="demo-x")
            outlet = make_outlet(make_user("店"))
            product = make_product(1990)
            stock(outlet, product, 3)
            order_no = place_order(db.session, member, outlet.id, {product.id: 1}, timeout_minutes=15,
                                   from_cart=False).order_no
            other_no = place_order(db.session, member, outlet.id, {product.id: 1}, timeout_minutes=15,
                                   from_cart=False).order_no
            member_id = member.id
        gateway = pay_gateways(demo).current
        assert gateway.api == "v3" and gateway.demo_signer is not None

        folder = instance / "demo-wechatpay"
        assert sorted(p.name for p in folder.iterdir()) == ["apiv3_key", "merchant_key.pem", "wechatpay_key.pem"]
        assert folder.stat().st_mode & 0o777 == 0o700
        for path in folder.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600, path

        client = demo.test_client()
        log_in_member(client, member_id)
        assert "模拟支付" in client.get(f"/orders/{order_no}").get_data(as_text=True)
        client.post(f"/orders/{order_no}/demo-pay", headers={"X-CSRFToken": csrf_token(client)})
        with demo.app_context():
            assert db.session.scalar(select(Order.status).where(Order.order_no == order_no)) == OrderStatus.PAID
            [event] = db.session.scalars(select(PaymentEvent))
            assert event.kind == "accepted" and '"api": "v3"' in event.detail

        # The demo's notify is what WeChat would POST: the v3 endpoint takes it, and refuses it tampered with.
        with demo.app_context():
            body, headers = gateway.signed_notification(out_trade_no=other_no, transaction_id="DEMO-OTHER",
                                                        total_fee=1990, openid="demo-x")
        tampered = json.dumps({**json.loads(body), "summary": "支付成功了"}, ensure_ascii=False).encode()
        assert_refused(post_notify(demo, PAY_NOTIFY, (headers, tampered)))
        assert post_notify(demo, PAY_NOTIFY, (headers, body)).status_code == 204
        with demo.app_context():
            assert db.session.scalar(select(Order.status).where(Order.order_no == other_no)) == OrderStatus.PAID

        # Built again (another worker, a restart): the same keys, not new ones.
        keys = {p.name: p.read_bytes() for p in folder.iterdir()}
        assert pay_gateways(create_app(app_config, instance_path=str(instance))).current.api == "v3"
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == keys
    finally:
        empty_database(demo)


# ------------------------------------------------------------------------------- after an outside review

def test_a_legacy_payout_whose_v2_key_was_removed_says_so_and_stops_nothing_else(app, fake_wechat, v3):
    """A v2 transfer left unknown, then the merchant switched to v3 and dropped the v2 key: only v2 can ask about
    that transfer, so 同意 says what is missing (no v3 call stands in) and the cron carries on with the others."""
    world = build_world(app)
    earn(app, v3, world)
    app.config["WECHAT_PAY_API"] = "v2"
    with app.app_context():
        legacy_id = request_withdrawal(db.session, world.parent, 300, RULES).id
    fake_wechat.transfer_err_code = "SYSTEMERROR"  # unknown: the transfer may have been made
    with app.app_context(), pytest.raises(WithdrawalError, match="结果未知"):
        approve_withdrawal(db.session, pay_gateways(app), finance(world), legacy_id)
    app.config.update(WECHAT_PAY_API="v3", WECHAT_MCH_KEY="")
    bill = approved_bill(app, v3, world, 200)
    with app.app_context(), pytest.raises(WithdrawalError, match="v2 未配置"):
        approve_withdrawal(db.session, pay_gateways(app), finance(world), legacy_id)
    assert post_notify(app, TRANSFER_NOTIFY, v3.confirm_bill(bill.withdrawal_no)).status_code == 204
    reconcile(app)  # the cron carries on past the payout it cannot ask about
    assert withdrawal_row(app, legacy_id).status == WithdrawalStatus.APPROVED
    assert withdrawal_row(app, bill.id).status == WithdrawalStatus.PAID
    assert v3.calls(BILLS) == [v3.calls(BILLS)[0]]  # only the v3 payout's own bill: nothing sent for the v2 one
    assert_money_consistent(app)


def test_a_v2_merchant_with_half_made_v3_settings_refuses_to_start(tmp_path, fake_wechat):
    config = production_v3(tmp_path, fake_wechat, WECHAT_PAY_API="v2", WECHAT_PAY_PUBLIC_KEY_PATH=str(tmp_path / "no.pem"),
                           WECHAT_MCH_KEY=fake_wechat.mch_key, WECHAT_MCH_CERT_PATH=str(tmp_path / "cert.pem"))
    with pytest.raises(ConfigError, match="remove the v3 settings to stay on v2 alone|key file cannot be read"):
        create_app(config)


def test_a_failed_certificate_refresh_keeps_the_certificates_already_known(app_config, request, v3, tmp_path):
    """Junk with a made-up serial while /v3/certificates is down must not make the app forget the platform
    certificate it holds: WeChat's own notifies signed with it are still believed."""
    app_config["WECHAT_PAY_PLATFORM_CERT_DIR"] = str(tmp_path / "platform-certs")
    app = request.getfixturevalue("app")
    world = build_world(app)
    first, second = buy(app, world), buy(app, world)
    start_v3_payment(app, world.buyer, first)
    start_v3_payment(app, world.buyer, second)
    v3.signer = "platform_cert"
    assert post_notify(app, PAY_NOTIFY, v3.pay(first)).status_code == 204  # the certificate is fetched and known
    headers, body = v3.pay(second)
    fake = request.getfixturevalue("fake_wechat")
    fake.outage_status = 500
    try:
        assert_refused(post_notify(app, PAY_NOTIFY, ({**headers, "Wechatpay-Serial": "AB" * 20}, body)))
    finally:
        fake.outage_status = None
    assert post_notify(app, PAY_NOTIFY, (headers, body)).status_code == 204
    assert order_row(app, second).status == OrderStatus.PAID
    assert_money_consistent(app)


def test_a_retry_refused_while_the_bill_exists_never_returns_the_money(app, v3, monkeypatch):
    """The first request's answer was lost (WeChat made the bill); the retry is refused outright, but a query shows
    the bill waiting for the member: the money must stay, and the cron fetches the package for 确认收款."""
    from dingqiao.wechat.pay_v3 import BillState, PayGatewayV3, TransferBill

    world = build_world(app)
    earn(app, v3, world)
    with app.app_context():
        withdrawal_id = request_withdrawal(db.session, world.parent, 500, RULES).id
    v3.transfer_err_code = "SYSTEM_ERROR"  # no usable answer: unknown
    with app.app_context(), pytest.raises(WithdrawalError, match="结果未知"):
        approve_withdrawal(db.session, pay_gateways(app), finance(world), withdrawal_id)
    no = withdrawal_row(app, withdrawal_id).withdrawal_no
    v3.transfer_err_code = ""
    status, _headers, answer = v3.handle(*_signed_bill_request(app, v3, withdrawal_id))  # the lost one arrived
    assert status == 200, answer
    real_create = PayGatewayV3.create_transfer_bill
    # WeChat refuses this retry outright (a changed permission, say) while the bill made before stands.
    monkeypatch.setattr(PayGatewayV3, "create_transfer_bill",
                        lambda self, **kw: TransferBill(BillState.NOT_PAID, kw["out_bill_no"], reason="无权限（NO_AUTH）",
                                                        error="NO_AUTH"))
    with app.app_context(), pytest.raises(WithdrawalError, match="尚未取得确认参数"):
        approve_withdrawal(db.session, pay_gateways(app), finance(world), withdrawal_id)
    withdrawal = withdrawal_row(app, withdrawal_id)
    assert withdrawal.status == WithdrawalStatus.APPROVED and withdrawal.transfer_package is None
    assert withdrawal.transfer_state == "WAIT_USER_CONFIRM"
    assert ledger(app, LedgerKind.WITHDRAWAL_RETURNED) == 0
    monkeypatch.setattr(PayGatewayV3, "create_transfer_bill", real_create)
    reconcile(app)  # the bill waits for the member: the same request again brings its package
    withdrawal = withdrawal_row(app, withdrawal_id)
    assert withdrawal.transfer_package == v3.bills[no]["package_info"]
    assert post_notify(app, TRANSFER_NOTIFY, v3.confirm_bill(no)).status_code == 204
    assert withdrawal_row(app, withdrawal_id).status == WithdrawalStatus.PAID
    assert_money_consistent(app)


def _signed_bill_request(app, v3, withdrawal_id: int):
    """The 发起转账 request our gateway sends for the withdrawal, as (method, path, headers, body) for the fake."""
    from wechatpayv3.utils import build_authorization, load_private_key

    withdrawal = withdrawal_row(app, withdrawal_id)
    with app.app_context():
        from dingqiao.models import User

        openid = db.session.get(User, withdrawal.user_id).openid
        settings = pay_gateways(app).v3.settings
    body = {"out_bill_no": withdrawal.withdrawal_no, "transfer_scene_id": "1005", "openid": openid,
            "transfer_amount": withdrawal.amount_fen - withdrawal.fee_fen, "transfer_remark": "顶俏收益提现",
            "user_recv_perception": "劳务报酬",
            "transfer_scene_report_infos": [{"info_type": "岗位类型", "info_content": "推广员"},
                                            {"info_type": "报酬说明", "info_content": "推广佣金"}],
            "appid": settings.app_id, "notify_url": settings.transfer_notify_url}
    text = json.dumps(body)
    authorization = build_authorization(BILLS, "POST", settings.mch_id, settings.mch_serial_no,
                                        load_private_key(settings.mch_private_key_pem), data=text)
    return "POST", BILLS, {"Authorization": authorization, "Content-Type": "application/json"}, text.encode()


def test_an_order_prepaid_through_v2_before_the_switch_is_paid_through_v2(app, fake_wechat, v3):
    """The pay sheet of an order prepaid under v2 is signed by v2 after the switch: ordering the same number again
    through v3 would carry another notify address, which WeChat refuses."""
    world = build_world(app)
    order_no = buy(app, world)
    app.config["WECHAT_PAY_API"] = "v2"
    first = start_v3_payment(app, world.buyer, order_no)  # the same pay fragment, v2's parameters
    assert first["signType"] == "MD5"
    app.config["WECHAT_PAY_API"] = "v3"
    again = start_v3_payment(app, world.buyer, order_no)
    assert again["signType"] == "MD5" and again["package"] == first["package"]
    assert v3.calls("/v3/pay/transactions/jsapi") == []
