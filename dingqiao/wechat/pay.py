"""WeChat Pay API v2 (JSAPI: paying inside WeChat's webview) through wechatpy's ``WeChatPay``.

Amounts are integer fen. Every answer from WeChat Pay is checked against the merchant key before we believe it
(wechatpy does not check them; WeChat's own SDKs do), and notifies are checked by wechatpy's
``parse_payment_result``. Orders are signed with MD5, the default, because that is the only sign type wechatpy
verifies on notifies.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from xml.parsers.expat import ExpatError

import requests
from wechatpy.exceptions import InvalidSignatureException, WeChatPayException
from wechatpy.pay import WeChatPay
from wechatpy.pay.utils import calculate_signature, dict_to_xml
from wechatpy.utils import random_string

from . import WeChatError, WeChatSettings

CHINA_TIME = timezone(timedelta(hours=8))  # WeChat Pay reads times as Beijing time; China has no DST
BODY_MAX_BYTES = 128  # WeChat refuses a longer 商品描述

DEMO_SETTINGS = WeChatSettings(
    app_id="wxdemo000000000000",
    app_secret="",
    mch_id="1900000109",
    mch_key="DingqiaoDemoKeyNotForRealMoney01",
    base_url="",
)
"""Demo mode has no real merchant: its "模拟支付" signs notifies with this key and checks them with it."""


@dataclass(frozen=True)
class PayNotification:
    out_trade_no: str
    transaction_id: str
    total_fee: int  # fen
    mch_id: str
    appid: str
    openid: str
    result_ok: bool  # return_code and result_code both SUCCESS
    raw: dict  # the parsed fields, for the record


@dataclass(frozen=True)
class PayQueryResult:
    trade_state: str  # SUCCESS, NOTPAY, CLOSED, REFUND, USERPAYING, PAYERROR, REVOKED
    out_trade_no: str
    transaction_id: str  # "" when not paid
    total_fee: int | None  # WeChat tells it only once there was a payment
    mch_id: str
    appid: str


class InvalidNotification(WeChatError):
    """A pay notify we must not believe. ``reason``: "bad_signature" or "malformed"."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__("支付通知无效。", detail=detail or reason)
        self.reason = reason


class PayError(WeChatError):
    """WeChat Pay refused or could not be reached. ``err_code`` is WeChat's own code (ORDERPAID,
    ORDERNOTEXIST, ORDERCLOSED, …) so callers can tell "already paid" from a failure; "" when none."""

    def __init__(self, message: str, *, err_code: str = "", detail: str = ""):
        super().__init__(message, detail=detail or message)
        self.err_code = err_code


_MESSAGES = {
    "ORDERPAID": "该订单已支付。",
    "ORDERCLOSED": "该订单已关闭，请重新下单。",
    "ORDERNOTEXIST": "微信支付中查不到这笔订单。",
    "NOTENOUGH": "商户账户余额不足。",
    "SYSTEMERROR": "微信支付系统繁忙，请稍后再试。",
    "BIZERR_NEED_RETRY": "微信支付系统繁忙，请稍后再试。",
}
_UNREACHABLE = "暂时无法连接微信支付，请稍后再试。"
MAX_NOTIFY_ID_LENGTH = 32
MAX_NOTIFY_FEE = 2**63 - 1  # fen; a BigInteger
_REQUIRED_NOTIFY_FIELDS = ("return_code", "result_code", "appid", "mch_id", "openid", "out_trade_no",
                           "transaction_id", "total_fee")


def _pay_error(exc: WeChatPayException) -> PayError:
    detail = repr(exc)
    if exc.return_code is None:  # HTTP error: WeChat Pay is down or a proxy failed
        return PayError(_UNREACHABLE, detail=detail)
    if exc.return_code != "SUCCESS":  # the envelope was refused: signature, merchant settings
        return PayError("微信支付暂时不可用，请稍后再试。", detail=detail)
    err_code = exc.errcode or ""
    return PayError(_MESSAGES.get(err_code, "微信支付未能完成这次请求，请稍后再试。"), err_code=err_code, detail=detail)


def _clip_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def _as_china_time(moment: datetime) -> datetime:
    aware = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
    return aware.astimezone(CHINA_TIME)


