"""A fake of WeChat Pay API v3 and 商家转账 (transfer bills), with real cryptography, for
``official_account.FakeWeChat``.

The HTTP server (``server.py``) hands every ``/v3/…`` request to :meth:`FakeWeChatPayV3.handle`. The fake stands for
WeChat, so it trusts nothing our adapter says: each request's ``Authorization`` (RSA-SHA256 over method, path with
query, timestamp, nonce and body) is checked with the public half of the merchant key the fake "issued", and every
answer — errors and 204s too — is signed the way WeChat signs it, with the 微信支付公钥 (new merchants) or the platform
certificate (older ones). Notifies are AES-256-GCM under the merchant's APIv3 key and signed the same way, so the
real ``wechatpayv3`` client (or any other) can be run end to end against it.

Facts follow WeChat's documentation (pay.weixin.qq.com/doc/v3/merchant) where it says something; where it is silent
the choice is marked "not documented" so nobody mistakes it for WeChat's word.
"""
import base64
import json
import re
import secrets
import string
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from ...china_time import CHINA_TIME

# Kept here rather than imported from .official_account: that module imports this one.
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
# WeChat refuses a request whose timestamp is more than 5 minutes away from its clock (401 SIGN_ERROR).
MAX_CLOCK_SKEW = 300
# 商家转账: user_name (encrypted) is required from 2000 元; WeChat's own sample validator refuses less than 0.3 元.
TRANSFER_NAME_REQUIRED_FROM = 200_000
TRANSFER_MIN_AMOUNT = 30
# The 转账场景 a merchant has been granted, with the 报备信息 each needs (exactly these, info_content ≤ 32
# characters) and the 用户收款感知 it may show. 1000 现金营销 is WeChat's documented example; 1005 佣金报酬 is the id
# merchants' platforms show (WeChat's sample code writes 1002): a merchant uses the id its platform shows.
DEFAULT_TRANSFER_SCENES = {
    "1000": {"report_types": ("活动名称", "奖励说明"), "perceptions": ("活动奖励", "现金奖励")},
    "1005": {"report_types": ("岗位类型", "报酬说明"), "perceptions": ("劳务报酬", "报销款", "企业补贴", "开工利是")},
}
# The documented error statuses for the codes ``transfer_err_code`` may inject.
TRANSFER_ERROR_STATUS = {"NOT_ENOUGH": 403, "NO_AUTH": 403, "FREQUENCY_LIMITED": 429, "SYSTEM_ERROR": 500,
                         "INVALID_REQUEST": 400, "PARAM_ERROR": 400}
TRANSFER_ERROR_MESSAGE = {
    # WeChat's own wording, as merchants have logged it.
    "NOT_ENOUGH": "商户运营账户资金不足，充值后可以原单号发起重试，请勿更换商户单号",
    "NO_AUTH": "商户无权限",
    "FREQUENCY_LIMITED": "频率超限",
    "SYSTEM_ERROR": "系统异常，请稍后重试",
}
TRADE_STATE_DESC = {"NOTPAY": "订单未支付", "SUCCESS": "支付成功", "CLOSED": "订单已关闭", "REFUND": "转入退款"}
# event type prefix → (resource.original_type and associated_data) ; event type → summary
NOTIFY_ORIGINAL_TYPE = {"TRANSACTION": "transaction", "REFUND": "refund", "MCHTRANSFER": "mch_payment"}
NOTIFY_SUMMARY = {
    "TRANSACTION.SUCCESS": "支付成功", "REFUND.SUCCESS": "退款成功", "REFUND.CLOSED": "退款关闭",
    "REFUND.ABNORMAL": "退款异常", "MCHTRANSFER.BILL.FINISHED": "商家转账单据终态通知",
}
OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
OUT_BILL_NO = re.compile(r"[0-9A-Za-z]{1,32}")
AUTHORIZATION_FIELD = re.compile(r'(\w+)="([^"]*)"')
ALPHANUMERIC = string.ascii_letters + string.digits


def china_now() -> datetime:
    return datetime.now(CHINA_TIME)


def rfc3339(moment: datetime | None = None) -> str:
    """v3 times: ``2015-05-20T13:29:35+08:00``."""
    return (moment or china_now()).isoformat(timespec="seconds")


def random_digits(count: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(count))


def compact_json(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _private_key(pem: str) -> rsa.RSAPrivateKey:
    return serialization.load_pem_private_key(pem.encode(), None)


def rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    """Base64 RSA-SHA256 (PKCS#1 v1.5): both the merchant's request signature and WeChat's answer signature."""
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def aes_gcm_encrypt(apiv3_key: str, plaintext: str, associated_data: str) -> tuple[str, str]:
    """AEAD_AES_256_GCM as WeChat uses it: the APIv3 key's bytes as key, a 12-character nonce used as its bytes,
    base64 of ciphertext plus tag. Returns (nonce, ciphertext)."""
    nonce = "".join(secrets.choice(ALPHANUMERIC) for _ in range(12))
    sealed = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext.encode(), associated_data.encode())
    return nonce, base64.b64encode(sealed).decode()


