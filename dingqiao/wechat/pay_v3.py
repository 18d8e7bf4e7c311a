"""WeChat Pay API v3 (JSON, RSA signatures, AES-256-GCM notifies) and 商家转账 through the ``wechatpayv3`` library.

The same outcomes as the v2 gateway in ``pay.py`` (``PayNotification``, ``PayQueryResult``, ``RefundResult``,
``TransferResult``, ``PayError``/``InvalidNotification``), so services never see which API took the money.

What the library does: signs every request with the merchant's private key, verifies every 2xx answer and every
notify with WeChat Pay's public key (微信支付公钥, ``PUB_KEY_ID_…``) or a platform certificate (older merchants;
fetched from ``/v3/certificates`` into a folder), decrypts notify resources with the APIv3 key. What it leaves to
us and we do here: the notify's timestamp window and signature type, refusing serial numbers we do not know
before the library goes fetching certificates for them, reading WeChat's fields into our outcomes, and deciding
which answers are certain.
"""
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import requests
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core

from . import WeChatSettings
from .pay import (
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
    _REFUND_CHANGE,
    _UNREACHABLE,
)

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
NOTIFY_MAX_SKEW_SECONDS = 300  # a notify signed further from our clock than this is a replay, or a clock to fix
CERTIFICATE_REFRESH_SECONDS = 600  # at most one /v3/certificates fetch per gateway per this, whatever is sent to us
TRANSFER_REMARK_MAX = 32  # characters
REAL_NAME_FROM_FEN = 200_000  # 商家转账 names the payee (encrypted) from ¥2,000 up
TRANSFER_SCENES = {
    # scene id → (the 报备 items WeChat requires for it, the 用户收款感知 shown to the member). Other scenes work
    # too when their items are named in the setting ("类型=内容|类型=内容") with the perception the scene allows.
    "1005": (("岗位类型", "报酬说明"), "劳务报酬"),  # 佣金报酬
    "1000": (("活动名称", "奖励说明"), "现金奖励"),  # 现金营销
}
REPORT_CONTENT_MAX = 32  # characters of one 报备 item


def transfer_report(scene: str, values: tuple[str, ...], perception: str = "") -> tuple[list[dict], str]:
    """(the 报备 items, the 用户收款感知) of a transfer in ``scene`` from the settings: for a scene we know, plain
    values in its order (1005: 岗位类型, 报酬说明); for any scene, ``类型=内容`` pairs. ValueError says what is wrong."""
    if not scene.isdigit():
        raise ValueError("the transfer scene id is the number the merchant platform shows (e.g. 1005)")
    known_items, known_perception = TRANSFER_SCENES.get(scene, ((), ""))
    pairs = []
    for index, value in enumerate(values):
        kind, separator, content = value.partition("=")
        if not separator:
            if index >= len(known_items):
                raise ValueError(f"scene {scene}: name each report item as 类型=内容 (e.g. 岗位类型=推广员)")
            kind, content = known_items[index], value
        pairs.append((kind.strip(), content.strip()))
    if known_items and [kind for kind, _ in pairs] != list(known_items):
        raise ValueError(f"scene {scene} needs exactly the report items {' | '.join(known_items)}, in that order")
    if not pairs or not all(kind and content and len(content) <= REPORT_CONTENT_MAX for kind, content in pairs):
        raise ValueError(f"each report item needs a type and a content of at most {REPORT_CONTENT_MAX} characters")
    if not (perception or known_perception):
        raise ValueError(f"scene {scene}: set the 用户收款感知 the scene allows (WECHAT_TRANSFER_PERCEPTION)")
    return [{"info_type": kind, "info_content": content} for kind, content in pairs], perception or known_perception

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
# 发起转账 answers that certainly mean no bill was made under this number: the money may go back to the wallet.
# Not among them: SYSTEM_ERROR, FREQUENCY_LIMITED, 5xx (retry with the same number), INVALID_REQUEST (among
# other things "this number was used with other parameters": an earlier attempt made a bill) and NOT_ENOUGH, whose
# documented answer is "充值后可以原单号发起重试，请勿更换商户单号": the payout waits, approved, for finance to top the
# operating account up and approve again under the same number.
_BILL_NOT_MADE = frozenset({"PARAM_ERROR", "NO_AUTH", "SIGN_ERROR", "ACCOUNT_ERROR",
                            "OPENID_INVALID", "USER_ACCOUNT_ABNORMAL", "MCH_NOT_EXISTS"})
