"""The WeChat Pay v2 adapter against the fake WeChat Pay over real HTTP: the fake checks every request's
signature with the merchant key, and we check every answer and notify."""
import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

from dingqiao.wechat import WeChatError, WeChatSettings
from dingqiao.wechat.pay import (
    DEMO_SETTINGS,
    InvalidNotification,
    PayError,
    PayGateway,
    RefundResult,
    RefundState,
    TransferState,
    notify_reply,
)
from tests.fake_wechat import from_xml, pay_sign, to_xml


@pytest.fixture
def fake(fake_wechat):
    fake_wechat.reset()
    yield fake_wechat
    fake_wechat.reset()  # the server lives for the whole run: leave no switch on for the next test


@pytest.fixture
def settings(fake) -> WeChatSettings:
    return WeChatSettings(app_id=fake.app_id, app_secret=fake.app_secret, mch_id=fake.mch_id,
                          mch_key=fake.mch_key, base_url=fake.base_url, timeout_seconds=3)


@pytest.fixture
def gateway(settings) -> PayGateway:
    return PayGateway(settings)


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # naive UTC, as the services keep times


def new_trade_no() -> str:
    return "DQ" + uuid.uuid4().hex[:20].upper()


def place_order(gateway, out_trade_no: str, total_fee: int = 1990, openid: str = "o-alice") -> str:
    return gateway.create_jsapi_order(
        out_trade_no=out_trade_no, body="顶俏-鲜花饼礼盒", total_fee=total_fee, openid=openid,
        notify_url="http://localhost/pay/notify", client_ip="203.0.113.7",
        expires_at=utc_now() + timedelta(minutes=15),
    )


# --- the signature itself --------------------------------------------------------------------------------

OFFICIAL_PARAMS = {"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "device_info": "1000", "body": "test",
                   "nonce_str": "ibuaiVcKdpRxkhJA"}
OFFICIAL_KEY = "192006250b4c09247ec02edce69f6a2d"


def test_wechatpy_signs_the_official_v2_vectors():
    assert calculate_signature(OFFICIAL_PARAMS, OFFICIAL_KEY) == "9A0A8659F005D6984697E2CA0A9CF3B7"
    assert calculate_signature_hmac(OFFICIAL_PARAMS, OFFICIAL_KEY) == (
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6")


def test_the_fake_signs_the_official_vector_too():
    assert pay_sign(OFFICIAL_PARAMS, OFFICIAL_KEY) == "9A0A8659F005D6984697E2CA0A9CF3B7"


# --- ordering and paying -------------------------------------------------------------------------------

def test_create_order_returns_a_prepay_id_and_sends_what_wechat_needs(gateway, fake):
    trade_no = new_trade_no()
    prepay_id = place_order(gateway, trade_no, total_fee=1990)
    assert prepay_id.startswith("wx")
    sent = fake.calls("/mch/pay/unifiedorder")[-1]
    assert sent["sign"] == pay_sign(sent, fake.mch_key)  # the fake accepted it, and so do we
    assert (sent["appid"], sent["mch_id"], sent["trade_type"]) == (fake.app_id, fake.mch_id, "JSAPI")
    assert (sent["openid"], sent["total_fee"], sent["spbill_create_ip"]) == ("o-alice", "1990", "203.0.113.7")
    assert sent.get("sign_type", "MD5") == "MD5"
    order = fake.orders[trade_no]
    assert (order.total_fee, order.notify_url, order.body) == (1990, "http://localhost/pay/notify", "顶俏-鲜花饼礼盒")


def test_time_expire_is_china_time(gateway, fake):
    expires_at = datetime(2099, 1, 1, 0, 30)  # naive UTC
    gateway.create_jsapi_order(out_trade_no=new_trade_no(), body="x", total_fee=1, openid="o", notify_url="http://h/n",
                               client_ip="127.0.0.1", expires_at=expires_at)
    assert fake.calls("/mch/pay/unifiedorder")[-1]["time_expire"] == "20990101083000"


def test_an_already_expired_order_is_refused_by_wechat(gateway):
    with pytest.raises(PayError) as refused:
        gateway.create_jsapi_order(out_trade_no=new_trade_no(), body="x", total_fee=1, openid="o",
                                   notify_url="http://h/n", client_ip="127.0.0.1",
                                   expires_at=utc_now() - timedelta(minutes=1))
    assert refused.value.err_code == "PARAM_ERROR"


def test_a_long_body_is_cut_to_what_wechat_accepts(gateway, fake):
    trade_no = new_trade_no()
    gateway.create_jsapi_order(out_trade_no=trade_no, body="鲜" * 100, total_fee=1, openid="o",
                               notify_url="http://h/n", client_ip="127.0.0.1",
                               expires_at=utc_now() + timedelta(minutes=15))
    assert fake.orders[trade_no].body == "鲜" * 42  # 126 bytes of UTF-8


def test_asking_again_for_the_same_order_gives_the_same_prepay_id_but_not_for_another_amount(gateway):
    trade_no = new_trade_no()
    first = place_order(gateway, trade_no, total_fee=500)
    assert place_order(gateway, trade_no, total_fee=500) == first
    with pytest.raises(PayError) as refused:
        place_order(gateway, trade_no, total_fee=501)
    assert refused.value.err_code == "INVALID_REQUEST"
    assert "微信支付" in refused.value.message


def test_jsapi_params_are_signed_with_the_merchant_key(gateway, fake, settings):
    params = gateway.jsapi_params("wx201410272009395522657a690389285100")
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["appId"] == settings.app_id
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["signType"] == "MD5"
    assert params["timeStamp"].isdigit()
    signed = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "paySign")
    assert params["paySign"] == hashlib.md5(f"{signed}&key={fake.mch_key}".encode()).hexdigest().upper()


