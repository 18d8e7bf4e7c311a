"""WeChat Pay API v2 (JSAPI: paying inside WeChat's webview) through wechatpy's ``WeChatPay``.

Amounts are integer fen. Every answer from WeChat Pay is checked against the merchant key before we believe it
(wechatpy does not check them; WeChat's own SDKs do), and notifies are checked by wechatpy's
``parse_payment_result``. Orders are signed with MD5, the default, because that is the only sign type wechatpy
verifies on notifies.

The outcomes it answers with (and pay_v3 too) are in ``pay_outcomes``; they are importable from here as well.
"""
from datetime import datetime
from xml.parsers.expat import ExpatError

import requests
import xmltodict
from wechatpy.exceptions import (
    InvalidAppIdException,
    InvalidMchIdException,
    InvalidSignatureException,
    WeChatPayException,
)
from wechatpy.pay import WeChatPay
from wechatpy.pay.utils import calculate_signature, dict_to_xml
from wechatpy.utils import random_string

from ..china_time import CHINA_TIME
from . import WeChatSettings
from .pay_outcomes import (  # noqa: F401 - re-exported: callers import the outcomes from here
    _REFUND_CHANGE,
    _UNREACHABLE,
    BODY_MAX_BYTES,
    MAX_NOTIFY_FEE,
    MAX_NOTIFY_ID_LENGTH,
    InvalidNotification,
    PayError,
    PayNotification,
    PayQueryResult,
    RefundResult,
    RefundState,
    TransferResult,
    TransferState,
    _as_china_time,
    _clip_utf8,
)
from .xmlsafe import UnsafeXML, refuse_dtd

DEMO_SETTINGS = WeChatSettings(
    app_id="wxdemo000000000000",
    app_secret="",
    mch_id="1900000109",
    mch_key="DingqiaoDemoKeyNotForRealMoney01",
    base_url="",
)
"""Demo mode has no real merchant: its "模拟支付" signs notifies with this key and checks them with it."""


_MESSAGES = {
    "ORDERPAID": "该订单已支付。",
    "ORDERCLOSED": "该订单已关闭，请重新下单。",
    "ORDERNOTEXIST": "微信支付中查不到这笔订单。",
    "NOTENOUGH": "商户账户余额不足。",
    "SYSTEMERROR": "微信支付系统繁忙，请稍后再试。",
    "BIZERR_NEED_RETRY": "微信支付系统繁忙，请稍后再试。",
}
# 申请退款 answers that certainly mean "nothing was refunded"; anything else (no answer, SYSTEMERROR,
# BIZERR_NEED_RETRY) may hide a refund, to be retried with the same out_refund_no.
_REFUND_NOT_DONE = frozenset({
    "NOTENOUGH", "TRADE_OVERDUE", "USER_ACCOUNT_ABNORMAL", "INVALID_TRANSACTIONID", "PARAM_ERROR", "ORDERNOTEXIST",
    "INVALID_REQUEST", "ERROR", "FREQUENCY_LIMITED", "TRADE_STATE_ERROR", "SIGNERROR", "XML_FORMAT_ERROR",
    "APPID_NOT_EXIST", "MCHID_NOT_EXIST"})
# 企业付款 answers that WeChat documents as "this transfer was not made". Not among them: SYSTEMERROR and
# SEND_FAILED ("query for the result"), FREQ_LIMIT ("retry with the same number"), and FATAL_ERROR — the number
# was sent before with other parameters, and that earlier attempt may have paid.
_TRANSFER_NOT_PAID = frozenset({
    "NOTENOUGH", "AMOUNT_LIMIT", "OPENID_ERROR", "PARAM_ERROR", "NO_AUTH", "V2_ACCOUNT_SIMPLE_BAN", "SENDNUM_LIMIT",
    "NAME_MISMATCH", "MONEY_LIMIT", "CA_ERROR", "SIGN_ERROR", "XML_ERROR", "OPENID_INVALID",
    "RECV_ACCOUNT_NOT_ALLOWED", "PAY_CHANNEL_NOT_ALLOWED"})
_REFUND_FAILURES = {"REFUNDCLOSE": "微信退款已关闭，款项未退出。"}
_REQUIRED_NOTIFY_FIELDS = ("return_code", "result_code", "appid", "mch_id", "openid", "out_trade_no",
                           "transaction_id", "total_fee")