def aes_gcm_decrypt(apiv3_key: str, nonce: str, ciphertext: str, associated_data: str) -> str:
    return AESGCM(apiv3_key.encode()).decrypt(nonce.encode(), base64.b64decode(ciphertext),
                                              associated_data.encode()).decode()


def rsa_oaep_encrypt(public_key, text: str) -> str:
    """敏感信息加密: RSA-OAEP with SHA-1 (as WeChat documents it), base64."""
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    return base64.b64encode(public_key.encrypt(text.encode(), oaep)).decode()


def rsa_oaep_decrypt(private_key, ciphertext: str) -> str:
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    return private_key.decrypt(base64.b64decode(ciphertext, validate=True), oaep).decode()


def parse_authorization(value: str) -> dict | None:
    """The fields of ``WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",…``; None when it is not that scheme."""
    scheme, _, rest = (value or "").strip().partition(" ")
    if scheme != SIGNATURE_TYPE:
        return None
    return dict(AUTHORIZATION_FIELD.findall(rest))


class V3Error(Exception):
    """An error answer: WeChat's HTTP status and ``{"code", "message"}`` body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message


def param_error(message: str) -> V3Error:
    return V3Error(400, "PARAM_ERROR", message)


def required_error(name: str) -> V3Error:
    # WeChat's wording for a missing field, e.g. 输入源“/body/out_trade_no”映射到字段“商户订单号”必填性规则校验失败
    return param_error(f"输入源“/body/{name}”映射到字段“{name}”必填性规则校验失败，此字段为必填项")


@dataclass
class FakeV3Order:
    """An order as WeChat Pay keeps it after JSAPI下单."""
    out_trade_no: str
    appid: str
    description: str
    total: int
    openid: str
    notify_url: str
    prepay_id: str
    time_expire: str = ""
    attach: str = ""
    trade_state: str = "NOTPAY"  # NOTPAY → SUCCESS → REFUND (once a refund succeeds), or NOTPAY → CLOSED
    transaction_id: str = ""
    success_time: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(CHINA_TIME))


@dataclass(frozen=True)
class MerchantKeys:
    """The keys of a merchant made earlier and kept (the demo's, in its instance folder), for a fake that must
    accept the same merchant after a restart."""
    merchant_private_key_pem: str  # apiclient_key.pem
    merchant_serial_no: str
    public_key_private_pem: str  # the private half of the 微信支付公钥, which only WeChat holds
    public_key_id: str
    apiv3_key: str


class FakeWeChatPayV3:
    """WeChat Pay v3 for one merchant (``mch_id``) and its 公众号 (``app_id``).

    Keys, made once per instance unless ``keys`` are given (RSA-2048 key generation is the slow part, so build it
    once per test session or module and :meth:`reset` between tests):

    - the 微信支付公钥 pair (``public_key_id``, ``public_key_pem``): new merchants verify answers and notifies with
      it and encrypt sensitive fields for it;
    - a platform certificate (``platform_cert_serial``, ``platform_cert_pem``) for older merchants, served
      encrypted by ``GET /v3/certificates``;
    - the merchant API key WeChat's merchant platform issued (``merchant_private_key_pem``,
      ``merchant_serial_no``): the fake keeps the public half to check requests, our app signs with the private
      half; and the ``apiv3_key`` notifies are encrypted with.

    Switches (:meth:`reset` puts them back): ``signer`` picks the key answers and notifies are signed with
    ("public_key" or "platform_cert": a merchant moving from certificates to the public key receives both for a
    while); ``answer_forged`` signs answers with a stray key, as an impostor between us and WeChat would;
    ``refund_outcome`` is the status a refund reaches when accepted ("SUCCESS", or "PROCESSING" to hold it until
    :meth:`finish_refund`); ``transfer_err_code`` makes every new transfer bill fail with that code ("NOT_ENOUGH":
    the 运营账户 is short, "NO_AUTH", …); ``cancel_outcome`` is what a merchant's cancel reaches ("CANCELLED", or
    "CANCELING" to hold it until :meth:`finish_cancel`); ``transfer_scenes`` are the scenes the merchant has.
    """

    def __init__(self, app_id: str, mch_id: str, keys: MerchantKeys | None = None):
        self.app_id = app_id
        self.mch_id = mch_id
        self._lock = threading.Lock()

        self._public_key_private = _private_key(keys.public_key_private_pem) if keys else new_rsa_key()
        self.public_key_id = keys.public_key_id if keys else "PUB_KEY_ID_" + random_digits(32)
        self.public_key_pem = self._public_key_private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

        self._platform_private = new_rsa_key()
        serial = secrets.randbits(156) | (1 << 156)  # 40 hex digits, as WeChat's serials are
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com sign")])
        now = datetime.now(timezone.utc)
        self._platform_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._platform_private.public_key()).serial_number(serial)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=5 * 365))
            .sign(self._platform_private, hashes.SHA256())
        )
        self.platform_cert_serial = format(serial, "X")
        self.platform_cert_pem = self._platform_cert.public_bytes(serialization.Encoding.PEM).decode()

        merchant_key = _private_key(keys.merchant_private_key_pem) if keys else new_rsa_key()
        self._merchant_public_key = merchant_key.public_key()
        self.merchant_serial_no = keys.merchant_serial_no if keys else secrets.token_hex(20).upper()
        self.merchant_private_key_pem = merchant_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        self.apiv3_key = keys.apiv3_key if keys else "".join(secrets.choice(ALPHANUMERIC) for _ in range(32))

        self._stray_key = new_rsa_key()  # the impostor's: signs forged answers and 签名探测 notifies

        self.orders: dict[str, FakeV3Order] = {}
        self.refunds: dict[str, dict] = {}  # out_refund_no → refund (see _refund_answer)
        self.bills: dict[str, dict] = {}  # out_bill_no → transfer bill, with "user_name_plain" for assertions
        self.requests: list[tuple[str, str, dict | None]] = []  # (method, path with query, JSON body or None)
        self.reset()

    def reset(self) -> None:
        """Forget what one test did (orders, refunds, bills, requests, switches), keeping the keys."""
        with self._lock:
            self.orders.clear()
            self.refunds.clear()
            self.bills.clear()
            self.requests.clear()
            self.signer = "public_key"
            self.answer_forged = False
            self.refund_outcome = "SUCCESS"
            self.transfer_err_code = ""
            self.cancel_outcome = "CANCELLED"
            self.transfer_scenes = {scene: dict(rules) for scene, rules in DEFAULT_TRANSFER_SCENES.items()}

    def calls(self, path: str) -> list[dict | None]:
        """The JSON bodies of the requests to ``path`` (query string ignored), oldest first."""
        return [body for _method, full, body in list(self.requests) if urlsplit(full).path == path]

    # --- the wire -----------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        """Answer one request: ``path`` is the request target with its query string, exactly as sent (it is part
        of what the merchant signed). Returns (status, headers, body) ready to send."""
        method = method.upper()
        lowered = {key.lower(): value for key, value in headers.items()}
        try:
            text = body.decode("utf-8") if body else ""
        except UnicodeDecodeError:
            text = None
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = None
        with self._lock:
            self.requests.append((method, path, payload))
        try:
            if text is None:
                raise param_error("请求体不是UTF-8编码")
            self._check_signature(method, path, lowered, text)
            if text and not isinstance(payload, dict):
                raise param_error("请求体不是合法的JSON对象")
            status, answer = self._route(method, path, lowered, payload or {})
        except V3Error as error:
            status, answer = error.status, {"code": error.code, "message": error.message}
        return self._signed_answer(status, answer)

    def _check_signature(self, method: str, path: str, headers: dict, text: str) -> None:
        """签名认证 as WeChat checks it; every failure is 401 SIGN_ERROR."""
        fields = parse_authorization(headers.get("authorization", ""))
        if fields is None or not all(fields.get(k) for k in ("mchid", "nonce_str", "signature", "timestamp",
                                                              "serial_no")):
            raise V3Error(401, "SIGN_ERROR", "Authorization格式错误")
        if fields["mchid"] != self.mch_id:
            raise V3Error(401, "SIGN_ERROR", "商户号与签名信息不匹配")
        if fields["serial_no"].upper() != self.merchant_serial_no:
            raise V3Error(401, "SIGN_ERROR", "商户API证书序列号有误")
        if not fields["timestamp"].isdigit() or abs(time.time() - int(fields["timestamp"])) > MAX_CLOCK_SKEW:
            raise V3Error(401, "SIGN_ERROR", "签名时间戳已过期")
        message = f"{method}\n{path}\n{fields['timestamp']}\n{fields['nonce_str']}\n{text}\n"
        try:
            signature = base64.b64decode(fields["signature"], validate=True)
            self._merchant_public_key.verify(signature, message.encode(), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            raise V3Error(401, "SIGN_ERROR", "错误的签名，验签失败") from None

    def _signing_key(self, signer: str):
        if signer == "public_key":
            return self._public_key_private, self.public_key_id
        if signer == "platform_cert":
            return self._platform_private, self.platform_cert_serial
        raise ValueError(f"signer must be 'public_key' or 'platform_cert', not {signer!r}")

    def _signature_headers(self, text: str, *, signer: str, forge: bool, timestamp: int | None = None) -> dict:
        """WeChat's answer and notify signature: RSA-SHA256 over ``timestamp\\nnonce\\nbody\\n``. A forged one names
        the genuine serial but is signed by a stray key."""
        key, serial = self._signing_key(signer)
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = "".join(secrets.choice(ALPHANUMERIC) for _ in range(32))
        signature = rsa_sign(self._stray_key if forge else key, f"{stamp}\n{nonce}\n{text}\n")
        return {"Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce, "Wechatpay-Serial": serial,
                "Wechatpay-Signature-Type": SIGNATURE_TYPE, "Wechatpay-Signature": signature}

    def _signed_answer(self, status: int, answer: dict | None) -> tuple[int, dict, bytes]:
        body = b"" if answer is None else compact_json(answer).encode()
        headers = self._signature_headers(body.decode(), signer=self.signer, forge=self.answer_forged)
        headers["Request-ID"] = str(uuid.uuid4()).upper()
        if answer is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        return status, headers, body

    def _route(self, method: str, path: str, headers: dict, payload: dict) -> tuple[int, dict | None]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = parts.path
        with self._lock:
            if method == "POST" and route == "/v3/pay/transactions/jsapi":
                return 200, self._jsapi(payload)
            if method == "GET" and (m := re.fullmatch(r"/v3/pay/transactions/out-trade-no/([^/]+)", route)):
                return 200, self._query_order(self.orders.get(unquote(m[1])), query)
            if method == "GET" and (m := re.fullmatch(r"/v3/pay/transactions/id/([^/]+)", route)):
                number = unquote(m[1])
                order = next((o for o in self.orders.values() if o.transaction_id == number), None)
                return 200, self._query_order(order, query)
            if method == "POST" and (m := re.fullmatch(r"/v3/pay/transactions/out-trade-no/([^/]+)/close", route)):
                return self._close(unquote(m[1]), payload), None
            if method == "POST" and route == "/v3/refund/domestic/refunds":
                return 200, self._refund(payload)
            if method == "GET" and (m := re.fullmatch(r"/v3/refund/domestic/refunds/([^/]+)", route)):
                refund = self.refunds.get(unquote(m[1]))
                if refund is None:
                    raise V3Error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
                return 200, self._refund_answer(refund)
            if method == "POST" and route == "/v3/fund-app/mch-transfer/transfer-bills":
                return 200, self._create_bill(payload, headers)
            if method == "GET" and (m := re.fullmatch(
                    r"/v3/fund-app/mch-transfer/transfer-bills/(out-bill-no|transfer-bill-no)/([^/]+)", route)):
                return 200, self._bill_answer(self._find_bill(m[1], unquote(m[2])))
            if method == "POST" and (m := re.fullmatch(
                    r"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/([^/]+)/cancel", route)):
                return 200, self._cancel_bill(unquote(m[1]))
            if method == "GET" and route == "/v3/certificates":
                return 200, self._certificates()
        raise V3Error(404, "NOT_FOUND", "请求的资源不存在")

    # --- JSAPI下单, 查询订单, 关闭订单 ------------------------------------------------------------------
    def _jsapi(self, payload: dict) -> dict:
        for name in ("appid", "mchid", "description", "out_trade_no", "notify_url", "amount", "payer"):
            if not payload.get(name):
                raise required_error(name)
        amount, payer = payload["amount"], payload["payer"]
        if not isinstance(amount, dict) or not isinstance(amount.get("total"), int) or amount["total"] < 1:
            raise param_error("amount.total 须为大于0的整数（单位：分）")
        if amount.get("currency", "CNY") != "CNY":
            raise param_error("amount.currency 仅支持CNY")
        if not isinstance(payer, dict) or not payer.get("openid"):
            raise required_error("payer.openid")
        if payload["mchid"] != self.mch_id:
            raise param_error("mchid与请求的商户号不一致")
        if payload["appid"] != self.app_id:
            raise V3Error(400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
        if not isinstance(payload["description"], str) or len(payload["description"]) > 127:
            raise param_error("description 不能超过127个字符")
        if not isinstance(payload["out_trade_no"], str) or not OUT_TRADE_NO.fullmatch(payload["out_trade_no"]):
            raise param_error("out_trade_no 须为6-32个字符，只能是数字、大小写字母_-|*")
        time_expire = payload.get("time_expire") or ""
        if time_expire:
            # A time_expire earlier than one minute from now is moved to one minute from now, not refused (doc).
            try:
                if datetime.fromisoformat(time_expire).tzinfo is None:
                    raise ValueError
            except (TypeError, ValueError):
                raise param_error("time_expire 须为rfc3339格式，如2018-06-08T10:34:56+08:00") from None
        sent = {"description": payload["description"], "total": amount["total"], "openid": payer["openid"],
                "time_expire": time_expire}
        order = self.orders.get(payload["out_trade_no"])
        if order is not None:
            if order.trade_state in ("SUCCESS", "REFUND"):
                raise V3Error(400, "ORDERPAID", "该订单已支付")  # not in today's error table: see the report
            if order.trade_state == "CLOSED":
                raise V3Error(400, "ORDER_CLOSED", "订单已关闭")
            kept = {"description": order.description, "total": order.total, "openid": order.openid,
                    "time_expire": order.time_expire}
            # Re-ordering with the original parameters is how a merchant gets the prepay_id again; anything changed
            # (the amount, the description, the payer — and time_expire, which "不允许后续修改") is refused.
            if kept != sent:
                raise V3Error(403, "OUT_TRADE_NO_USED", "商户订单号重复")
        else:
            order = FakeV3Order(
                out_trade_no=payload["out_trade_no"], appid=payload["appid"], description=payload["description"],
                total=amount["total"], openid=payer["openid"], notify_url=payload["notify_url"],
                prepay_id="wx" + china_now().strftime("%d%H%M%S") + secrets.token_hex(13),
                time_expire=time_expire, attach=payload.get("attach") or "",
            )
            self.orders[order.out_trade_no] = order
        return {"prepay_id": order.prepay_id}

    def _query_order(self, order: FakeV3Order | None, query: dict) -> dict:
        if not query.get("mchid"):
            raise param_error("输入源“/uri_template/mchid”映射到字段“直连商户号”必填性规则校验失败，此字段为必填项")
        if query["mchid"] != self.mch_id:
            raise param_error("mchid与请求的商户号不一致")
        if order is None:
            raise V3Error(404, "ORDER_NOT_EXIST", "订单不存在")
        return self._transaction(order)

    def _transaction(self, order: FakeV3Order, *, total: int | None = None, trade_state: str | None = None) -> dict:
        """The transaction object of 查询订单 and of the pay notify: the payment details only once there was one."""
        state = trade_state or order.trade_state
        answer = {"appid": order.appid, "mchid": self.mch_id, "out_trade_no": order.out_trade_no,
                  "trade_state": state, "trade_state_desc": TRADE_STATE_DESC.get(state, state),
                  "amount": {"total": order.total if total is None else total, "currency": "CNY",
                             "payer_currency": "CNY"}}
        if order.attach:
            answer["attach"] = order.attach
        if order.transaction_id:
            paid = order.total if total is None else total
            answer |= {"transaction_id": order.transaction_id, "trade_type": "JSAPI", "bank_type": "OTHERS",
                       "success_time": order.success_time, "payer": {"openid": order.openid}}
            answer["amount"]["payer_total"] = paid
        return answer

    def _close(self, out_trade_no: str, payload: dict) -> int:
        if not payload.get("mchid"):
            raise required_error("mchid")
        if payload["mchid"] != self.mch_id:
            raise param_error("mchid与请求的商户号不一致")
        order = self.orders.get(out_trade_no)
        if order is None or order.trade_state == "CLOSED":
            return 204  # WeChat answers 204 for an unknown or already closed number as well
        if order.trade_state in ("SUCCESS", "REFUND"):
            raise V3Error(400, "ORDERPAID", "订单已支付")  # not documented for v3: see the report
        order.trade_state = "CLOSED"
        return 204

    # --- 退款 -----------------------------------------------------------------------------------------
    def _refund(self, payload: dict) -> dict:
        if not payload.get("out_refund_no"):
            raise required_error("out_refund_no")
        if not (payload.get("out_trade_no") or payload.get("transaction_id")):
            raise required_error("out_trade_no")
        amount = payload.get("amount")
        if not isinstance(amount, dict) or not all(isinstance(amount.get(k), int) for k in ("refund", "total")):
            raise required_error("amount")
        if amount.get("currency", "CNY") != "CNY":
            raise param_error("amount.currency 仅支持CNY")
        if payload.get("out_trade_no"):
            order = self.orders.get(payload["out_trade_no"])
        else:
            order = next((o for o in self.orders.values() if o.transaction_id == payload["transaction_id"]), None)
        # Documented: RESOURCE_NOT_EXISTS also covers an order that was never paid.
        if order is None or not order.transaction_id:
            raise V3Error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if amount["total"] != order.total:
            raise V3Error(400, "INVALID_REQUEST", "订单金额与实际金额不一致")
        earlier = self.refunds.get(payload["out_refund_no"])
        if earlier is not None:  # the same out_refund_no refunds once; WeChat answers that refund again
            if earlier["out_trade_no"] != order.out_trade_no or earlier["refund"] != amount["refund"]:
                raise V3Error(400, "INVALID_REQUEST", "同一商户退款单号的退款参数与之前请求不一致")
            return self._refund_answer(earlier)
        # A closed refund gave nothing back; a processing or abnormal one still holds its amount.
        refunded = sum(r["refund"] for r in self.refunds.values()
                       if r["out_trade_no"] == order.out_trade_no and r["status"] != "CLOSED")
        if amount["refund"] < 1:
            raise param_error("amount.refund 须为大于0的整数（单位：分）")
        if refunded + amount["refund"] > order.total:
            # NOT_ENOUGH (403) is the merchant's balance being short; too large a refund breaks a business rule.
            raise V3Error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        refund = {
            "refund_id": "50" + random_digits(30), "out_refund_no": payload["out_refund_no"],
            "out_trade_no": order.out_trade_no, "transaction_id": order.transaction_id, "refund": amount["refund"],
            "total": order.total, "reason": payload.get("reason") or "", "notify_url": payload.get("notify_url") or "",
            "status": self.refund_outcome, "create_time": rfc3339(), "success_time": "",
        }
        self.refunds[refund["out_refund_no"]] = refund
        self._refund_moved(refund)
        return self._refund_answer(refund)

    def _refund_moved(self, refund: dict) -> None:
        if refund["status"] == "SUCCESS":
            refund["success_time"] = refund["success_time"] or rfc3339()
            self.orders[refund["out_trade_no"]].trade_state = "REFUND"

    @staticmethod
    def _refund_answer(refund: dict) -> dict:
        answer = {
            "refund_id": refund["refund_id"], "out_refund_no": refund["out_refund_no"],
            "transaction_id": refund["transaction_id"], "out_trade_no": refund["out_trade_no"],
            "channel": "ORIGINAL", "user_received_account": "支付用户零钱", "create_time": refund["create_time"],
            "status": refund["status"], "funds_account": "AVAILABLE",
            "amount": {"total": refund["total"], "refund": refund["refund"], "payer_total": refund["total"],
                       "payer_refund": refund["refund"], "settlement_total": refund["total"],
                       "settlement_refund": refund["refund"], "discount_refund": 0, "currency": "CNY"},
        }
        if refund["success_time"]:
            answer["success_time"] = refund["success_time"]
        return answer

    # --- 商家转账 ----------------------------------------------------------------------------------------
    def _create_bill(self, payload: dict, headers: dict) -> dict:
        for name in ("appid", "out_bill_no", "transfer_scene_id", "openid", "transfer_amount", "transfer_remark"):
            if payload.get(name) in (None, ""):
                raise required_error(name)
        if payload["appid"] != self.app_id:
            raise V3Error(400, "INVALID_REQUEST", "appid与商户号不存在绑定关系")
        if not isinstance(payload["out_bill_no"], str) or not OUT_BILL_NO.fullmatch(payload["out_bill_no"]):
            raise param_error("out_bill_no 只能由数字、大小写字母组成，最长32位")
        amount = payload["transfer_amount"]
        if not isinstance(amount, int) or amount < TRANSFER_MIN_AMOUNT:
            raise param_error("转账金额不能小于0.3元")
        remark = payload["transfer_remark"]
        if not isinstance(remark, str) or len(remark) > 32:
            raise param_error("transfer_remark 最多允许32个字符")
        scene = self.transfer_scenes.get(str(payload["transfer_scene_id"]))
        if scene is None:
            raise V3Error(400, "INVALID_REQUEST", "你尚未获取该转账场景")
        infos = payload.get("transfer_scene_report_infos")
        if not isinstance(infos, list) or not all(isinstance(i, dict) for i in infos) or \
                sorted(i.get("info_type") or "" for i in infos) != sorted(scene["report_types"]):
            raise param_error("需传入转账场景报备信息,请检查")
        for info in infos:
            content = info.get("info_content")
            if not isinstance(content, str) or not content or len(content) > 32:
                raise param_error(f"转账场景报备信息“{info['info_type']}”的内容须为1-32个字符")
        perception = payload.get("user_recv_perception")
        if perception and perception not in scene["perceptions"]:
            raise V3Error(400, "INVALID_REQUEST", "暂不支持展示当前传入的用户收款感知")
        user_name = payload.get("user_name")
        if user_name in (None, ""):
            if amount >= TRANSFER_NAME_REQUIRED_FROM:
                raise param_error("转账金额大于等于2000元时，收款用户姓名user_name必填")
            name_plain = ""
        else:
            name_plain = self._decrypt_sensitive(user_name, headers.get("wechatpay-serial", ""))
        sent = {"appid": payload["appid"], "transfer_scene_id": str(payload["transfer_scene_id"]),
                "openid": payload["openid"], "transfer_amount": amount, "transfer_remark": remark,
                "user_recv_perception": perception or "", "notify_url": payload.get("notify_url") or "",
                "transfer_scene_report_infos": sorted((i["info_type"], i["info_content"]) for i in infos),
                "user_name_plain": name_plain}
        bill = self.bills.get(payload["out_bill_no"])
        if bill is not None:
            # The same out_bill_no with the same parameters is a retry and gets the same bill. Other parameters are
            # refused; WeChat documents the rule ("重入时请求参数需要保持一致") but not the code: see the report.
            if any(bill[name] != value for name, value in sent.items()):
                raise V3Error(400, "INVALID_REQUEST", "商户单号重复，且与原单请求参数不一致")
            return self._created_answer(bill)
        if self.transfer_err_code:
            code = self.transfer_err_code
            raise V3Error(TRANSFER_ERROR_STATUS.get(code, 400), code, TRANSFER_ERROR_MESSAGE.get(code, code))
        now = rfc3339()
        bill = {"mch_id": self.mch_id, "out_bill_no": payload["out_bill_no"],
                "transfer_bill_no": "1330" + random_digits(36), "state": "WAIT_USER_CONFIRM", "fail_reason": "",
                "package_info": secrets.token_urlsafe(48), "create_time": now, "update_time": now, **sent}
        self.bills[bill["out_bill_no"]] = bill
        return self._created_answer(bill)

    def _decrypt_sensitive(self, ciphertext, serial: str) -> str:
        """A field encrypted (RSA-OAEP/SHA-1) for the key ``Wechatpay-Serial`` names: the 微信支付公钥 or the
        platform certificate."""
        if not serial:
            raise param_error("请求含加密字段时，须在Wechatpay-Serial中传入加密所用的微信支付公钥ID或平台证书序列号")
        if serial == self.public_key_id:
            key = self._public_key_private
        elif re.fullmatch(r"[0-9A-Fa-f]+", serial) and int(serial, 16) == int(self.platform_cert_serial, 16):
            key = self._platform_private
        else:
            raise param_error("Wechatpay-Serial 不是有效的微信支付公钥ID或平台证书序列号")
        try:
            return rsa_oaep_decrypt(key, ciphertext)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise param_error("敏感字段解密失败，请使用Wechatpay-Serial对应的公钥加密") from None

    @staticmethod
    def _created_answer(bill: dict) -> dict:
        answer = {"out_bill_no": bill["out_bill_no"], "transfer_bill_no": bill["transfer_bill_no"],
                  "create_time": bill["create_time"], "state": bill["state"]}
        if bill["state"] == "WAIT_USER_CONFIRM":  # package_info is only given while the member can confirm
            answer["package_info"] = bill["package_info"]
        if bill["fail_reason"]:
            answer["fail_reason"] = bill["fail_reason"]
        return answer

    def _find_bill(self, kind: str, number: str) -> dict:
        if kind == "out-bill-no":
            bill = self.bills.get(number)
        else:
            bill = next((b for b in self.bills.values() if b["transfer_bill_no"] == number), None)
        if bill is None:
            raise V3Error(404, "NOT_FOUND", "记录不存在")
        return bill

    def _bill_answer(self, bill: dict) -> dict:
        answer = {name: bill[name] for name in ("mch_id", "out_bill_no", "transfer_bill_no", "appid", "state",
                                                "transfer_amount", "transfer_remark", "openid", "create_time",
                                                "update_time")}
        if bill["fail_reason"]:
            answer["fail_reason"] = bill["fail_reason"]
        return answer

    def _cancel_bill(self, out_bill_no: str) -> dict:
        """撤销转账: only before the member confirmed; the answer says the cancel was accepted (CANCELING) or done."""
        bill = self._find_bill("out-bill-no", out_bill_no)
        if bill["state"] in ("ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM"):
            self._move_bill(bill, self.cancel_outcome)
        elif bill["state"] not in ("CANCELING", "CANCELLED"):  # asking again answers the cancel again
            raise V3Error(400, "INVALID_REQUEST", f"转账单状态为{bill['state']}，不支持撤销")
        return {"out_bill_no": bill["out_bill_no"], "transfer_bill_no": bill["transfer_bill_no"],
                "state": bill["state"], "update_time": bill["update_time"]}

    @staticmethod
    def _move_bill(bill: dict, state: str, fail_reason: str = "") -> None:
        bill["state"] = state
        bill["fail_reason"] = fail_reason
        bill["update_time"] = rfc3339()

    def _certificates(self) -> dict:
        """下载平台证书: the certificate PEM, AES-GCM under the APIv3 key with associated data "certificate"."""
        nonce, ciphertext = aes_gcm_encrypt(self.apiv3_key, self.platform_cert_pem, "certificate")
        return {"data": [{
            "serial_no": self.platform_cert_serial,
            "effective_time": rfc3339(self._platform_cert.not_valid_before_utc.astimezone(CHINA_TIME)),
            "expire_time": rfc3339(self._platform_cert.not_valid_after_utc.astimezone(CHINA_TIME)),
            "encrypt_certificate": {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce,
                                    "associated_data": "certificate", "ciphertext": ciphertext},
        }]}

    # --- test helpers: what WeChat POSTs to the merchant's notify_url --------------------------------
    def notification(self, event_type: str, resource: dict, *, signer: str | None = None, forge: bool = False,
                     timestamp: int | None = None, apiv3_key: str | None = None,
                     notify_id: str | None = None) -> tuple[dict, bytes]:
        """A v3 notify as WeChat POSTs it: ``(headers, body)``. ``resource`` is encrypted (AEAD_AES_256_GCM) under
        the APIv3 key — ``apiv3_key`` to use another one —, the body signed with ``signer``'s key (default: the
        current ``signer``) at ``timestamp`` (default: now); ``forge`` signs with a stray key, as WeChat's own
        签名探测 does to check merchants reject it. ``notify_id`` repeats an earlier notify's id (a resend)."""
        original_type = NOTIFY_ORIGINAL_TYPE.get(event_type.split(".")[0], "transaction")
        nonce, ciphertext = aes_gcm_encrypt(apiv3_key or self.apiv3_key, compact_json(resource), original_type)
        text = compact_json({
            "id": notify_id or str(uuid.uuid4()), "create_time": rfc3339(), "resource_type": "encrypt-resource",
            "event_type": event_type, "summary": NOTIFY_SUMMARY.get(event_type, event_type),
            "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": ciphertext, "associated_data": original_type, "nonce": nonce},
        })
        headers = {"Content-Type": "application/json",
                   **self._signature_headers(text, signer=signer or self.signer, forge=forge, timestamp=timestamp)}
        return headers, text.encode()

    def pay(self, out_trade_no: str, *, total: int | None = None) -> tuple[dict, bytes]:
        """The member pays in WeChat: the order becomes SUCCESS and this is the TRANSACTION.SUCCESS notify.
        Paying again gives the same notify, as WeChat's resends. ``total`` changes the amount in the notify only."""
        with self._lock:
            order = self.orders[out_trade_no]
            if order.trade_state == "CLOSED":
                raise ValueError(f"order {out_trade_no} is closed; WeChat would not let the member pay it")
            # A time_expire under a minute after the order was placed counts as one minute (documented).
            if order.time_expire and china_now() > max(datetime.fromisoformat(order.time_expire),
                                                       order.created + timedelta(minutes=1)):
                raise ValueError(f"order {out_trade_no} expired at {order.time_expire}; it can no longer be paid")
            if order.trade_state == "NOTPAY":
                order.trade_state = "SUCCESS"
                order.transaction_id = "4200" + random_digits(24)
                order.success_time = rfc3339()
            resource = self._transaction(order, total=total, trade_state="SUCCESS")
        return self.notification("TRANSACTION.SUCCESS", resource)

    def finish_refund(self, out_refund_no: str, status: str = "SUCCESS") -> tuple[dict, bytes]:
        """WeChat finishes a refund — SUCCESS, CLOSED, or ABNORMAL (not final: the merchant resolves it with
        异常退款) — and POSTs REFUND.<status>."""
        if status not in ("SUCCESS", "CLOSED", "ABNORMAL"):
            raise ValueError(f"a refund finishes as SUCCESS, CLOSED or ABNORMAL, not {status!r}")
        with self._lock:
            refund = self.refunds[out_refund_no]
            refund["status"] = status
            self._refund_moved(refund)
        return self.refund_notification(out_refund_no)

    def refund_notification(self, out_refund_no: str, status: str | None = None) -> tuple[dict, bytes]:
        """The refund-result notify for a refund's current status (or ``status``, to tamper with it)."""
        with self._lock:
            refund = dict(self.refunds[out_refund_no])
        refund_status = status or refund["status"]
        resource = {"mchid": self.mch_id, "out_trade_no": refund["out_trade_no"],
                    "transaction_id": refund["transaction_id"], "out_refund_no": out_refund_no,
                    "refund_id": refund["refund_id"], "refund_status": refund_status,
                    "user_received_account": "支付用户零钱",
                    "amount": {"total": refund["total"], "refund": refund["refund"], "payer_total": refund["total"],
                               "payer_refund": refund["refund"]}}
        if refund_status == "SUCCESS":
            resource["success_time"] = refund["success_time"] or rfc3339()
        return self.notification(f"REFUND.{refund_status}", resource)

    def confirm_bill(self, out_bill_no: str, *, fail_reason: str | None = None) -> tuple[dict, bytes]:
        """The member confirms in WeChat: WAIT_USER_CONFIRM → TRANSFERING → SUCCESS, or → FAIL with
        ``fail_reason`` (ACCOUNT_FROZEN, REAL_NAME_CHECK_FAIL, NAME_NOT_CORRECT, …). Returns the FINISHED notify."""
        with self._lock:
            bill = self.bills[out_bill_no]
            if bill["state"] != "WAIT_USER_CONFIRM":
                raise ValueError(f"bill {out_bill_no} is {bill['state']}; only WAIT_USER_CONFIRM can be confirmed")
            self._move_bill(bill, "FAIL" if fail_reason else "SUCCESS", fail_reason or "")
        return self.bill_notification(out_bill_no)

    def cancel_bill_by_user(self, out_bill_no: str) -> None:
        """The member leaves the confirmation page without confirming. WeChat documents no "decline" for the member:
        the bill stays WAIT_USER_CONFIRM (the merchant may still cancel it) until it closes after about 24 hours
        (:meth:`expire_bill`). Nothing is notified, so this returns None."""
        with self._lock:
            bill = self.bills[out_bill_no]
            if bill["state"] != "WAIT_USER_CONFIRM":
                raise ValueError(f"bill {out_bill_no} is {bill['state']}; the member has nothing to confirm")

    def expire_bill(self, out_bill_no: str) -> tuple[dict, bytes]:
        """Nobody confirmed for about 24 hours: WeChat closes the bill as FAIL, fail_reason OVERDUE_CLOSE."""
        with self._lock:
            bill = self.bills[out_bill_no]
            if bill["state"] != "WAIT_USER_CONFIRM":
                raise ValueError(f"bill {out_bill_no} is {bill['state']}; only an unconfirmed bill expires")
            self._move_bill(bill, "FAIL", "OVERDUE_CLOSE")
        return self.bill_notification(out_bill_no)

    def finish_cancel(self, out_bill_no: str) -> tuple[dict, bytes]:
        """A cancel held as CANCELING (``cancel_outcome = "CANCELING"``) completes: CANCELLED, notified."""
        with self._lock:
            bill = self.bills[out_bill_no]
            if bill["state"] != "CANCELING":
                raise ValueError(f"bill {out_bill_no} is {bill['state']}, not CANCELING")
            self._move_bill(bill, "CANCELLED")
        return self.bill_notification(out_bill_no)

    def bill_notification(self, out_bill_no: str, *, signer: str | None = None,
                          forge: bool = False) -> tuple[dict, bytes]:
        """The MCHTRANSFER.BILL.FINISHED notify for a bill's current state (again, for a resend)."""
        with self._lock:
            bill = dict(self.bills[out_bill_no])
        resource = {name: bill[name] for name in ("out_bill_no", "transfer_bill_no", "state", "mch_id",
                                                  "transfer_amount", "openid", "create_time", "update_time")}
        if bill["fail_reason"]:
            resource["fail_reason"] = bill["fail_reason"]
        return self.notification("MCHTRANSFER.BILL.FINISHED", resource, signer=signer, forge=forge)

    def decrypt_notification(self, body: bytes, *, apiv3_key: str | None = None) -> dict:
        """The decrypted resource of a notify body (for tests that look inside one without a client)."""
        resource = json.loads(body)["resource"]
        try:
            return json.loads(aes_gcm_decrypt(apiv3_key or self.apiv3_key, resource["nonce"], resource["ciphertext"],
                                              resource["associated_data"]))
        except InvalidTag:
            raise ValueError("the notify was not encrypted under this APIv3 key") from None