def test_the_notify_of_a_payment_is_read_and_trusted(gateway, fake):
    trade_no = new_trade_no()
    place_order(gateway, trade_no, total_fee=1990, openid="o-bob")
    notification = gateway.parse_notification(fake.pay(trade_no))
    assert notification.out_trade_no == trade_no
    assert notification.transaction_id == fake.orders[trade_no].transaction_id != ""
    assert notification.total_fee == 1990
    assert (notification.mch_id, notification.appid, notification.openid) == (fake.mch_id, fake.app_id, "o-bob")
    assert notification.result_ok is True
    assert notification.raw["trade_type"] == "JSAPI" and notification.raw["total_fee"] == 1990


def test_a_notify_signed_with_another_key_is_refused(gateway, fake):
    trade_no = new_trade_no()
    place_order(gateway, trade_no)
    with pytest.raises(InvalidNotification) as refused:
        gateway.parse_notification(fake.notification_for(trade_no, key="0" * 32))
    assert refused.value.reason == "bad_signature"


def test_a_notify_with_an_amount_changed_after_signing_is_refused(gateway, fake):
    trade_no = new_trade_no()
    place_order(gateway, trade_no, total_fee=1990)
    tampered = fake.pay(trade_no).replace(b"<total_fee>1990</total_fee>", b"<total_fee>1</total_fee>")
    assert b"<total_fee>1</total_fee>" in tampered
    with pytest.raises(InvalidNotification) as refused:
        gateway.parse_notification(tampered)
    assert refused.value.reason == "bad_signature"


def test_a_properly_signed_notify_reports_its_own_amount_for_the_caller_to_compare(gateway, fake):
    trade_no = new_trade_no()
    place_order(gateway, trade_no, total_fee=1990)
    assert gateway.parse_notification(fake.notification_for(trade_no, total_fee=1)).total_fee == 1


@pytest.mark.parametrize("body", [
    b"",
    b"not xml at all",
    b"<xml><out_trade_no>1",
    b"<xml></xml>",
    b"<foo><appid>wx</appid></foo>",
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY boom "boom">]><xml><appid>&boom;</appid></xml>',
    b"<!DOCTYPE xml><xml><appid>wx</appid></xml>",
    b"<xml><appid>wx</appid><mch_id>1</mch_id></xml>",
])
def test_unreadable_notifies_are_malformed(gateway, body):
    with pytest.raises(InvalidNotification) as refused:
        gateway.parse_notification(body)
    assert refused.value.reason == ("dtd" if b"<!DOCTYPE" in body else "malformed")
    assert isinstance(refused.value, WeChatError)


