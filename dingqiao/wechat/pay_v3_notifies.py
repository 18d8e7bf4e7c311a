"""WeChat Pay API v3's notifies, as ``PayGatewayV3`` reads them: the checks we add on top of the library (the
signature type, the timestamp window, refusing serial numbers we do not know before the library goes fetching
certificates for them), the pay and refund notifies read into our outcomes, the answer WeChat expects, and demo
mode's stand-in that signs a notify as WeChat would. Mixed into ``pay_v3.PayGatewayV3``, which gives it
``settings``, ``_pay``, ``demo_signer`` and the certificate refresh's lock and clock."""
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .pay_outcomes import (
    _REFUND_CHANGE,
    MAX_NOTIFY_FEE,
    MAX_NOTIFY_ID_LENGTH,
    InvalidNotification,
    PayNotification,
    RefundResult,
    RefundState,
    _as_china_time,
)

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
NOTIFY_MAX_SKEW_SECONDS = 300  # a notify signed further from our clock than this is a replay, or a clock to fix
CERTIFICATE_REFRESH_SECONDS = 600  # at most one /v3/certificates fetch per gateway per this, whatever is sent to us


@dataclass(frozen=True)
class DemoSigner:
    """Demo mode's stand-in for WeChat Pay: the private half of the "WeChat Pay public key" the demo gateway
    trusts, so 模拟支付 can post a notify the real v3 code path verifies and decrypts."""
    private_key_pem: str


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


class NotifiesV3:
    """PayGatewayV3's notifies (and demo mode's signed one)."""

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