def _pay_error(exc: WeChatPayException, definite: frozenset[str] = frozenset()) -> PayError:
    detail = repr(exc)
    if exc.return_code is None:  # HTTP error: WeChat Pay is down or a proxy failed
        return PayError(_UNREACHABLE, detail=detail)
    if exc.return_code != "SUCCESS":  # the envelope was refused: signature, merchant settings
        return PayError("微信支付暂时不可用，请稍后再试。", detail=detail)
    err_code = exc.errcode or ""
    return PayError(_MESSAGES.get(err_code, "微信支付未能完成这次请求，请稍后再试。"), err_code=err_code, detail=detail,
                    definite=err_code in definite)


def _refund_result(out_refund_no: str, status: str, refund_fee, refund_id: str) -> RefundResult:
    """WeChat's refund status: SUCCESS and REFUNDCLOSE are final; PROCESSING, CHANGE (退款异常, waiting for the
    merchant to re-route it) and anything new are not — CHANGE carries its reason for finance to see. A final
    result names WeChat's refund id: a failed refund is retried under a new number only when it has one."""
    fee = int(refund_fee)
    if status in ("SUCCESS", *_REFUND_FAILURES) and not refund_id:
        raise ValueError("a final refund result without WeChat's refund id")
    if status == "SUCCESS":
        return RefundResult(out_refund_no, RefundState.SUCCEEDED, fee, refund_id)
    if status in _REFUND_FAILURES:
        return RefundResult(out_refund_no, RefundState.FAILED, fee, refund_id, _REFUND_FAILURES[status])
    return RefundResult(out_refund_no, RefundState.PROCESSING, fee, refund_id,
                        _REFUND_CHANGE if status == "CHANGE" else "")