def test_a_signed_notify_with_a_fractional_amount_is_malformed(gateway, fake):
    fields = from_xml(gateway.signed_notification(out_trade_no="T1", transaction_id="42", total_fee=1, openid="o"))
    fields |= {"total_fee": "1.5", "cash_fee": "1.5"}
    fields["sign"] = pay_sign(fields, fake.mch_key)
    with pytest.raises(InvalidNotification) as refused:
        gateway.parse_notification(to_xml(fields))
    assert refused.value.reason == "malformed"


def test_a_signed_notify_missing_the_openid_is_malformed(gateway, fake):
    fields = from_xml(gateway.signed_notification(out_trade_no="T1", transaction_id="42", total_fee=1, openid="o"))
    del fields["openid"]
    fields["sign"] = pay_sign(fields, fake.mch_key)
    with pytest.raises(InvalidNotification) as refused:
        gateway.parse_notification(to_xml(fields))
    assert refused.value.reason == "malformed"


def test_signed_notification_verifies_only_with_the_same_key(settings):
    body = PayGateway(settings).signed_notification(out_trade_no="DQ1", transaction_id="4200000001", total_fee=880,
                                                    openid="o-carol")
    same_key = PayGateway(settings).parse_notification(body)
    assert (same_key.out_trade_no, same_key.transaction_id, same_key.total_fee, same_key.openid) == (
        "DQ1", "4200000001", 880, "o-carol")
    assert (same_key.mch_id, same_key.appid, same_key.result_ok) == (settings.mch_id, settings.app_id, True)
    assert PayGateway(settings).settings == settings
    other = WeChatSettings(**{**settings.__dict__, "mch_key": "f" * 32})
    with pytest.raises(InvalidNotification) as refused:
        PayGateway(other).parse_notification(body)
    assert refused.value.reason == "bad_signature"


def test_the_fake_accepts_the_notify_format_the_gateway_writes(settings, fake):
    body = PayGateway(settings).signed_notification(out_trade_no="DQ1", transaction_id="42", total_fee=1, openid="o")
    fields = from_xml(body)
    assert fields["sign"] == pay_sign(fields, fake.mch_key)
    assert fields["return_code"] == fields["result_code"] == "SUCCESS"


def test_demo_settings_sign_and_verify_locally():
    assert len(DEMO_SETTINGS.mch_key) == 32 and DEMO_SETTINGS.base_url == ""
    demo = PayGateway(DEMO_SETTINGS)
    body = demo.signed_notification(out_trade_no="DEMO1", transaction_id="4200DEMO", total_fee=100, openid="o-demo")
    notification = demo.parse_notification(body)
    assert (notification.appid, notification.mch_id) == ("wxdemo000000000000", "1900000109")


# --- query, close, refund ------------------------------------------------------------------------------

def test_query_follows_the_order_from_unpaid_to_paid_to_refunded(gateway, fake):
    trade_no = new_trade_no()
    place_order(gateway, trade_no, total_fee=1990)
    unpaid = gateway.query_order(trade_no)
    assert (unpaid.trade_state, unpaid.out_trade_no, unpaid.transaction_id) == ("NOTPAY", trade_no, "")
    assert (unpaid.mch_id, unpaid.appid) == (fake.mch_id, fake.app_id)

    fake.pay(trade_no)
    paid = gateway.query_order(trade_no)
    assert (paid.trade_state, paid.total_fee) == ("SUCCESS", 1990)
    assert paid.transaction_id == fake.orders[trade_no].transaction_id

    refund_id = gateway.refund(out_trade_no=trade_no, out_refund_no="R" + trade_no, total_fee=1990, refund_fee=1990)
    assert refund_id
    assert gateway.query_order(trade_no).trade_state == "REFUND"


def test_query_of_an_order_wechat_never_saw(gateway):
    with pytest.raises(PayError) as refused:
        gateway.query_order(new_trade_no())
    assert refused.value.err_code == "ORDERNOTEXIST"
    assert "查不到" in refused.value.message