class PayGateway:
    def __init__(self, settings: WeChatSettings):
        self.settings = settings  # the merchant a notify's mch_id and appid must match
        # Refunds and transfers at real WeChat need the merchant API certificate (WECHAT_MCH_CERT_PATH,
        # WECHAT_MCH_KEY_PATH: apiclient_cert.pem and apiclient_key.pem); the fake does not check it.
        self._pay = WeChatPay(
            settings.app_id, settings.mch_key, settings.mch_id,
            mch_cert=settings.mch_cert_path or None, mch_key=settings.mch_key_path or None,
            timeout=settings.timeout_seconds,
        )
        if settings.base_url:
            self._pay.API_BASE_URL = settings.base_url + "/mch/"

    def _call(self, request, *, tolerated: tuple[str, ...] = ()) -> dict:
        """Run one wechatpy call and return WeChat's verified answer; a tolerated err_code answers {}."""
        try:
            answer = request()
        except WeChatPayException as exc:
            if exc.return_code == "SUCCESS" and exc.errcode in tolerated:
                return {}
            raise _pay_error(exc) from exc
        except (requests.RequestException, ExpatError, ValueError, LookupError) as exc:
            raise PayError(_UNREACHABLE, detail=repr(exc)) from exc
        # wechatpy hands back the raw text when the answer is not XML, and never checks the signature.
        if not isinstance(answer, dict) or not self._pay.check_signature(answer):
            raise PayError("微信支付的应答无法验证，请稍后再试。", detail=f"unverified answer: {answer!r:.500}")
        return answer

    def create_jsapi_order(self, *, out_trade_no: str, body: str, total_fee: int, openid: str, notify_url: str,
                           client_ip: str, expires_at: datetime) -> str:
        """统一下单; returns the prepay_id (valid two hours). ``expires_at`` is naive UTC. Asking again with the
        same out_trade_no and amount gives the same prepay_id; an already paid order raises err_code ORDERPAID."""
        answer = self._call(lambda: self._pay.order.create(
            trade_type="JSAPI",
            body=_clip_utf8(body, BODY_MAX_BYTES),
            total_fee=total_fee,
            notify_url=notify_url,
            client_ip=client_ip,  # without it wechatpy looks up WeChat's host name to guess our address
            user_id=openid,
            out_trade_no=out_trade_no,
            time_start=datetime.now(CHINA_TIME),
            time_expire=_as_china_time(expires_at),
        ))
        if not answer.get("prepay_id"):
            raise PayError(_UNREACHABLE, detail=f"no prepay_id in {answer!r:.500}")
        return answer["prepay_id"]

    def jsapi_params(self, prepay_id: str) -> dict:
        """The object for ``WeixinJSBridge.invoke('getBrandWCPayRequest', …)``, signed with the merchant key."""
        return dict(self._pay.jsapi.get_jsapi_params(prepay_id))

    def parse_notification(self, body: bytes) -> PayNotification:
        """Check and read the notify WeChat POSTs to notify_url. The caller must still compare the amount,
        mch_id and appid with its own order, and must expect the same notify more than once."""
        if b"<!doctype" in body[:1024].lower():  # WeChat never sends a DTD; refuse before any parsing
            raise InvalidNotification("malformed", "DTD in notify")
        try:
            WeChatPay.get_payment_data(body)  # parses and looks for the ids, raising on anything else
        except (ValueError, LookupError, TypeError, AttributeError, ExpatError) as exc:
            raise InvalidNotification("malformed", repr(exc)) from exc
        try:
            fields = self._pay.parse_payment_result(body)
        except InvalidSignatureException as exc:
            raise InvalidNotification("bad_signature") from exc
        except (ValueError, LookupError, TypeError, AttributeError, ExpatError) as exc:  # e.g. total_fee "1.5"
            raise InvalidNotification("malformed", repr(exc)) from exc
        fields = dict(fields)
        if not all(isinstance(fields.get(name), (str, int)) and fields[name] != "" for name in _REQUIRED_NOTIFY_FIELDS):
            raise InvalidNotification("malformed", f"missing or repeated fields in {sorted(fields)}")
        if not isinstance(fields["total_fee"], int):
            raise InvalidNotification("malformed", "total_fee is not an integer")
        # What WeChat sends: ids of at most 32 characters, a positive amount; anything else would not even fit
        # the columns the notify is recorded in.
        if not 0 < fields["total_fee"] <= MAX_NOTIFY_FEE or any(
                len(fields[name]) > MAX_NOTIFY_ID_LENGTH for name in ("out_trade_no", "transaction_id")):
            raise InvalidNotification("malformed", "total_fee, out_trade_no or transaction_id out of range")
        return PayNotification(
            out_trade_no=fields["out_trade_no"],
            transaction_id=fields["transaction_id"],
            total_fee=fields["total_fee"],
            mch_id=fields["mch_id"],
            appid=fields["appid"],
            openid=fields["openid"],
            result_ok=fields["return_code"] == "SUCCESS" and fields["result_code"] == "SUCCESS",
            raw=fields,
        )

    def query_order(self, out_trade_no: str) -> PayQueryResult:
        """查询订单. An order WeChat never saw raises PayError with err_code ORDERNOTEXIST."""
        answer = self._call(lambda: self._pay.order.query(out_trade_no=out_trade_no))
        try:
            total_fee = int(answer["total_fee"]) if answer.get("total_fee") else None
            return PayQueryResult(
                trade_state=answer["trade_state"],
                out_trade_no=answer.get("out_trade_no") or out_trade_no,
                transaction_id=answer.get("transaction_id") or "",
                total_fee=total_fee,
                mch_id=answer["mch_id"],
                appid=answer["appid"],
            )
        except (ValueError, LookupError, TypeError) as exc:
            raise PayError(_UNREACHABLE, detail=f"unreadable query answer {answer!r:.500}") from exc

    def close_order(self, out_trade_no: str) -> None:
        """关闭订单, so the user can no longer pay it. Closing a closed order is fine; a paid one raises
        PayError with err_code ORDERPAID, which the caller must treat as "the money arrived"."""
        self._call(lambda: self._pay.order.close(out_trade_no), tolerated=("ORDERCLOSED",))

    def refund(self, *, out_trade_no: str, out_refund_no: str, total_fee: int, refund_fee: int) -> str:
        """申请退款; returns WeChat's refund_id. The same out_refund_no refunds at most once, so retrying
        with it is safe."""
        answer = self._call(lambda: self._pay.refund.apply(
            total_fee=total_fee, refund_fee=refund_fee, out_refund_no=out_refund_no, out_trade_no=out_trade_no,
        ))
        if not answer.get("refund_id"):
            raise PayError(_UNREACHABLE, detail=f"no refund_id in {answer!r:.500}")
        return answer["refund_id"]

    def transfer(self, *, partner_trade_no: str, openid: str, amount: int, desc: str, client_ip: str) -> str:
        """企业付款到零钱 (legacy transfer to the user's WeChat balance); returns WeChat's payment_no. The same
        partner_trade_no pays at most once, so a retry after a timeout is safe. WeChat does not sign these
        answers (unlike the pay API), so there is no signature to check here; the call itself needs the
        merchant certificate in production, like refunds."""
        try:
            answer = self._pay.transfer.transfer(
                user_id=openid, amount=amount, desc=_clip_utf8(desc, BODY_MAX_BYTES), client_ip=client_ip,
                check_name="NO_CHECK", out_trade_no=partner_trade_no,
            )
        except WeChatPayException as exc:
            raise _pay_error(exc) from exc
        except (requests.RequestException, ExpatError, ValueError, LookupError) as exc:
            raise PayError(_UNREACHABLE, detail=repr(exc)) from exc
        if not isinstance(answer, dict) or not answer.get("payment_no"):
            raise PayError(_UNREACHABLE, detail=f"no payment_no in {answer!r:.500}")
        return answer["payment_no"]

    def signed_notification(self, *, out_trade_no: str, transaction_id: str, total_fee: int, openid: str) -> bytes:
        """The pay notify WeChat would POST for this payment, signed with this merchant's key (demo mode's
        模拟支付 and tests)."""
        fields = {
            "appid": self.settings.app_id,
            "mch_id": self.settings.mch_id,
            "nonce_str": random_string(32),
            "openid": openid,
            "out_trade_no": out_trade_no,
            "transaction_id": transaction_id,
            "total_fee": total_fee,
            "cash_fee": total_fee,
            "fee_type": "CNY",
            "bank_type": "OTHERS",
            "is_subscribe": "N",
            "trade_type": "JSAPI",
            "time_end": datetime.now(CHINA_TIME).strftime("%Y%m%d%H%M%S"),
            "result_code": "SUCCESS",
            "return_code": "SUCCESS",
        }
        return dict_to_xml(fields, calculate_signature(fields, self.settings.mch_key)).encode()


def notify_reply(ok: bool, message: str = "OK") -> str:
    """The body to answer a pay notify with. Anything but SUCCESS (or no answer in time) makes WeChat resend."""
    code = "SUCCESS" if ok else "FAIL"
    message = message.replace("]]>", "")
    return f"<xml><return_code><![CDATA[{code}]]></return_code><return_msg><![CDATA[{message}]]></return_msg></xml>"
