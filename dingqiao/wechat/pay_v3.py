"""WeChat Pay API v3 (JSON, RSA signatures, AES-256-GCM notifies) and 商家转账 through the ``wechatpayv3`` library.

The same outcomes as the v2 gateway in ``pay.py`` (``PayNotification``, ``PayQueryResult``, ``RefundResult``,
``TransferResult``, ``PayError``/``InvalidNotification``), so services never see which API took the money.

What the library does: signs every request with the merchant's private key, verifies every 2xx answer and every
notify with WeChat Pay's public key (微信支付公钥, ``PUB_KEY_ID_…``) or a platform certificate (older merchants;
fetched from ``/v3/certificates`` into a folder), decrypts notify resources with the APIv3 key. What it leaves to
us and we do here: the notify's timestamp window and signature type, refusing serial numbers we do not know
before the library goes fetching certificates for them, reading WeChat's fields into our outcomes, and deciding
which answers are certain.

This module holds the gateway and its calls (pay, query and close an order, refund); 商家转账 is in
``pay_v3_transfers``, notifies (and demo mode's signing) in ``pay_v3_notifies``. Every name of the three is
importable from here.
"""
import json
import secrets
import threading
import time
from datetime import datetime

import requests
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core

from . import WeChatSettings
from .pay_outcomes import (
    _UNREACHABLE,
    BODY_MAX_BYTES,
    PayError,
    PayQueryResult,
    RefundResult,
    _as_china_time,
    _clip_utf8,
)
from .pay_v3_notifies import (  # noqa: F401 - re-exported
    CERTIFICATE_REFRESH_SECONDS,
    NOTIFY_MAX_SKEW_SECONDS,
    SIGNATURE_TYPE,
    DemoSigner,
    NotifiesV3,
    _canonical_headers,
    _refund_result_v3,
    notify_reply_v3,
    sign_notification,
)
from .pay_v3_transfers import (  # noqa: F401 - re-exported
    _BILL_FAIL_REASONS,
    _BILL_IN_PROGRESS,
    _BILL_NOT_MADE,
    _BILL_RETRY_REASONS,
    REAL_NAME_FROM_FEN,
    REPORT_CONTENT_MAX,
    TRANSFER_REMARK_MAX,
    TRANSFER_SCENES,
    BillState,
    TransferBill,
    TransferBillsV3,
    awaits_member,
    transfer_report,
)

_MESSAGES = {
    "ORDERPAID": "该订单已支付。",
    "ORDER_CLOSED": "该订单已关闭，请重新下单。",
    "ORDER_NOT_EXIST": "微信支付中查不到这笔订单。",
    "NOT_ENOUGH": "商户账户余额不足。",
    "SYSTEM_ERROR": "微信支付系统繁忙，请稍后再试。",
    "FREQUENCY_LIMITED": "微信支付请求过于频繁，请稍后再试。",
}
# 申请退款 answers that certainly mean nothing was refunded. Anything else (no answer, SYSTEM_ERROR, 429, 5xx)
# may hide a refund, to be retried with the same out_refund_no.
_REFUND_NOT_DONE = frozenset({"PARAM_ERROR", "INVALID_REQUEST", "NOT_ENOUGH", "USER_ACCOUNT_ABNORMAL",
                              "MCH_NOT_EXISTS", "SIGN_ERROR", "NO_AUTH", "RESOURCE_NOT_EXISTS"})

WECHAT_PAY_HOST = "https://api.mch.weixin.qq.com"


class _Core(Core):
    """The library's core with its host fixed from the start: ``Core.__init__`` sets WeChat's host and, in
    platform-certificate mode, fetches the certificates from it at once — from the fake WeChat in tests."""

    def __init__(self, host: str, **kwargs):
        self._host = host
        super().__init__(**kwargs)

    @property
    def _gate_way(self) -> str:
        return self._host

    @_gate_way.setter
    def _gate_way(self, _value: str) -> None:
        pass  # Core.__init__ assigns WeChat's host; ours stays