def test_closing_an_unpaid_order_twice_is_fine_and_it_can_no_longer_be_ordered(gateway):
    trade_no = new_trade_no()
    place_order(gateway, trade_no)
    gateway.close_order(trade_no)
    gateway.close_order(trade_no)
    assert gateway.query_order(trade_no).trade_state == "CLOSED"
    with pytest.raises(PayError) as refused:
        place_order(gateway, trade_no)
    assert refused.value.err_code == "ORDERCLOSED"


def test_closing_a_paid_order_says_it_was_paid(gateway, fake):
    trade_no = new_trade_no()
    place_order(gateway, trade_no)
    fake.pay(trade_no)
    with pytest.raises(PayError) as refused:
        gateway.close_order(trade_no)
    assert refused.value.err_code == "ORDERPAID"


def test_refund_is_idempotent_by_refund_number_and_bounded_by_the_amount(gateway, fake):
    trade_no = new_trade_no()
    place_order(gateway, trade_no, total_fee=1000)
    with pytest.raises(PayError):  # nothing paid yet
        gateway.refund(out_trade_no=trade_no, out_refund_no="R1" + trade_no, total_fee=1000, refund_fee=100)
    fake.pay(trade_no)
    first = gateway.refund(out_trade_no=trade_no, out_refund_no="R1" + trade_no, total_fee=1000, refund_fee=600)
    again = gateway.refund(out_trade_no=trade_no, out_refund_no="R1" + trade_no, total_fee=1000, refund_fee=600)
    assert first == again
    assert len(fake.orders[trade_no].refunds) == 1
    with pytest.raises(PayError) as refused:
        gateway.refund(out_trade_no=trade_no, out_refund_no="R2" + trade_no, total_fee=1000, refund_fee=401)
    assert refused.value.err_code == "INVALID_REQUEST"
    gateway.refund(out_trade_no=trade_no, out_refund_no="R2" + trade_no, total_fee=1000, refund_fee=400)
    sent = fake.calls("/mch/secapi/pay/refund")[-1]
    assert (sent["out_refund_no"], sent["refund_fee"], sent["total_fee"]) == ("R2" + trade_no, "400", "1000")


# --- failures ------------------------------------------------------------------------------------------

def test_an_outage_is_a_chinese_message(gateway, fake):
    fake.outage_status = 502
    for call in (lambda: place_order(gateway, new_trade_no()), lambda: gateway.query_order("X"),
                 lambda: gateway.close_order("X"),
                 lambda: gateway.refund(out_trade_no="X", out_refund_no="R", total_fee=1, refund_fee=1)):
        with pytest.raises(WeChatError) as failed:
            call()
        assert failed.value.message == "暂时无法连接微信支付，请稍后再试。"
    assert len(fake.calls("/mch/pay/orderquery")) == 1


def test_nobody_listening_is_a_chinese_message(settings):
    unreachable = PayGateway(WeChatSettings(**{**settings.__dict__, "base_url": "http://127.0.0.1:9"}))
    with pytest.raises(WeChatError) as failed:
        unreachable.query_order("X")
    assert "微信支付" in failed.value.message


def test_a_wrong_merchant_key_is_refused_by_wechat(settings, fake):
    wrong = PayGateway(WeChatSettings(**{**settings.__dict__, "mch_key": "e" * 32}))
    with pytest.raises(PayError) as refused:
        place_order(wrong, new_trade_no())
    assert refused.value.message == "微信支付暂时不可用，请稍后再试。"
    assert "签名错误" in str(refused.value)
    assert fake.orders == {}


def test_an_answer_not_signed_with_the_merchant_key_is_not_believed(gateway, fake):
    """A forged "SUCCESS" from something between us and WeChat must not mark an order paid."""
    trade_no = new_trade_no()
    place_order(gateway, trade_no)
    fake.pay(trade_no)
    fake.answer_key = "d" * 32
    with pytest.raises(PayError) as refused:
        gateway.query_order(trade_no)
    assert "无法验证" in refused.value.message


def test_notify_replies():
    assert notify_reply(True) == (
        "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>")
    assert notify_reply(False, "金额不符") == (
        "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[金额不符]]></return_msg></xml>")


# --- transfers and refund results: outcomes, not WeChat's codes ---------------------------------------------