_BILL_RETRY_REASONS = {"NOT_ENOUGH": "商户运营账户余额不足，请充值后再次点击同意，按原单号重试（NOT_ENOUGH）"}
_BILL_FAIL_REASONS = {
    "OVERDUE_CLOSE": "超过 24 小时未确认收款，转账已关闭",
    "TRANSFER_SCENE_UNAVAILABLE": "商户的转账场景不可用",
    "TRANSFER_SCENE_INVALID": "商户的转账场景不可用",
    "ACCOUNT_FROZEN": "收款人微信零钱已冻结",
    "ACCOUNT_NOT_EXIST": "收款人微信账户不存在",
    "REAL_NAME_CHECK_FAIL": "收款人未实名，或姓名与实名不符",
    "NAME_NOT_CORRECT": "收款人姓名与实名不符",
    "BLOCK_B2C_USERLIMITAMOUNT_BSRULE_MONTH": "收款人本月收款已达上限",
    "BLOCK_B2C_USERLIMITAMOUNT_MONTH": "收款人本月收款已达上限",
    "EXCEEDED_ESTIMATED_AMOUNT": "超出商户预估的转账额度",
    "MERCHANT_REJECT": "商户已撤销",
    "MERCHANT_NOT_CONFIRM": "商户未确认",
}
_BILL_IN_PROGRESS = {"ACCEPTED", "PROCESSING", "TRANSFERING", "CANCELING"}


class BillState(StrEnum):
    """A transfer bill as our services need it: WeChat's states, folded."""
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # WAIT_USER_CONFIRM: the member must tap 确认收款
    PAID = "paid"  # SUCCESS
    NOT_PAID = "not_paid"  # FAIL (incl. never confirmed within 24 h) or CANCELLED: no money moved
    UNKNOWN = "unknown"  # in progress at WeChat, no answer, or an answer we could not verify: ask again later


@dataclass(frozen=True)
class TransferBill:
    state: BillState
    out_bill_no: str
    bill_no: str = ""  # WeChat's transfer_bill_no
    package_info: str = ""  # for requestMerchantTransfer, only while AWAITING_CONFIRMATION
    wechat_state: str = ""  # WeChat's own word, for finance
    amount_fen: int | None = None
    openid: str = ""
    reason: str = ""  # Chinese, for finance and the member
    error: str = ""  # WeChat's error code when it refused the call (NOT_ENOUGH, NOT_FOUND, …)

    def as_transfer_result(self) -> TransferResult:
        state = {BillState.PAID: TransferState.PAID, BillState.NOT_PAID: TransferState.NOT_PAID}.get(
            self.state, TransferState.UNKNOWN)
        return TransferResult(state, payment_no=self.bill_no, reason=self.reason)


@dataclass(frozen=True)
class DemoSigner:
    """Demo mode's stand-in for WeChat Pay: the private half of the "WeChat Pay public key" the demo gateway
    trusts, so 模拟支付 can post a notify the real v3 code path verifies and decrypts."""
    private_key_pem: str


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