class PayGateway:
    """One merchant on API v2."""

    api = "v2"

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

    def for_api(self, api: str | None, *, strict: bool = False) -> "PayGateway | None":
        """A lone gateway serves every api, or with ``strict`` only its own (see ``wechat.PayGateways``)."""
        return self if not strict or api in (None, self.api) else None

    def _call(self, request, *, tolerated: tuple[str, ...] = (), definite: frozenset[str] = frozenset()) -> dict:
        """Run one wechatpy call and return WeChat's verified answer; a tolerated err_code answers {}; an
        err_code in ``definite`` raises a PayError marked definite."""
        try:
            answer = request()
        except WeChatPayException as exc:
            if exc.return_code == "SUCCESS" and exc.errcode in tolerated:
                return {}
            raise _pay_error(exc, definite) from exc
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

    def parse_notification(self, body: bytes, headers=None) -> PayNotification:
        """Check and read the notify WeChat POSTs to notify_url. The caller must still compare the amount,
        mch_id and appid with its own order, and must expect the same notify more than once."""
        try:
            refuse_dtd(body)
        except UnsafeXML as exc:
            raise InvalidNotification("dtd", repr(exc)) from exc
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
        """申请退款; returns WeChat's refund_id once WeChat has *accepted* the refund — its result comes later, by
        the refund notify (to ``settings.refund_notify_url``) or ``query_refund``. The same out_refund_no
        refunds at most once, so retrying with it is safe. A PayError marked ``definite`` means nothing was
        refunded."""
        answer = self._call(lambda: self._pay.refund.apply(
            total_fee=total_fee, refund_fee=refund_fee, out_refund_no=out_refund_no, out_trade_no=out_trade_no,
            notify_url=self.settings.refund_notify_url or None,
        ), definite=_REFUND_NOT_DONE)
        if not answer.get("refund_id"):
            raise PayError(_UNREACHABLE, detail=f"no refund_id in {answer!r:.500}")
        return answer["refund_id"]

    def query_refund(self, out_refund_no: str) -> RefundResult:
        """查询退款 by our refund number. A refund WeChat does not know raises PayError (err_code
        REFUNDNOTEXIST): the request may not have arrived, or not yet."""
        answer = self._call(lambda: self._pay.refund.query(out_refund_no=out_refund_no))
        try:
            # One refund number gives one refund: its fields carry the index 0.
            if answer["out_refund_no_0"] != out_refund_no:
                raise ValueError("another refund in the answer")
            return _refund_result(out_refund_no, answer["refund_status_0"], answer["refund_fee_0"],
                                  answer.get("refund_id_0", ""))
        except (ValueError, LookupError, TypeError) as exc:
            raise PayError(_UNREACHABLE, detail=f"unreadable refund query answer {answer!r:.500}") from exc

    def parse_refund_notification(self, body: bytes, headers=None) -> RefundResult:
        """Check and read the refund-result notify. It carries no signature: its ``req_info`` is encrypted with
        the API key (AES-256-ECB, key = md5(API key)), so only WeChat (or whoever holds our key) can write one
        that decrypts to a readable result. The caller must still compare the amount with its own refund and
        expect the same notify more than once."""
        try:
            refuse_dtd(body)
        except UnsafeXML as exc:
            raise InvalidNotification("dtd", repr(exc)) from exc
        try:
            outer = xmltodict.parse(body)["xml"]
            if (not isinstance(outer, dict) or outer.get("return_code") != "SUCCESS"
                    or not isinstance(outer.get("req_info"), str)):
                raise InvalidNotification("malformed", "not a successful refund notify")
            fields = self._pay.parse_refund_notify_result(outer)
        except InvalidNotification:
            raise
        except (InvalidAppIdException, InvalidMchIdException) as exc:
            raise InvalidNotification("bad_signature", "appid or mch_id of another merchant") from exc
        except (ValueError, LookupError, TypeError, AttributeError, ExpatError) as exc:  # a wrong key: garbage
            raise InvalidNotification("bad_signature", f"undecryptable req_info: {exc!r:.200}") from exc
        try:
            if not isinstance(fields, dict) or not isinstance(fields.get("out_refund_no"), str):
                raise ValueError("no out_refund_no")
            return _refund_result(fields["out_refund_no"], fields["refund_status"], fields["refund_fee"],
                                  fields.get("refund_id") or "")
        except (ValueError, LookupError, TypeError) as exc:
            raise InvalidNotification("malformed", repr(exc)) from exc

    def transfer(self, *, partner_trade_no: str, openid: str, amount: int, desc: str) -> TransferResult:
        """企业付款到零钱 (legacy transfer to the user's WeChat balance). The same partner_trade_no with the same
        parameters pays at most once, so a retry after an unknown answer is safe — which is why the request
        carries the fixed ``settings.server_ip``, never the address of whoever clicked. WeChat does not sign
        these answers (unlike the pay API), so there is no signature to check here; the call itself needs the
        merchant certificate in production, like refunds."""
        try:
            answer = self._pay.transfer.transfer(
                user_id=openid, amount=amount, desc=_clip_utf8(desc, BODY_MAX_BYTES),
                client_ip=self.settings.server_ip or "127.0.0.1",  # empty: wechatpy would look up WeChat's host
                check_name="NO_CHECK", out_trade_no=partner_trade_no,
            )
        except WeChatPayException as exc:
            error = _pay_error(exc, _TRANSFER_NOT_PAID)
            reason = exc.errmsg if error.definite and exc.errmsg else error.message
            return TransferResult(TransferState.NOT_PAID if error.definite else TransferState.UNKNOWN,
                                  reason=f"{reason}（{error.err_code}）" if error.err_code else reason)
        except (requests.RequestException, ExpatError, ValueError, LookupError):
            return TransferResult(TransferState.UNKNOWN, reason=_UNREACHABLE)
        if not isinstance(answer, dict) or not answer.get("payment_no"):
            return TransferResult(TransferState.UNKNOWN, reason=_UNREACHABLE)
        return TransferResult(TransferState.PAID, payment_no=answer["payment_no"])

    def query_transfer(self, partner_trade_no: str) -> TransferResult:
        """查询企业付款 (gettransferinfo). Only SUCCESS and FAILED are final; PROCESSING, NOT_FOUND (WeChat: "retry
        with the same number") and no answer are unknown."""
        try:
            answer = self._pay.transfer.query(partner_trade_no)
        except WeChatPayException as exc:
            return TransferResult(TransferState.UNKNOWN, reason=_pay_error(exc).message)
        except (requests.RequestException, ExpatError, ValueError, LookupError):
            return TransferResult(TransferState.UNKNOWN, reason=_UNREACHABLE)
        if not isinstance(answer, dict) or answer.get("partner_trade_no") != partner_trade_no:
            return TransferResult(TransferState.UNKNOWN, reason=_UNREACHABLE)
        if answer.get("status") == "SUCCESS":
            return TransferResult(TransferState.PAID, payment_no=answer.get("detail_id") or "")
        if answer.get("status") == "FAILED":
            return TransferResult(TransferState.NOT_PAID, reason=answer.get("reason") or "微信未说明原因")
        return TransferResult(TransferState.UNKNOWN, reason="微信打款处理中。")

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