def _client(settings: WeChatSettings) -> WeChatPay:
    """``WeChatPay`` for one merchant (its ``__init__`` builds a Core we could not point elsewhere)."""
    client = WeChatPay.__new__(WeChatPay)
    client._type = WeChatPayType.JSAPI
    client._mchid = settings.mch_id
    client._appid = settings.app_id
    client._notify_url = settings.pay_notify_url or None
    client._partner_mode = False
    public_key = settings.pay_public_key_pem or None
    client._core = _Core(settings.base_url or WECHAT_PAY_HOST, mchid=settings.mch_id,
                         cert_serial_no=settings.mch_serial_no, private_key=settings.mch_private_key_pem,
                         apiv3_key=settings.apiv3_key, cert_dir=settings.platform_cert_dir or None,
                         timeout=settings.timeout_seconds, public_key=public_key,
                         public_key_id=settings.pay_public_key_id if public_key else None)
    return client


def _answer(code_and_text) -> tuple[int, dict]:
    code, text = code_and_text
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = {"raw": text[:500]}
    return code, body if isinstance(body, dict) else {"raw": body}



class PayGatewayV3(NotifiesV3, TransferBillsV3):
    """One merchant on API v3. Build it once per process (``wechat.pay_gateways``): in platform-certificate mode the
    library fetches the certificates when it is built."""

    api = "v3"

    def __init__(self, settings: WeChatSettings, *, demo_signer: DemoSigner | None = None):
        self.settings = settings
        self.demo_signer = demo_signer
        self._pay = _client(settings)
        self._refresh_lock = threading.Lock()
        self._last_refresh = 0.0

    def for_api(self, api: str | None, *, strict: bool = False) -> "PayGatewayV3 | None":
        """A lone gateway serves every api, or with ``strict`` only its own (see ``wechat.PayGateways``)."""
        return self if not strict or api in (None, self.api) else None

    # --- calls ---------------------------------------------------------------------------------------
    def _call(self, request, *, ok=(200,), definite: frozenset[str] = frozenset(),
              tolerated: tuple[str, ...] = ()) -> dict:
        """Run one library call; WeChat's verified answer, or PayError. A 2xx answer the library could not verify
        is an error like no answer at all (a proxy or an impostor between us and WeChat)."""
        try:
            code, answer = _answer(request())
        except requests.RequestException as exc:
            raise PayError(_UNREACHABLE, detail=repr(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - the library raises bare Exception (signature, key, certificate)
            raise PayError("微信支付的应答无法验证，请稍后再试。", detail=repr(exc)) from exc
        if code in ok:
            return answer
        err_code = str(answer.get("code") or "")
        if err_code in tolerated:
            return {}
        if code == 429 or code >= 500 or not err_code:
            raise PayError(_MESSAGES.get(err_code, _UNREACHABLE), err_code=err_code,
                           detail=f"HTTP {code}: {answer!r:.500}")
        return self._refusal(code, err_code, answer, definite)

    @staticmethod
    def _refusal(code: int, err_code: str, answer: dict, definite: frozenset[str]):
        message = _MESSAGES.get(err_code, "微信支付未能完成这次请求，请稍后再试。")
        raise PayError(message, err_code=err_code, detail=f"HTTP {code}: {answer!r:.500}",
                       definite=err_code in definite)

    def create_jsapi_order(self, *, out_trade_no: str, body: str, total_fee: int, openid: str, notify_url: str,
                           client_ip: str, expires_at: datetime) -> str:
        """JSAPI下单 (/v3/pay/transactions/jsapi); returns the prepay_id. ``notify_url`` is ignored: v3 notifies
        go to the gateway's own v3 address. ``client_ip`` is not part of v3's request."""
        answer = self._call(lambda: self._pay.pay(
            description=_clip_utf8(body, BODY_MAX_BYTES),
            out_trade_no=out_trade_no,
            amount={"total": total_fee, "currency": "CNY"},
            payer={"openid": openid},
            time_expire=_as_china_time(expires_at).isoformat(timespec="seconds"),
            notify_url=self.settings.pay_notify_url or notify_url,
            pay_type=WeChatPayType.JSAPI,
        ))
        if not isinstance(answer.get("prepay_id"), str) or not answer["prepay_id"]:
            raise PayError(_UNREACHABLE, detail=f"no prepay_id in {answer!r:.500}")
        return answer["prepay_id"]

    def jsapi_params(self, prepay_id: str) -> dict:
        """The object for ``WeixinJSBridge.invoke('getBrandWCPayRequest', …)``: RSA-signed with the merchant key."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        return {"appId": self.settings.app_id, "timeStamp": timestamp, "nonceStr": nonce, "package": package,
                "signType": "RSA", "paySign": self._pay.sign([self.settings.app_id, timestamp, nonce, package])}

    def query_order(self, out_trade_no: str) -> PayQueryResult:
        """查询订单. An order WeChat never saw raises PayError with err_code ORDERNOTEXIST, as v2 does."""
        try:
            answer = self._call(lambda: self._pay.query(out_trade_no=out_trade_no))
        except PayError as exc:
            if exc.err_code == "ORDER_NOT_EXIST":
                raise PayError(exc.message, err_code="ORDERNOTEXIST", detail=str(exc)) from exc
            raise
        try:
            amount = answer.get("amount") or {}
            total = amount.get("total")
            if total is not None and not isinstance(total, int):
                raise ValueError("amount.total is not an integer")
            return PayQueryResult(
                trade_state=answer["trade_state"],
                out_trade_no=answer.get("out_trade_no") or out_trade_no,
                transaction_id=answer.get("transaction_id") or "",
                total_fee=total if answer.get("transaction_id") else None,
                mch_id=answer["mchid"],
                appid=answer["appid"],
            )
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            raise PayError(_UNREACHABLE, detail=f"unreadable query answer {answer!r:.500}") from exc

    def close_order(self, out_trade_no: str) -> None:
        """关闭订单. v3 answers 204 whatever the order (even a paid or unknown one), so the order is asked about
        afterwards: paid raises PayError ORDERPAID, which callers treat as "the money arrived", as with v2."""
        self._call(lambda: self._pay.close(out_trade_no), ok=(200, 204), tolerated=("ORDER_CLOSED",))
        try:
            state = self.query_order(out_trade_no).trade_state
        except PayError as exc:
            if exc.err_code == "ORDERNOTEXIST":
                return
            raise
        if state in ("SUCCESS", "REFUND"):
            raise PayError(_MESSAGES["ORDERPAID"], err_code="ORDERPAID")

    def refund(self, *, out_trade_no: str, out_refund_no: str, total_fee: int, refund_fee: int) -> str:
        """申请退款 (/v3/refund/domestic/refunds); returns WeChat's refund_id once accepted — the result comes by the
        v3 refund notify or ``query_refund``. A PayError marked ``definite`` means nothing was refunded."""
        answer = self._call(lambda: self._pay.refund(
            out_refund_no=out_refund_no, out_trade_no=out_trade_no,
            amount={"refund": refund_fee, "total": total_fee, "currency": "CNY"},
            notify_url=self.settings.refund_notify_url or None,
        ), definite=_REFUND_NOT_DONE)
        if not isinstance(answer.get("refund_id"), str) or not answer["refund_id"]:
            raise PayError(_UNREACHABLE, detail=f"no refund_id in {answer!r:.500}")
        return answer["refund_id"]

    def query_refund(self, out_refund_no: str) -> RefundResult:
        """查询单笔退款. A refund WeChat does not know raises PayError (err_code REFUNDNOTEXIST, as with v2)."""
        try:
            answer = self._call(lambda: self._pay.query_refund(out_refund_no))
        except PayError as exc:
            if exc.err_code == "RESOURCE_NOT_EXISTS":
                raise PayError(exc.message, err_code="REFUNDNOTEXIST", detail=str(exc)) from exc
            raise
        try:
            return _refund_result_v3(answer, out_refund_no)
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            raise PayError(_UNREACHABLE, detail=f"unreadable refund query answer {answer!r:.500}") from exc