def _refund_result_v3(answer: dict, out_refund_no: str) -> RefundResult:
    """v3 refund status → our outcome: SUCCESS and CLOSED are final; PROCESSING and ABNORMAL (退款异常: WeChat holds
    the money until the merchant re-routes it) are not."""
    status = answer.get("status") or answer.get("refund_status")
    refund_id = answer.get("refund_id") or ""
    amount = answer.get("amount") or {}
    fee = amount.get("refund")
    if answer.get("out_refund_no") != out_refund_no or not isinstance(fee, int) or not isinstance(status, str):
        raise ValueError(f"unreadable refund {answer!r:.300}")
    if status in ("SUCCESS", "CLOSED") and not refund_id:
        raise ValueError("a final refund result without WeChat's refund id")
    if status == "SUCCESS":
        return RefundResult(out_refund_no, RefundState.SUCCEEDED, fee, refund_id)
    if status == "CLOSED":
        return RefundResult(out_refund_no, RefundState.FAILED, fee, refund_id, "微信退款已关闭，款项未退出。")
    return RefundResult(out_refund_no, RefundState.PROCESSING, fee, refund_id,
                        _REFUND_CHANGE if status == "ABNORMAL" else "")


class PayGatewayV3:
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

    # --- 商家转账 ----------------------------------------------------------------------------------------
    def create_transfer_bill(self, *, out_bill_no: str, openid: str, amount: int, remark: str,
                             real_name: str = "") -> TransferBill:
        """发起转账: one bill per payout, which the member confirms on their phone. The same out_bill_no with the same
        parameters makes at most one bill, so a retry after an unknown answer is safe; a new number only after a
        query shows the bill failed."""
        scene = self.settings.transfer_scene_id
        report, perception = transfer_report(scene, self.settings.transfer_report_values,
                                             self.settings.transfer_perception)  # checked at start
        if amount >= REAL_NAME_FROM_FEN and not real_name:
            return TransferBill(BillState.NOT_PAID, out_bill_no, reason="¥2,000 及以上的提现需要填写收款人真实姓名")
        try:
            answer = self._call(lambda: self._pay.mch_transfer_bills(
                out_bill_no=out_bill_no, transfer_scene_id=scene, openid=openid, transfer_amount=amount,
                transfer_remark=remark[:TRANSFER_REMARK_MAX],
                user_name=real_name if amount >= REAL_NAME_FROM_FEN else None,
                user_recv_perception=perception,
                transfer_scene_report_infos=report, notify_url=self.settings.transfer_notify_url or None,
            ), definite=_BILL_NOT_MADE)
        except PayError as exc:
            state = BillState.NOT_PAID if exc.definite else BillState.UNKNOWN
            reason = _BILL_RETRY_REASONS.get(exc.err_code) or (
                f"{exc.message}（{exc.err_code}）" if exc.err_code else exc.message)
            return TransferBill(state, out_bill_no, reason=reason, error=exc.err_code)
        return self._bill(answer, out_bill_no)

    def query_transfer_bill(self, out_bill_no: str) -> TransferBill:
        """查询转账单 by our number (WeChat keeps them 30 days). Not found: unknown (error NOT_FOUND) — the bill may not
        be there yet."""
        try:
            answer = self._call(lambda: self._pay.mch_transfer_bills_query(out_bill_no=out_bill_no))
        except PayError as exc:
            return TransferBill(BillState.UNKNOWN, out_bill_no, reason=exc.message, error=exc.err_code)
        return self._bill(answer, out_bill_no)

    def cancel_transfer_bill(self, out_bill_no: str) -> TransferBill:
        """撤销转账 while the member has not confirmed. The answer is CANCELING or CANCELLED; only a query (or the
        notify) says it is final."""
        try:
            answer = self._call(lambda: self._pay.mch_transfer_bills_cancel(out_bill_no))
        except PayError as exc:
            return TransferBill(BillState.UNKNOWN, out_bill_no, reason=exc.message)
        return self._bill(answer, out_bill_no)

    def _bill(self, answer: dict, out_bill_no: str) -> TransferBill:
        state = answer.get("state")
        if answer.get("out_bill_no") != out_bill_no or not isinstance(state, str):
            return TransferBill(BillState.UNKNOWN, out_bill_no, reason=_UNREACHABLE)
        common = {"out_bill_no": out_bill_no, "bill_no": str(answer.get("transfer_bill_no") or ""),
                  "wechat_state": state, "openid": str(answer.get("openid") or ""),
                  "amount_fen": amount if isinstance(amount := answer.get("transfer_amount"), int) else None}
        if state == "SUCCESS":
            return TransferBill(BillState.PAID, **common)
        if state == "WAIT_USER_CONFIRM" and isinstance(answer.get("package_info"), str) and answer["package_info"]:
            return TransferBill(BillState.AWAITING_CONFIRMATION, package_info=answer["package_info"], **common,
                                reason="待用户确认收款")
        if state == "WAIT_USER_CONFIRM":  # a query: WeChat gives the package only when the bill is made
            return TransferBill(BillState.AWAITING_CONFIRMATION, **common, reason="待用户确认收款")
        if state == "FAIL":
            code = str(answer.get("fail_reason") or "")
            reason = _BILL_FAIL_REASONS.get(code, "微信转账失败")
            return TransferBill(BillState.NOT_PAID, **common, reason=f"{reason}（{code}）" if code else reason)
        if state == "CANCELLED":
            return TransferBill(BillState.NOT_PAID, **common, reason="转账已撤销")
        return TransferBill(BillState.UNKNOWN, **common,
                            reason="微信转账处理中。" if state in _BILL_IN_PROGRESS else f"微信转账状态未知（{state}）")

    # --- notifies ----------------------------------------------------------------------------------
    def _verified_resource(self, body: bytes, headers: Mapping[str, str],
                           original_types: tuple[str, ...]) -> tuple[str, dict]:
        """(event_type, the decrypted resource) of a v3 notify, or InvalidNotification."""
        header = {k.lower(): v for k, v in headers.items()}
        if header.get("wechatpay-signature-type", SIGNATURE_TYPE) != SIGNATURE_TYPE:
            raise InvalidNotification("bad_signature", "unknown signature type")
        serial, stamp = header.get("wechatpay-serial", ""), header.get("wechatpay-timestamp", "")
        if not (serial and stamp.isdigit() and header.get("wechatpay-signature") and header.get("wechatpay-nonce")):
            raise InvalidNotification("bad_signature", "no Wechatpay-* signature headers")
        if abs(time.time() - int(stamp)) > NOTIFY_MAX_SKEW_SECONDS:
            raise InvalidNotification("stale", f"signed at {stamp}, outside ±{NOTIFY_MAX_SKEW_SECONDS}s")
        if not self._serial_known(serial):
            raise InvalidNotification("bad_signature", f"unknown Wechatpay-Serial {serial[:64]!r}")
        try:
            text = body.decode("utf-8")
            envelope = json.loads(text)
            result = self._pay.callback(_canonical_headers(header), text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidNotification("malformed", repr(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - the library raises bare Exception for unknown algorithms
            raise InvalidNotification("bad_signature", repr(exc)) from exc
        if result is None:
            # Signature refused, or (signed) but undecryptable with our APIv3 key: either way not believed.
            raise InvalidNotification("bad_signature", "signature or resource did not verify")
        resource = result.get("resource")
        if (not isinstance(resource, dict) or not isinstance(envelope, dict)
                or (envelope.get("resource") or {}).get("original_type") not in original_types):
            raise InvalidNotification("malformed", f"unexpected resource in {str(envelope)[:300]}")
        return str(envelope.get("event_type") or ""), resource

    def _serial_known(self, serial: str) -> bool:
        """Our public key's id, or a platform certificate the library holds — refreshing those at most once per
        CERTIFICATE_REFRESH_SECONDS, so junk with made-up serials cannot make us hammer /v3/certificates."""
        if len(serial) > 64:
            return False
        core = self._pay._core
        if serial == (self.settings.pay_public_key_id or None):
            return True
        try:
            wanted = int(serial, 16)
        except ValueError:
            return False
        if any(cert.serial_number == wanted for cert in core._certificates):
            return True
        if not self.settings.platform_cert_dir:
            return False
        with self._refresh_lock:
            if time.monotonic() - self._last_refresh < CERTIFICATE_REFRESH_SECONDS and self._last_refresh:
                return False
            self._last_refresh = time.monotonic()
        known = list(core._certificates)  # the library empties its list before fetching
        try:
            core._update_certificates()
        except Exception:  # noqa: BLE001 - WeChat unreachable: not believed now, WeChat will resend
            pass
        if not core._certificates:
            core._certificates.extend(known)  # a failed fetch must not forget the certificates we had
        return any(cert.serial_number == wanted for cert in core._certificates)

    def parse_notification(self, body: bytes, headers: Mapping[str, str] | None = None) -> PayNotification:
        """Check and read a v3 pay notify (TRANSACTION.SUCCESS). The caller must still compare the amount, mchid
        and appid with its own order, and expect the same notify more than once."""
        event, res = self._verified_resource(body, headers or {}, ("transaction",))
        try:
            amount, payer = res.get("amount") or {}, res.get("payer") or {}
            fields = {"out_trade_no": res["out_trade_no"], "transaction_id": res.get("transaction_id") or "",
                      "mch_id": res["mchid"], "appid": res["appid"], "openid": payer.get("openid") or "",
                      "total_fee": amount.get("total"), "trade_state": res.get("trade_state")}
        except (LookupError, TypeError, AttributeError) as exc:
            raise InvalidNotification("malformed", repr(exc)) from exc
        if (not all(isinstance(fields[k], str) and fields[k] for k in ("out_trade_no", "mch_id", "appid"))
                or not isinstance(fields["total_fee"], int) or isinstance(fields["total_fee"], bool)
                or not 0 < fields["total_fee"] <= MAX_NOTIFY_FEE
                or len(fields["out_trade_no"]) > MAX_NOTIFY_ID_LENGTH
                or not isinstance(fields["transaction_id"], str) or len(fields["transaction_id"]) > MAX_NOTIFY_ID_LENGTH):
            raise InvalidNotification("malformed", f"fields out of range in {sorted(res)}")
        ok = event == "TRANSACTION.SUCCESS" and fields["trade_state"] == "SUCCESS" and bool(fields["transaction_id"])
        return PayNotification(out_trade_no=fields["out_trade_no"], transaction_id=fields["transaction_id"],
                               total_fee=fields["total_fee"], mch_id=fields["mch_id"], appid=fields["appid"],
                               openid=fields["openid"], result_ok=ok, raw={"api": "v3", "event_type": event, **res})

    def parse_refund_notification(self, body: bytes, headers: Mapping[str, str] | None = None) -> RefundResult:
        """REFUND.SUCCESS / REFUND.ABNORMAL / REFUND.CLOSED, verified and decrypted. The caller compares the amount."""
        _event, res = self._verified_resource(body, headers or {}, ("refund",))
        if res.get("mchid") != self.settings.mch_id:
            raise InvalidNotification("bad_signature", "refund notify of another merchant")
        try:
            return _refund_result_v3(res, res.get("out_refund_no") if isinstance(res.get("out_refund_no"), str) else "")
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            raise InvalidNotification("malformed", repr(exc)) from exc

    def parse_transfer_notification(self, body: bytes, headers: Mapping[str, str] | None = None) -> TransferBill:
        """MCHTRANSFER.BILL.FINISHED: the bill reached SUCCESS, FAIL or CANCELLED. The caller compares the amount
        and payee with its own withdrawal."""
        _event, res = self._verified_resource(body, headers or {}, ("mch_payment",))
        if res.get("mch_id", self.settings.mch_id) != self.settings.mch_id:
            raise InvalidNotification("bad_signature", "transfer notify of another merchant")
        no = res.get("out_bill_no")
        if not isinstance(no, str) or not no or len(no) > MAX_NOTIFY_ID_LENGTH:
            raise InvalidNotification("malformed", "no out_bill_no")
        bill = self._bill(res, no)
        if bill.state == BillState.UNKNOWN and res.get("state") not in _BILL_IN_PROGRESS:
            raise InvalidNotification("malformed", f"state {res.get('state')!r}")
        return bill

    # --- demo ----------------------------------------------------------------------------------------
    def signed_notification(self, *, out_trade_no: str, transaction_id: str, total_fee: int, openid: str
                            ) -> tuple[bytes, dict[str, str]]:
        """The TRANSACTION.SUCCESS notify WeChat would POST for this payment, signed and encrypted as WeChat does —
        only in demo mode, whose gateway holds the demo "WeChat Pay" key."""
        if self.demo_signer is None:
            raise RuntimeError("only the demo gateway can sign a notify")
        resource = {"appid": self.settings.app_id, "mchid": self.settings.mch_id, "out_trade_no": out_trade_no,
                    "transaction_id": transaction_id, "trade_type": "JSAPI", "trade_state": "SUCCESS",
                    "trade_state_desc": "支付成功", "bank_type": "OTHERS",
                    "success_time": _as_china_time(datetime.utcnow()).isoformat(timespec="seconds"),
                    "payer": {"openid": openid},
                    "amount": {"total": total_fee, "payer_total": total_fee, "currency": "CNY", "payer_currency": "CNY"}}
        return sign_notification(self.demo_signer.private_key_pem, self.settings.pay_public_key_id,
                                 self.settings.apiv3_key, "TRANSACTION.SUCCESS", "transaction", resource)


def _canonical_headers(header: dict[str, str]) -> dict[str, str]:
    """The library looks headers up by WeChat's spelling (``Wechatpay-Signature``…)."""
    names = {"wechatpay-signature": "Wechatpay-Signature", "wechatpay-timestamp": "Wechatpay-Timestamp",
             "wechatpay-nonce": "Wechatpay-Nonce", "wechatpay-serial": "Wechatpay-Serial",
             "wechatpay-signature-type": "Wechatpay-Signature-Type"}
    canonical = {names[k]: v for k, v in header.items() if k in names}
    canonical.setdefault("Wechatpay-Signature-Type", SIGNATURE_TYPE)
    return canonical


def sign_notification(private_key_pem: str, serial: str, apiv3_key: str, event_type: str, original_type: str,
                      resource: dict) -> tuple[bytes, dict[str, str]]:
    """A v3 notify as WeChat builds one: the resource AES-256-GCM encrypted with the APIv3 key, the body signed
    (RSA-SHA256) with WeChat Pay's private key. Demo mode's stand-in for WeChat uses it."""
    from base64 import b64encode

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from wechatpayv3.utils import load_private_key, rsa_sign

    nonce = secrets.token_hex(6)
    associated = original_type
    ciphertext = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), json.dumps(resource, ensure_ascii=False).encode(),
                                                    associated.encode())
    body = json.dumps({
        "id": secrets.token_hex(18), "create_time": _as_china_time(datetime.utcnow()).isoformat(timespec="seconds"),
        "resource_type": "encrypt-resource", "event_type": event_type, "summary": "支付成功",
        "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                     "ciphertext": b64encode(ciphertext).decode(), "associated_data": associated, "nonce": nonce},
    }, ensure_ascii=False)
    timestamp, sign_nonce = str(int(time.time())), secrets.token_hex(16)
    signature = rsa_sign(load_private_key(private_key_pem), f"{timestamp}\n{sign_nonce}\n{body}\n")
    return body.encode(), {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": sign_nonce,
                           "Wechatpay-Signature": signature, "Wechatpay-Serial": serial,
                           "Wechatpay-Signature-Type": SIGNATURE_TYPE}


def notify_reply_v3(ok: bool, message: str = "") -> tuple[str, int, dict]:
    """v3's answer to a notify: 204 with no body when handled; otherwise a 4xx/5xx with {"code": "FAIL", …}, which
    makes WeChat resend."""
    if ok:
        return "", 204, {}
    return json.dumps({"code": "FAIL", "message": message or "失败"}, ensure_ascii=False), 400, {
        "Content-Type": "application/json; charset=utf-8"}
