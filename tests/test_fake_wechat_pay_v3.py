"""The WeChat Pay v3 fake, driven by the real ``wechatpayv3`` client over HTTP.

The point is that the fake is honest: if the library (which verifies every 2xx answer's signature and decrypts
notifies) accepts what it says, our adapter meets the same cryptography it will meet at WeChat. The fake runs
behind a tiny server of this module's own; RSA keys are made once for the module.
"""
import base64
import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core
from wechatpayv3.type import RequestType

from tests.fake_wechat_pay_v3 import FakeWeChatPayV3, rsa_oaep_encrypt, rsa_sign

APP_ID = "wxfake0000000001"
MCH_ID = "1900000109"
OPENID = "o-member-0001"
NOTIFY_URL = "https://shop.example/wechat/pay/notify"
BILL_NOTIFY_URL = "https://shop.example/wechat/transfer/notify"
COMMISSION = {"transfer_scene_id": "1005", "user_recv_perception": "劳务报酬",
              "transfer_scene_report_infos": [{"info_type": "岗位类型", "info_content": "推广员"},
                                              {"info_type": "报酬说明", "info_content": "3月推广佣金"}]}


@pytest.fixture(scope="module")
def server():
    fake = FakeWeChatPayV3(app_id=APP_ID, mch_id=MCH_ID)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, answer = fake.handle(method, self.path, dict(self.headers), body)
            headers = dict(headers)
            content_type = headers.pop("Content-Type", "application/json; charset=utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(answer)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(answer)

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def log_message(self, *_args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    yield SimpleNamespace(fake=fake, base_url=f"http://127.0.0.1:{httpd.server_address[1]}",
                          other_key_pem=other_key.private_bytes(serialization.Encoding.PEM,
                                                                serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()).decode())
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fake(server):
    server.fake.reset()
    return server.fake


def client(server, *, private_key=None):
    """Our side in 微信支付公钥 mode, pointed at the fake."""
    pay = WeChatPay(wechatpay_type=WeChatPayType.JSAPI, mchid=MCH_ID, appid=APP_ID,
                    private_key=private_key or server.fake.merchant_private_key_pem,
                    cert_serial_no=server.fake.merchant_serial_no, apiv3_key=server.fake.apiv3_key,
                    notify_url=NOTIFY_URL, public_key=server.fake.public_key_pem,
                    public_key_id=server.fake.public_key_id)
    pay._core._gate_way = server.base_url
    return pay


def platform_client(server, monkeypatch):
    """Our side in platform-certificate mode. The library downloads /v3/certificates inside its constructor, from
    the gateway it has just set to WeChat's: point that download at the fake first."""
    original = Core._init_certificates

    def init_against_fake(core):
        core._gate_way = server.base_url
        original(core)

    monkeypatch.setattr(Core, "_init_certificates", init_against_fake)
    return WeChatPay(wechatpay_type=WeChatPayType.JSAPI, mchid=MCH_ID, appid=APP_ID,
                     private_key=server.fake.merchant_private_key_pem, cert_serial_no=server.fake.merchant_serial_no,
                     apiv3_key=server.fake.apiv3_key, notify_url=NOTIFY_URL)


def order(pay, out_trade_no="DQ20260101000001", total=100, **extra):
    return pay.pay(description="顶俏-测试商品", out_trade_no=out_trade_no, amount={"total": total, "currency": "CNY"},
                   payer={"openid": OPENID}, pay_type=WeChatPayType.JSAPI, **extra)


def bill(pay, out_bill_no="WD20260101000001", amount=500, **extra):
    params = {**COMMISSION, "transfer_remark": "顶俏推广佣金", "notify_url": BILL_NOTIFY_URL, **extra}
    return pay.mch_transfer_bills(out_bill_no=out_bill_no, openid=OPENID, transfer_amount=amount, **params)


def parsed(answer):
    code, text = answer
    return code, (json.loads(text) if text else None)


def test_jsapi_order_query_and_close(server, fake):
    pay = client(server)
    code, first = parsed(order(pay, time_expire="2099-01-01T10:00:00+08:00"))
    assert code == 200 and first["prepay_id"].startswith("wx")
    # Asking again with the same parameters gives the prepay_id again; anything changed reuses a used number.
    assert parsed(order(pay, time_expire="2099-01-01T10:00:00+08:00")) == (200, first)
    assert parsed(order(pay, total=90, time_expire="2099-01-01T10:00:00+08:00"))[1]["code"] == "OUT_TRADE_NO_USED"
    assert order(pay, total=90, time_expire="2099-01-01T10:00:00+08:00")[0] == 403
    assert parsed(order(pay, time_expire="2099-01-01T11:00:00+08:00"))[0] == 403

    code, queried = parsed(pay.query(out_trade_no="DQ20260101000001"))
    assert code == 200
    assert queried["trade_state"] == "NOTPAY" and queried["amount"]["total"] == 100
    assert "transaction_id" not in queried and "payer" not in queried

    assert pay.close(out_trade_no="DQ20260101000001")[0] == 204
    assert parsed(pay.query(out_trade_no="DQ20260101000001"))[1]["trade_state"] == "CLOSED"
    assert parsed(order(pay, time_expire="2099-01-01T10:00:00+08:00")) == (
        400, {"code": "ORDER_CLOSED", "message": "订单已关闭"})
    assert pay.close(out_trade_no="NEVERSEEN001")[0] == 204
    assert parsed(pay.query(out_trade_no="NEVERSEEN001"))[0:2] == (
        404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
    with pytest.raises(ValueError):
        fake.pay("DQ20260101000001")

    sent = fake.calls("/v3/pay/transactions/jsapi")[0]
    assert sent["appid"] == APP_ID and sent["mchid"] == MCH_ID and sent["payer"] == {"openid": OPENID}
    assert ("GET", f"/v3/pay/transactions/out-trade-no/NEVERSEEN001?mchid={MCH_ID}", None) in fake.requests


def test_order_checks_like_wechat(server, fake):
    pay = client(server)
    assert parsed(order(pay, appid="wxsomeoneelse0001"))[1]["code"] == "APPID_MCHID_NOT_MATCH"
    assert parsed(order(pay, out_trade_no="AB1"))[1]["code"] == "PARAM_ERROR"
    assert parsed(order(pay, total=0))[0] == 400
    assert parsed(order(pay, time_expire="tomorrow"))[1]["code"] == "PARAM_ERROR"
    assert fake.orders == {}


def test_payment_notify_and_refunds(server, fake):
    pay = client(server)
    order(pay, total=100)
    headers, body = fake.pay("DQ20260101000001")
    notify = pay.callback(headers, body)
    assert notify["event_type"] == "TRANSACTION.SUCCESS"
    resource = notify["resource"]
    assert resource["trade_state"] == "SUCCESS" and resource["out_trade_no"] == "DQ20260101000001"
    assert resource["amount"] == {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"}
    assert resource["payer"] == {"openid": OPENID} and resource["transaction_id"].startswith("4200")
    assert fake.pay("DQ20260101000001", total=1)[1] != body  # a tampered amount, same signature rules
    assert pay.callback(*fake.pay("DQ20260101000001", total=1))["resource"]["amount"]["total"] == 1

    queried = parsed(pay.query(out_trade_no="DQ20260101000001"))[1]
    assert queried["trade_state"] == "SUCCESS" and queried["transaction_id"] == resource["transaction_id"]
    assert parsed(pay.close(out_trade_no="DQ20260101000001"))[1]["code"] == "ORDERPAID"
    assert parsed(order(pay, total=100))[1]["code"] == "ORDERPAID"
    assert fake.orders["DQ20260101000001"].trade_state == "SUCCESS"

    code, refund = parsed(pay.refund(out_refund_no="RF1", amount={"refund": 30, "total": 100, "currency": "CNY"},
                                     out_trade_no="DQ20260101000001", reason="缺货", notify_url=NOTIFY_URL))
    assert code == 200 and refund["status"] == "SUCCESS" and refund["channel"] == "ORIGINAL"
    assert refund["amount"]["refund"] == 30 and refund["amount"]["total"] == 100
    again = parsed(pay.refund(out_refund_no="RF1", amount={"refund": 30, "total": 100, "currency": "CNY"},
                              out_trade_no="DQ20260101000001"))[1]
    assert again["refund_id"] == refund["refund_id"]
    assert parsed(pay.query_refund(out_refund_no="RF1"))[1]["refund_id"] == refund["refund_id"]
    assert parsed(pay.query(out_trade_no="DQ20260101000001"))[1]["trade_state"] == "REFUND"
    too_much = pay.refund(out_refund_no="RF2", amount={"refund": 71, "total": 100, "currency": "CNY"},
                          out_trade_no="DQ20260101000001")
    assert parsed(too_much)[0:2] == (400, {"code": "INVALID_REQUEST", "message": "申请退款金额超过订单可退金额"})
    assert parsed(pay.query_refund(out_refund_no="RF404"))[1]["code"] == "RESOURCE_NOT_EXISTS"

    fake.refund_outcome = "PROCESSING"
    held = parsed(pay.refund(out_refund_no="RF3", amount={"refund": 70, "total": 100, "currency": "CNY"},
                             out_trade_no="DQ20260101000001"))[1]
    assert held["status"] == "PROCESSING" and "success_time" not in held
    finished = pay.callback(*fake.finish_refund("RF3"))
    assert finished["event_type"] == "REFUND.SUCCESS"
    assert finished["resource"]["refund_status"] == "SUCCESS" and finished["resource"]["out_refund_no"] == "RF3"
    assert pay.callback(*fake.refund_notification("RF3", status="ABNORMAL"))["event_type"] == "REFUND.ABNORMAL"


def test_refund_of_unpaid_order_is_unknown(server, fake):
    pay = client(server)
    order(pay)
    answer = pay.refund(out_refund_no="RF1", amount={"refund": 1, "total": 100, "currency": "CNY"},
                        out_trade_no="DQ20260101000001")
    assert parsed(answer)[0:2] == (404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"})


def test_transfer_bill_create_query_cancel_confirm(server, fake):
    pay = client(server)
    code, created = parsed(bill(pay))
    assert code == 200 and created["state"] == "WAIT_USER_CONFIRM" and created["package_info"]
    assert parsed(bill(pay)) == (200, created)  # a retry with the same parameters is the same bill
    assert parsed(bill(pay, amount=600))[1]["code"] == "INVALID_REQUEST"
    sent = fake.calls("/v3/fund-app/mch-transfer/transfer-bills")[0]
    assert sent["notify_url"] == BILL_NOTIFY_URL and sent["appid"] == APP_ID

    queried = parsed(pay.mch_transfer_bills_query(out_bill_no="WD20260101000001"))[1]
    assert queried["state"] == "WAIT_USER_CONFIRM" and queried["transfer_amount"] == 500
    assert queried["transfer_bill_no"] == created["transfer_bill_no"] and queried["mch_id"] == MCH_ID
    assert parsed(pay.mch_transfer_bills_cancel(out_bill_no="WD20260101000001"))[1]["state"] == "CANCELLED"
    assert parsed(pay.mch_transfer_bills_cancel(out_bill_no="WD20260101000001"))[1]["state"] == "CANCELLED"
    assert pay.callback(*fake.bill_notification("WD20260101000001"))["resource"]["state"] == "CANCELLED"

    bill(pay, out_bill_no="WD2")
    assert fake.cancel_bill_by_user("WD2") is None and fake.bills["WD2"]["state"] == "WAIT_USER_CONFIRM"
    notify = pay.callback(*fake.confirm_bill("WD2"))
    assert notify["event_type"] == "MCHTRANSFER.BILL.FINISHED"
    assert notify["resource"]["state"] == "SUCCESS" and notify["resource"]["out_bill_no"] == "WD2"
    assert parsed(pay.mch_transfer_bills_query(out_bill_no="WD2"))[1]["state"] == "SUCCESS"
    assert parsed(pay.mch_transfer_bills_cancel(out_bill_no="WD2"))[0] == 400
    assert "package_info" not in parsed(bill(pay, out_bill_no="WD2"))[1]

    bill(pay, out_bill_no="WD3")
    assert pay.callback(*fake.confirm_bill("WD3", fail_reason="NAME_NOT_CORRECT"))["resource"]["fail_reason"] == \
        "NAME_NOT_CORRECT"
    bill(pay, out_bill_no="WD4")
    expired = pay.callback(*fake.expire_bill("WD4"))["resource"]
    assert (expired["state"], expired["fail_reason"]) == ("FAIL", "OVERDUE_CLOSE")
    assert parsed(pay.mch_transfer_bills_query(out_bill_no="WD4"))[1]["fail_reason"] == "OVERDUE_CLOSE"

    fake.cancel_outcome = "CANCELING"
    bill(pay, out_bill_no="WD5")
    assert parsed(pay.mch_transfer_bills_cancel(out_bill_no="WD5"))[1]["state"] == "CANCELING"
    assert pay.callback(*fake.finish_cancel("WD5"))["resource"]["state"] == "CANCELLED"
    assert parsed(pay.mch_transfer_bills_query(out_bill_no="NOPE"))[0:2] == (
        404, {"code": "NOT_FOUND", "message": "记录不存在"})


def test_transfer_bill_checks_like_wechat(server, fake):
    pay = client(server)
    assert parsed(bill(pay, transfer_remark="佣" * 33))[1]["code"] == "PARAM_ERROR"
    assert parsed(bill(pay, amount=29))[1]["code"] == "PARAM_ERROR"
    assert parsed(bill(pay, transfer_scene_report_infos=COMMISSION["transfer_scene_report_infos"][:1]))[1] == {
        "code": "PARAM_ERROR", "message": "需传入转账场景报备信息,请检查"}
    long_info = [{"info_type": "岗位类型", "info_content": "推" * 33}, {"info_type": "报酬说明", "info_content": "x"}]
    assert parsed(bill(pay, transfer_scene_report_infos=long_info))[1]["code"] == "PARAM_ERROR"
    assert parsed(bill(pay, user_recv_perception="现金奖励"))[1] == {
        "code": "INVALID_REQUEST", "message": "暂不支持展示当前传入的用户收款感知"}
    assert parsed(bill(pay, transfer_scene_id="1001"))[1]["code"] == "INVALID_REQUEST"
    assert parsed(bill(pay, appid="wxsomeoneelse0001"))[1]["code"] == "INVALID_REQUEST"
    marketing = [{"info_type": "活动名称", "info_content": "新会员有礼"}, {"info_type": "奖励说明", "info_content": "首单奖励"}]
    assert parsed(bill(pay, out_bill_no="MK1", transfer_scene_id="1000", user_recv_perception="现金奖励",
                       transfer_scene_report_infos=marketing))[0] == 200

    fake.transfer_err_code = "NOT_ENOUGH"
    assert parsed(bill(pay)) == (403, {"code": "NOT_ENOUGH",
                                       "message": "商户运营账户资金不足，充值后可以原单号发起重试，请勿更换商户单号"})
    assert "WD20260101000001" not in fake.bills
    fake.transfer_err_code = ""
    assert parsed(bill(pay))[1]["state"] == "WAIT_USER_CONFIRM"  # topped up: the same number goes through


def test_user_name_is_encrypted_for_the_wechat_pay_public_key(server, fake):
    pay = client(server)
    # The library refuses itself to send 2000 元 or more without a name; WeChat refuses it too.
    params = {**COMMISSION, "appid": APP_ID, "out_bill_no": "BIG1", "openid": OPENID, "transfer_amount": 200_000,
              "transfer_remark": "顶俏推广佣金"}
    assert parsed(pay._core.request("/v3/fund-app/mch-transfer/transfer-bills", method=RequestType.POST,
                                    data=params))[1]["code"] == "PARAM_ERROR"
    assert parsed(bill(pay, out_bill_no="BIG1", amount=200_000, user_name="张三"))[0] == 200
    assert fake.bills["BIG1"]["user_name_plain"] == "张三"
    assert fake.calls("/v3/fund-app/mch-transfer/transfer-bills")[-1]["user_name"] != "张三"
    # OAEP ciphertexts differ each time: the retry is compared on the name itself.
    assert parsed(bill(pay, out_bill_no="BIG1", amount=200_000, user_name="张三"))[0] == 200
    assert parsed(bill(pay, out_bill_no="BIG1", amount=200_000, user_name="李四"))[1]["code"] == "INVALID_REQUEST"

    wrong_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    tampered = {**params, "out_bill_no": "BIG2", "user_name": rsa_oaep_encrypt(wrong_key, "张三")}
    answer = pay._core.request("/v3/fund-app/mch-transfer/transfer-bills", method=RequestType.POST, data=tampered)
    assert parsed(answer)[1]["code"] == "PARAM_ERROR" and "BIG2" not in fake.bills


def test_a_request_signed_by_another_key_or_too_late_is_refused(server, fake):
    code, error = parsed(order(client(server, private_key=server.other_key_pem)))
    assert code == 401 and error["code"] == "SIGN_ERROR"
    assert fake.orders == {} and len(fake.requests) == 1

    key = load_pem_private_key(fake.merchant_private_key_pem.encode(), password=None)
    path = f"/v3/pay/transactions/out-trade-no/X1?mchid={MCH_ID}"
    for stamp, serial in ((int(time.time()) - 301, fake.merchant_serial_no), (int(time.time()), "0" * 40)):
        nonce = secrets.token_hex(16)
        signature = rsa_sign(key, f"GET\n{path}\n{stamp}\n{nonce}\n\n")
        authorization = (f'WECHATPAY2-SHA256-RSA2048 mchid="{MCH_ID}",nonce_str="{nonce}",signature="{signature}",'
                         f'timestamp="{stamp}",serial_no="{serial}"')
        status, headers, body = fake.handle("GET", path, {"Authorization": authorization}, b"")
        assert status == 401 and json.loads(body)["code"] == "SIGN_ERROR"
        assert headers["Wechatpay-Serial"] == fake.public_key_id  # errors are signed too
    status, _headers, body = fake.handle("GET", path, {}, b"")
    assert status == 401


def test_unknown_path_is_not_found_and_signed(server, fake):
    code, error = parsed(client(server)._core.request("/v3/no/such/thing"))
    assert code == 404 and error["code"] == "NOT_FOUND"


def test_notifies_are_verified_and_decrypted_by_the_library(server, fake):
    pay = client(server)
    order(pay)
    headers, body = fake.pay("DQ20260101000001")
    assert pay.callback(headers, body)["resource"]["trade_state"] == "SUCCESS"
    assert fake.decrypt_notification(body)["out_trade_no"] == "DQ20260101000001"
    resource = fake.decrypt_notification(body)
    # WeChat's 签名探测: a notify signed by someone else must be refused.
    assert pay.callback(*fake.notification("TRANSACTION.SUCCESS", resource, forge=True)) is None
    assert pay.callback(*fake.notification("TRANSACTION.SUCCESS", resource, apiv3_key="k" * 32)) is None
    tampered = body.replace(b'"TRANSACTION.SUCCESS"', b'"TRANSACTION.SUCCESS" ')
    assert pay.callback(headers, tampered) is None
    stale_headers, stale_body = fake.notification("TRANSACTION.SUCCESS", resource, timestamp=1_600_000_000,
                                                  notify_id="EV-1")
    assert stale_headers["Wechatpay-Timestamp"] == "1600000000" and json.loads(stale_body)["id"] == "EV-1"
    assert json.loads(stale_body)["resource"]["associated_data"] == "transaction"


def test_an_answer_forged_by_an_impostor_is_refused_by_the_library(server, fake):
    pay = client(server)
    fake.answer_forged = True
    with pytest.raises(Exception, match="failed to verify the signature"):
        order(pay)


# wechatpayv3 2.0.4 itself reads a deprecated naive-datetime property when it encrypts in certificate mode.
@pytest.mark.filterwarnings("ignore:Properties that return a na:cryptography.utils.CryptographyDeprecationWarning")
def test_platform_certificate_mode(server, fake, monkeypatch):
    fake.signer = "platform_cert"
    pay = platform_client(server, monkeypatch)
    assert ("GET", "/v3/certificates", None) in fake.requests
    assert pay._core._certificates[0].serial_number == int(fake.platform_cert_serial, 16)
    assert parsed(order(pay))[0] == 200
    assert pay.callback(*fake.pay("DQ20260101000001"))["resource"]["trade_state"] == "SUCCESS"
    assert pay.callback(*fake.bill_notification(parsed(bill(pay))[1]["out_bill_no"], forge=True)) is None
    # Sensitive fields go to the platform certificate's key, named by its serial.
    assert parsed(bill(pay, out_bill_no="BIG1", amount=250_000, user_name="王五"))[0] == 200
    assert fake.bills["BIG1"]["user_name_plain"] == "王五"


def test_public_key_client_also_accepts_the_certificate_while_switching(server, fake):
    pay = client(server)
    order(pay)
    fake.signer = "platform_cert"  # a merchant moving to the public key still gets certificate-signed messages
    assert parsed(pay.query(out_trade_no="DQ20260101000001"))[1]["trade_state"] == "NOTPAY"
    assert pay.callback(*fake.pay("DQ20260101000001"))["resource"]["trade_state"] == "SUCCESS"
    headers, _ = fake.pay("DQ20260101000001")
    assert headers["Wechatpay-Serial"] == fake.platform_cert_serial
    assert fake.pay("DQ20260101000001")[0]["Wechatpay-Serial"] != fake.public_key_id
    assert fake.notification("X.Y", {}, signer="public_key")[0]["Wechatpay-Serial"] == fake.public_key_id


def test_concurrent_retries_get_one_order_and_one_bill(server, fake):
    pay = client(server)
    with ThreadPoolExecutor(max_workers=8) as pool:
        orders = list(pool.map(lambda _: parsed(order(pay)), range(8)))
        bills = list(pool.map(lambda _: parsed(bill(pay)), range(8)))
    assert len({answer["prepay_id"] for _code, answer in orders}) == 1 and len(fake.orders) == 1
    assert len({answer["transfer_bill_no"] for _code, answer in bills}) == 1 and len(fake.bills) == 1


def test_reset_forgets_everything_but_the_keys(server, fake):
    pay = client(server)
    order(pay)
    bill(pay)
    keys = (fake.public_key_id, fake.public_key_pem, fake.platform_cert_serial, fake.merchant_serial_no,
            fake.merchant_private_key_pem, fake.apiv3_key)
    fake.signer, fake.answer_forged, fake.refund_outcome = "platform_cert", True, "PROCESSING"
    fake.transfer_err_code, fake.cancel_outcome = "NO_AUTH", "CANCELING"
    fake.reset()
    assert (fake.orders, fake.refunds, fake.bills, fake.requests) == ({}, {}, {}, [])
    assert (fake.signer, fake.answer_forged, fake.refund_outcome, fake.transfer_err_code, fake.cancel_outcome) == (
        "public_key", False, "SUCCESS", "", "CANCELLED")
    assert keys == (fake.public_key_id, fake.public_key_pem, fake.platform_cert_serial, fake.merchant_serial_no,
                    fake.merchant_private_key_pem, fake.apiv3_key)
    assert fake.public_key_id.startswith("PUB_KEY_ID_") and len(fake.public_key_id) == 43
    assert len(fake.merchant_serial_no) == 40 and len(fake.platform_cert_serial) == 40 and len(fake.apiv3_key) == 32
    assert base64.b64decode(fake.public_key_pem.split("-----")[2])  # a real PEM body