def test_transfer_answers_become_paid_not_paid_or_unknown(settings, fake):
    gateway = PayGateway(WeChatSettings(**{**settings.__dict__, "server_ip": "198.51.100.10"}))
    number = "WD" + uuid.uuid4().hex[:20]
    paid = gateway.transfer(partner_trade_no=number, openid="o-bob", amount=100, desc="提现")
    assert (paid.state, paid.payment_no) == (TransferState.PAID, fake.transfers[number]["payment_no"])
    assert gateway.transfer(partner_trade_no=number, openid="o-bob", amount=100, desc="提现") == paid  # once
    assert fake.calls("/mch/mmpaymkttransfers/promotion/transfers")[0]["spbill_create_ip"] == "198.51.100.10"
    changed = gateway.transfer(partner_trade_no=number, openid="o-bob", amount=101, desc="提现")
    assert changed.state == TransferState.UNKNOWN and "FATAL_ERROR" in changed.reason  # the first one paid
    for err_code, state in (("NOTENOUGH", TransferState.NOT_PAID), ("SYSTEMERROR", TransferState.UNKNOWN)):
        fake.transfer_err_code = err_code
        answer = gateway.transfer(partner_trade_no="WD" + uuid.uuid4().hex[:20], openid="o-bob", amount=100, desc="x")
        assert answer.state == state and err_code in answer.reason
    fake.transfer_err_code, fake.outage_status = "", 502
    assert gateway.transfer(partner_trade_no="WDX", openid="o-bob", amount=100, desc="x").state == TransferState.UNKNOWN


def test_the_transfer_query_is_final_only_for_success_and_failure(gateway, fake):
    assert gateway.query_transfer("WD-never-sent").state == TransferState.UNKNOWN  # NOT_FOUND: retry, same number
    for status, state in (("PROCESSING", TransferState.UNKNOWN), ("FAILED", TransferState.NOT_PAID),
                          ("SUCCESS", TransferState.PAID)):
        fake.add_transfer("WD-" + status, amount=100, openid="o-bob", status=status)
        assert gateway.query_transfer("WD-" + status).state == state
    assert gateway.query_transfer("WD-SUCCESS").payment_no == fake.transfers["WD-SUCCESS"]["payment_no"]
    fake.outage_status = 502
    assert gateway.query_transfer("WD-SUCCESS").state == TransferState.UNKNOWN


def test_a_refund_is_accepted_then_its_result_comes_by_query_and_by_notify(settings, fake):
    gateway = PayGateway(WeChatSettings(**{**settings.__dict__, "refund_notify_url": "https://shop/refund-notify"}))
    trade_no = new_trade_no()
    place_order(gateway, trade_no, total_fee=1000)
    fake.pay(trade_no)
    fake.refund_outcome = "PROCESSING"
    refund_id = gateway.refund(out_trade_no=trade_no, out_refund_no="R" + trade_no, total_fee=1000, refund_fee=1000)
    assert fake.calls("/mch/secapi/pay/refund")[-1]["notify_url"] == "https://shop/refund-notify"
    assert gateway.query_refund("R" + trade_no) == RefundResult("R" + trade_no, RefundState.PROCESSING, 1000, refund_id)
    notify = gateway.parse_refund_notification(fake.finish_refund("R" + trade_no, "REFUNDCLOSE"))
    assert (notify.state, notify.refund_fee, notify.refund_id) == (RefundState.FAILED, 1000, refund_id)
    assert "关闭" in notify.reason and gateway.query_refund("R" + trade_no).state == RefundState.FAILED
    with pytest.raises(PayError) as unknown:
        gateway.query_refund("R-never-sent")
    assert unknown.value.err_code == "REFUNDNOTEXIST"


@pytest.mark.parametrize("body", [b"", b"<xml><return_code>FAIL</return_code></xml>",
                                  b'<!DOCTYPE x [<!ENTITY e "y">]><xml>&e;</xml>',
                                  b"<xml><return_code>SUCCESS</return_code><appid>a</appid><mch_id>m</mch_id>"
                                  b"<req_info>AAAA</req_info></xml>"])
def test_a_refund_notify_that_does_not_decrypt_with_our_key_is_refused(gateway, body):
    with pytest.raises(InvalidNotification):
        gateway.parse_refund_notification(body)
