"""A small, real fake of WeChat's Official Account servers and WeChat Pay API v2, served over HTTP on 127.0.0.1
(``server.py``): the tests run wechatpy's own code end to end against it, and the demo talks to it as its WeChat.

It plays both halves of OAuth2 web login: the browser-facing authorize page (which "asks the user" — the
test decides who — and redirects back with a single-use code) and the server-to-server API (code →
access token → user info), with WeChat's error codes for bad input.

It also answers the JS-SDK calls (client_credential access token → jsapi ticket), the custom menu
(菜单创建: kept as ``menu``), template messages (模板消息: kept in ``template_messages``, with switches for
WeChat's transient and permanent errors) and WeChat Pay API v2
(统一下单, 查询订单, 关闭订单, 申请退款 and 查询退款 with the refund-result notify, 企业付款 and its query) in XML.
The fake stands for WeChat, so it parses and signs XML with its
own small implementation of the documented algorithm and does not trust our adapter: every pay request's
MD5 signature is checked with the merchant key, and every answer is signed as WeChat signs it.
"""
import base64
import hashlib
import json
import secrets
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ...china_time import CHINA_TIME
from .pay_v3 import FakeWeChatPayV3

MENU_VIEW_TYPES = {"view"}
MENU_KEY_TYPES = {"click", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album", "pic_weixin",
                  "location_select"}


def pay_sign(fields: dict, key: str) -> str:
    """WeChat Pay v2 MD5 signature: non-empty fields but ``sign``, sorted, ``k=v&…&key=KEY``, upper-case hex."""
    pairs = [f"{k}={fields[k]}" for k in sorted(fields) if k != "sign" and fields[k] not in (None, "")]
    return hashlib.md5("&".join([*pairs, f"key={key}"]).encode()).hexdigest().upper()


def to_xml(fields: dict) -> bytes:
    """WeChat's flat ``<xml>`` document; numbers bare, text in CDATA."""
    parts = []
    for k, v in fields.items():
        text = str(v)
        parts.append(f"<{k}>{text}</{k}>" if isinstance(v, int) else f"<{k}><![CDATA[{text}]]></{k}>")
    return ("<xml>" + "".join(parts) + "</xml>").encode()


def from_xml(body: bytes) -> dict:
    """The children of a flat ``<xml>`` document; ValueError for anything else."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(str(exc)) from exc
    if root.tag != "xml":
        raise ValueError("root is not <xml>")
    return {child.tag: child.text or "" for child in root}


def signed_xml(fields: dict, key: str) -> bytes:
    fields = {k: v for k, v in fields.items() if v not in (None, "")}
    fields["nonce_str"] = secrets.token_hex(16)
    fields["sign"] = pay_sign(fields, key)
    return to_xml(fields)


def invalid_token() -> dict:
    return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}


def menu_button_error(button, *, sub: bool) -> dict | None:
    """WeChat's error for one leaf button (a top-level one without sub-buttons, or a sub-button), else None."""
    name_limit, codes = (60, (40024, 40025, 40026, 40027)) if sub else (16, (40017, 40018, 40019, 40020))
    type_code, name_code, key_code, url_code = codes
    name = button.get("name") if isinstance(button, dict) else None
    if not (isinstance(name, str) and 1 <= len(name.encode()) <= name_limit):
        return {"errcode": name_code, "errmsg": "invalid button name size"}
    kind = button.get("type")
    if kind in MENU_VIEW_TYPES:
        url = button.get("url")
        if not (isinstance(url, str) and url.startswith(("http://", "https://")) and len(url.encode()) <= 1024):
            return {"errcode": url_code, "errmsg": "invalid button url size"}
    elif kind in MENU_KEY_TYPES:
        key = button.get("key")
        if not (isinstance(key, str) and 1 <= len(key.encode()) <= 128):
            return {"errcode": key_code, "errmsg": "invalid button key size"}
    else:
        return {"errcode": type_code, "errmsg": "invalid button type"}
    return None


def china_now() -> datetime:
    return datetime.now(CHINA_TIME)


def new_transaction_id() -> str:
    return "4200" + "".join(secrets.choice("0123456789") for _ in range(24))


@dataclass
class FakeWeChatUser:
    openid: str
    nickname: str
    headimgurl: str = ""
    unionid: str | None = None
    is_snapshotuser: bool = False


@dataclass
class FakeOrder:
    """An order as WeChat Pay keeps it after 统一下单."""
    out_trade_no: str
    total_fee: int
    openid: str
    notify_url: str
    body: str
    prepay_id: str
    trade_state: str = "NOTPAY"  # NOTPAY → SUCCESS → REFUND, or NOTPAY → CLOSED
    transaction_id: str = ""
    time_end: str = ""
    refunds: dict[str, tuple[str, int]] = field(default_factory=dict)  # out_refund_no → (refund_id, refund_fee)
    # out_refund_no → PROCESSING, SUCCESS, REFUNDCLOSE or CHANGE. A closed refund gives nothing back and no longer
    # counts against the amount paid; an abnormal one (CHANGE) still does, until the merchant deals with it.
    refund_states: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeWeChat:
    app_id: str
    app_secret: str
    base_url: str = ""
    mch_id: str = ""
    mch_key: str = ""
    # Who is "using WeChat" when the browser reaches the authorize page.
    current_user: FakeWeChatUser | None = None
    # When set, every API call answers this HTTP status (an outage).
    outage_status: int | None = None
    requests: list[tuple[str, dict]] = field(default_factory=list)
    # The next jsapi ticket requests answer these errcodes, one each ([40001]: the token expired once).
    ticket_errcodes: list[int] = field(default_factory=list)
    issued_tickets: list[str] = field(default_factory=list)
    orders: dict[str, FakeOrder] = field(default_factory=dict)
    # 企业付款: partner_trade_no → {payment_no, amount, openid, desc, spbill_create_ip, status}; a set err code
    # makes every transfer fail. A number sent again with other parameters answers FATAL_ERROR, as at WeChat.
    transfers: dict[str, dict] = field(default_factory=dict)
    transfer_err_code: str = ""
    # The state a refund reaches as soon as WeChat accepts it: SUCCESS (a balance refund, done at once), or
    # PROCESSING to hold it until the test calls ``finish_refund``.
    refund_outcome: str = "SUCCESS"
    # When set, pay answers are signed with this key, not the merchant's: an impostor between us and WeChat.
    answer_key: str | None = None
    # The last menu menu/create accepted.
    menu: dict | None = None
    # Template messages template/send accepted: the JSON sent, plus the "msgid" answered.
    template_messages: list[dict] = field(default_factory=list)
    # While > 0, each template/send call uses one up and answers errcode -1 (system error, worth retrying).
    template_failures: int = 0
    # When non-zero, every template/send call answers this errcode (43004 require subscribe, 40037 invalid
    # template_id, …): errors a retry does not cure.
    template_errcode: int = 0
    # template_id → the keys of that category template (类目模板), set by a test: a template/send or bizsend with
    # that id must carry exactly these keys, each value valid for its key's type, or WeChat answers 47003.
    template_schemas: dict[str, list[str]] = field(default_factory=dict)
    # WeChat sends one template message per openid + client_msg_id within 10 minutes and answers a repeat "ok".
    client_msg_id_window_seconds: float = 600
    # 订阅通知 bizsend accepted: the JSON sent.
    subscribe_messages: list[dict] = field(default_factory=list)
    # (openid, template_id) → one-time subscriptions left: each 订阅通知 uses one; none left answers 43101.
    subscriptions: dict[tuple[str, str], int] = field(default_factory=dict)
    _client_msg_ids: dict[tuple[str, str], tuple[int, datetime]] = field(default_factory=dict)
    # WeChat Pay API v3 and 商家转账 (pay_v3.py): every /v3/ path is answered by it.
    pay_v3: "FakeWeChatPayV3 | None" = None
    _last_msgid: int = 2_000_000_000
    _access_tokens: set[str] = field(default_factory=set)
    _codes: dict[str, tuple[FakeWeChatUser, str]] = field(default_factory=dict)
    _tokens: dict[str, tuple[FakeWeChatUser, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self, path: str) -> list[dict]:
        return [params for p, params in self.requests if p == path]

    def reset(self) -> None:
        """Forget what one test did, so the next one starts from a quiet WeChat."""
        with self._lock:
            self.current_user = None
            self.outage_status = None
            self.ticket_errcodes.clear()
            self.requests.clear()
            self.issued_tickets.clear()
            self.orders.clear()
            self.transfers.clear()
            self.transfer_err_code = ""
            self.refund_outcome = "SUCCESS"
            self.answer_key = None
            if self.pay_v3 is not None:
                self.pay_v3.reset()
            self.menu = None
            self.template_messages.clear()
            self.template_failures = 0
            self.template_errcode = 0
            self.template_schemas.clear()
            self.client_msg_id_window_seconds = 600
            self._client_msg_ids.clear()
            self.subscribe_messages.clear()
            self.subscriptions.clear()

    # --- browser side -------------------------------------------------------------------------------
    def authorize(self, params: dict) -> tuple[int, dict, bytes]:
        if params.get("appid") != self.app_id or params.get("response_type") != "code":
            return 400, {}, "参数错误".encode()
        scope = params.get("scope", "snsapi_base")
        redirect_uri = params["redirect_uri"]
        user = self.current_user
        if user is None:  # the user tapped "reject": WeChat comes back without a code
            query = urlencode({"state": params.get("state", "")})
        else:
            code = secrets.token_hex(16)
            with self._lock:
                self._codes[code] = (user, scope)
            query = urlencode({"code": code, "state": params.get("state", "")})
        separator = "&" if "?" in redirect_uri else "?"
        return 302, {"Location": f"{redirect_uri}{separator}{query}"}, b""

    # --- server side --------------------------------------------------------------------------------
    def access_token(self, params: dict) -> dict:
        if params.get("appid") != self.app_id or params.get("secret") != self.app_secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        with self._lock:
            entry = self._codes.pop(params.get("code", ""), None)  # a code works once
        if entry is None:
            return {"errcode": 40029, "errmsg": "invalid code"}
        user, scope = entry
        token = secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = (user, scope)
        body = {
            "access_token": token, "expires_in": 7200, "refresh_token": secrets.token_hex(16),
            "openid": user.openid, "scope": scope,
        }
        if user.is_snapshotuser:
            body["is_snapshotuser"] = 1
        if user.unionid and scope == "snsapi_userinfo":
            body["unionid"] = user.unionid
        return body

    def userinfo(self, params: dict) -> dict:
        entry = self._tokens.get(params.get("access_token", ""))
        if entry is None or entry[0].openid != params.get("openid"):
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        user, scope = entry
        if scope != "snsapi_userinfo":
            return {"errcode": 48001, "errmsg": "api unauthorized"}
        body = {
            "openid": user.openid, "nickname": user.nickname, "sex": 0, "province": "浙江", "city": "杭州",
            "country": "中国", "headimgurl": user.headimgurl, "privilege": [],
        }
        if user.unionid:
            body["unionid"] = user.unionid
        return body

    # --- JS-SDK: client_credential access token and jsapi ticket ------------------------------------
    def client_token(self, params: dict) -> dict:
        if params.get("grant_type") != "client_credential":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        if params.get("appid") != self.app_id:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if params.get("secret") != self.app_secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        token = secrets.token_hex(24)
        with self._lock:
            self._access_tokens.add(token)
        return {"access_token": token, "expires_in": 7200}

    def create_qrcode(self, params: dict, body: bytes) -> dict:
        """带参数二维码: a permanent string-scene code gets the same ticket for the same scene."""
        if params.get("access_token") not in self._access_tokens:
            return invalid_token()
        try:
            request = json.loads(body)
            scene = request["action_info"]["scene"]["scene_str"]
        except (ValueError, KeyError, TypeError):
            return {"errcode": 40053, "errmsg": "invalid action info"}
        if request.get("action_name") != "QR_LIMIT_STR_SCENE" or not 1 <= len(scene) <= 64:
            return {"errcode": 40053, "errmsg": "invalid action info"}
        ticket = "gQ" + hashlib.sha1(f"{self.app_id}:{scene}".encode()).hexdigest()
        return {"ticket": ticket, "url": f"http://weixin.qq.com/q/{ticket[:22]}"}

    def jsapi_ticket(self, params: dict) -> dict:
        with self._lock:
            forced = self.ticket_errcodes.pop(0) if self.ticket_errcodes else None
        if forced is not None:
            return {"errcode": forced, "errmsg": "invalid credential, access_token is invalid or not latest"}
        if params.get("access_token") not in self._access_tokens:
            return invalid_token()
        if params.get("type") != "jsapi":
            return {"errcode": 40097, "errmsg": "invalid args"}
        ticket = secrets.token_urlsafe(64)
        with self._lock:
            self.issued_tickets.append(ticket)
        return {"errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": 7200}

    def jsapi_signature_ok(self, app_id: str, url: str, timestamp: str, nonce: str, signature: str) -> bool:
        """What WeChat's client checks in ``wx.config``: our app, and the signature over a ticket issued to it for
        the page's URL without its fragment (sha1 of jsapi_ticket, noncestr, timestamp and url, in that order)."""
        page = url.split("#", 1)[0]
        signed = (f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={page}"
                  for ticket in list(self.issued_tickets))
        return app_id == self.app_id and any(hashlib.sha1(text.encode()).hexdigest() == signature for text in signed)

    # --- custom menu and template messages ----------------------------------------------------------
    def create_menu(self, params: dict, body: bytes) -> dict:
        """菜单创建: 1–3 buttons, each a leaf or 1–5 leaf sub-buttons; the accepted menu replaces ``menu``."""
        if params.get("access_token") not in self._access_tokens:
            return invalid_token()
        try:
            menu = json.loads(body)
            buttons = menu["button"]
        except (ValueError, KeyError, TypeError):
            return {"errcode": 47001, "errmsg": "data format error"}
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return {"errcode": 40016, "errmsg": "invalid button size"}
        for button in buttons:
            subs = button.get("sub_button") if isinstance(button, dict) else None
            if not subs:
                error = menu_button_error(button, sub=False)
            elif not isinstance(subs, list) or len(subs) > 5:
                error = {"errcode": 40023, "errmsg": "invalid sub button size"}
            elif not isinstance(button.get("name"), str) or not 1 <= len(button["name"].encode()) <= 16:
                error = {"errcode": 40018, "errmsg": "invalid button name size"}
            else:
                error = next(filter(None, (menu_button_error(s, sub=True) for s in subs)), None)
            if error:
                return error
        with self._lock:
            self.menu = menu
        return {"errcode": 0, "errmsg": "ok"}

    def send_template(self, params: dict, body: bytes) -> dict:
        """模板消息: the token is checked first, then the injected errors, then the message itself; a category
        template in ``template_schemas`` has its keys and typed values checked; a repeated client_msg_id within
        the window is answered "ok" with the first msgid, and nothing more is sent."""
        if params.get("access_token") not in self._access_tokens:
            return invalid_token()
        with self._lock:
            if self.template_errcode:
                return {"errcode": self.template_errcode, "errmsg": "injected error"}
            if self.template_failures > 0:
                self.template_failures -= 1
                return {"errcode": -1, "errmsg": "system error"}
        try:
            message = json.loads(body)
        except ValueError:
            return {"errcode": 47001, "errmsg": "data format error"}
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return {"errcode": 47001, "errmsg": "data format error"}
        if not isinstance(message.get("touser"), str) or not message["touser"]:
            return {"errcode": 40003, "errmsg": "invalid openid"}
        if not isinstance(message.get("template_id"), str) or not message["template_id"]:
            return {"errcode": 40037, "errmsg": "invalid template_id"}
        refusal = self._typed_data_error(self.template_schemas.get(message["template_id"]), message["data"])
        if refusal:
            return refusal
        now, once = datetime.now(timezone.utc), (message["touser"], message.get("client_msg_id") or "")
        with self._lock:
            earlier = self._client_msg_ids.get(once) if once[1] else None
            if earlier and (now - earlier[1]).total_seconds() < self.client_msg_id_window_seconds:
                return {"errcode": 0, "errmsg": "ok", "msgid": earlier[0]}
            self._last_msgid += 1
            self.template_messages.append({**message, "msgid": self._last_msgid})
            if once[1]:
                self._client_msg_ids[once] = (self._last_msgid, now)
            return {"errcode": 0, "errmsg": "ok", "msgid": self._last_msgid}

    def send_subscribe(self, params: dict, body: bytes) -> dict:
        """订阅通知 (bizsend): only to a member with a subscription left for the template (else 43101), with the
        same key checks as a category template; each message uses one subscription."""
        if params.get("access_token") not in self._access_tokens:
            return invalid_token()
        try:
            message = json.loads(body)
        except ValueError:
            return {"errcode": 47001, "errmsg": "data format error"}
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return {"errcode": 47001, "errmsg": "data format error"}
        if not isinstance(message.get("touser"), str) or not message["touser"]:
            return {"errcode": 40003, "errmsg": "invalid openid"}
        if not isinstance(message.get("template_id"), str) or not message["template_id"]:
            return {"errcode": 40037, "errmsg": "invalid template_id"}
        subscription = (message["touser"], message["template_id"])
        with self._lock:
            if self.subscriptions.get(subscription, 0) < 1:
                return {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
        refusal = self._typed_data_error(self.template_schemas.get(message["template_id"]), message["data"])
        if refusal:
            return refusal
        with self._lock:
            if self.subscriptions.get(subscription, 0) < 1:
                return {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
            self.subscriptions[subscription] -= 1
            self.subscribe_messages.append(message)
        return {"errcode": 0, "errmsg": "ok"}

    @staticmethod
    def _typed_data_error(keys: list[str] | None, data: dict) -> dict | None:
        """WeChat's 47003 for a category template's data (``keys``: the template's; None: not known to the fake,
        anything goes): other keys, and values breaking their key type's rule as WeChat's documentation gives it
        — empty, emoji or control characters, thing > 20 characters, character_string with Chinese, phrase not 1–5
        Chinese characters, an amount not a currency sign and at most 10 digits…"""
        import re
        import unicodedata

        if keys is None:
            return None
        cjk = "\u3400-\u4dbf\u4e00-\u9fff"
        day = r"(\d{4}-\d{1,2}-\d{1,2}|\d{4}年\d{1,2}月\d{1,2}日)"
        rules = {
            "thing": lambda v: len(v) <= 20,
            "keyword": lambda v: True,  # folded after 20 characters, not refused
            "character_string": lambda v: len(v) <= 32 and re.fullmatch(r"[!-~]+", v),
            "number": lambda v: re.fullmatch(r"\d+(\.\d+)?", v) and len(v.replace(".", "")) <= 32,
            "letter": lambda v: re.fullmatch(r"[A-Za-z]{1,32}", v),
            "symbol": lambda v: len(v) <= 5 and not re.search(f"[0-9A-Za-z{cjk}]", v),
            "amount": lambda v: (m := re.fullmatch(r"[¥￥$€£](\d+)(?:\.(\d+))?元?", v))
            and len(m.group(1) + (m.group(2) or "")) <= 10,
            "time": lambda v: re.fullmatch(f"({day} ?)?\\d{{1,2}}:\\d{{2}}(:\\d{{2}})?", v),
            "date": lambda v: re.fullmatch(f"{day}( \\d{{1,2}}:\\d{{2}})?", v),
            "phrase": lambda v: re.fullmatch(f"[{cjk}]{{1,5}}", v),
            "name": lambda v: len(v) <= (10 if re.search(f"[{cjk}]", v) else 20) and not re.search(r"\d", v),
            "phone_number": lambda v: re.fullmatch(r"[0-9+\-()]{1,17}", v),
            "car_number": lambda v: len(v) <= 8 and re.fullmatch(f"[{cjk}]?[A-Z0-9]+[{cjk}]?", v),
        }

        def invalid(key: str) -> dict:
            return {"errcode": 47003, "errmsg": f"argument invalid! data.{key}.value invalid"}

        unexpected = sorted(set(keys) ^ set(data))  # keys the template lacks, and its keys left out
        if unexpected:
            return invalid(unexpected[0])
        for key, item in data.items():
            value = item.get("value") if isinstance(item, dict) else None
            if not isinstance(value, str) or not value.strip():
                return invalid(key)
            if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "So", "Sk"} or ord(ch) > 0xFFFF for ch in value):
                return invalid(key)
            rule = rules.get(re.sub(r"_?\d+$", "", key))
            if rule is not None and not rule(value):
                return invalid(key)
        return None

    # --- WeChat Pay v2 ------------------------------------------------------------------------------
    def pay_endpoint(self, path: str, body: bytes) -> bytes:
        """Check the envelope as WeChat does (XML, signature, appid/mch_id), then run the endpoint."""
        try:
            params = from_xml(body)
        except ValueError:
            self.requests.append((path, {}))
            return to_xml({"return_code": "FAIL", "return_msg": "XML格式错误"})
        self.requests.append((path, params))
        if params.get("sign") != pay_sign(params, self.mch_key):
            return to_xml({"return_code": "FAIL", "return_msg": "签名错误"})
        if path == "/mch/mmpaymkttransfers/promotion/transfers":
            with self._lock:
                return self._transfer(params)
        if path == "/mch/mmpaymkttransfers/gettransferinfo":
            with self._lock:
                return self._transfer_query(params)
        if params.get("mch_id") != self.mch_id or params.get("appid") != self.app_id:
            return self._result(err_code="APPID_MCHID_NOT_MATCH", err_code_des="appid和mch_id不匹配")
        handler = {
            "/mch/pay/unifiedorder": self._unified_order,
            "/mch/pay/orderquery": self._order_query,
            "/mch/pay/closeorder": self._close_order,
            "/mch/secapi/pay/refund": self._refund,
            "/mch/pay/refundquery": self._refund_query,
        }[path]
        with self._lock:
            return handler(params)

    def _result(self, fields: dict | None = None, *, err_code: str = "", err_code_des: str = "") -> bytes:
        answer = {"return_code": "SUCCESS", "return_msg": "OK", "appid": self.app_id, "mch_id": self.mch_id}
        if err_code:
            answer |= {"result_code": "FAIL", "err_code": err_code, "err_code_des": err_code_des}
        else:
            answer |= {"result_code": "SUCCESS", **(fields or {})}
        return signed_xml(answer, self.answer_key or self.mch_key)

    def _unified_order(self, params: dict) -> bytes:
        for name in ("body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type", "openid"):
            if not params.get(name):
                return to_xml({"return_code": "FAIL", "return_msg": f"缺少参数{name}"})
        if params["trade_type"] != "JSAPI" or not params["total_fee"].isdigit() or int(params["total_fee"]) < 1:
            return self._result(err_code="PARAM_ERROR", err_code_des="参数错误")
        if len(params["body"].encode()) > 128:
            return self._result(err_code="PARAM_ERROR", err_code_des="body参数长度有误")
        if params.get("time_expire"):
            try:
                expires = datetime.strptime(params["time_expire"], "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TIME)
            except ValueError:
                return self._result(err_code="PARAM_ERROR", err_code_des="time_expire格式错误")
            if expires < china_now() + timedelta(minutes=1):
                return self._result(err_code="PARAM_ERROR", err_code_des="time_expire时间过短，刷卡至少1分钟，其他5分钟")
        total_fee = int(params["total_fee"])
        order = self.orders.get(params["out_trade_no"])
        if order is not None:
            if order.trade_state in ("SUCCESS", "REFUND"):
                return self._result(err_code="ORDERPAID", err_code_des="该订单已支付")
            if order.trade_state == "CLOSED":
                return self._result(err_code="ORDERCLOSED", err_code_des="该订单已关闭")
            if order.total_fee != total_fee:
                return self._result(err_code="INVALID_REQUEST", err_code_des="201 商户订单号重复")
        else:
            order = FakeOrder(
                out_trade_no=params["out_trade_no"], total_fee=total_fee, openid=params["openid"],
                notify_url=params["notify_url"], body=params["body"],
                prepay_id="wx" + china_now().strftime("%d%H%M%S") + secrets.token_hex(12),
            )
            self.orders[order.out_trade_no] = order
        return self._result({"trade_type": "JSAPI", "prepay_id": order.prepay_id})

    def _order_query(self, params: dict) -> bytes:
        order = self.orders.get(params.get("out_trade_no", ""))
        if order is None:
            return self._result(err_code="ORDERNOTEXIST", err_code_des="订单不存在")
        fields = {"out_trade_no": order.out_trade_no, "trade_state": order.trade_state,
                  "trade_state_desc": {"NOTPAY": "订单未支付", "CLOSED": "订单已关闭", "SUCCESS": "支付成功",
                                       "REFUND": "订单发生过退款"}[order.trade_state]}
        if order.transaction_id:  # WeChat tells the payment details only once there was a payment
            fields |= {"openid": order.openid, "transaction_id": order.transaction_id, "total_fee": order.total_fee,
                       "cash_fee": order.total_fee, "fee_type": "CNY", "trade_type": "JSAPI",
                       "bank_type": "OTHERS", "is_subscribe": "N", "time_end": order.time_end}
        return self._result(fields)

    def _close_order(self, params: dict) -> bytes:
        order = self.orders.get(params.get("out_trade_no", ""))
        if order is None:
            return self._result(err_code="ORDERNOTEXIST", err_code_des="订单不存在")
        if order.trade_state in ("SUCCESS", "REFUND"):
            return self._result(err_code="ORDERPAID", err_code_des="订单已支付，不能发起关单")
        if order.trade_state == "CLOSED":
            return self._result(err_code="ORDERCLOSED", err_code_des="订单已关闭，无需继续关闭")
        order.trade_state = "CLOSED"
        return self._result({"result_msg": "OK"})

    def _refund(self, params: dict) -> bytes:
        # Real WeChat also wants the merchant's client certificate on this URL; plain HTTP here.
        order = self.orders.get(params.get("out_trade_no", ""))
        if order is None:
            return self._result(err_code="ORDERNOTEXIST", err_code_des="订单不存在")
        if order.trade_state not in ("SUCCESS", "REFUND"):
            return self._result(err_code="TRADE_STATE_ERROR", err_code_des="订单状态错误")
        if not (params.get("out_refund_no") and params.get("total_fee", "").isdigit()
                and params.get("refund_fee", "").isdigit()):
            return self._result(err_code="PARAM_ERROR", err_code_des="参数错误")
        total_fee, refund_fee = int(params["total_fee"]), int(params["refund_fee"])
        if total_fee != order.total_fee:
            return self._result(err_code="INVALID_REQUEST", err_code_des="订单金额或退款金额与之前请求不一致，请核实后再试")
        earlier = order.refunds.get(params["out_refund_no"])
        if earlier is not None:  # the same out_refund_no refunds once
            if earlier[1] != refund_fee:
                return self._result(err_code="INVALID_REQUEST",
                                    err_code_des="订单金额或退款金额与之前请求不一致，请核实后再试")
            refund_id = earlier[0]
        else:
            refunded = sum(fee for number, (_, fee) in order.refunds.items()
                           if order.refund_states.get(number) != "REFUNDCLOSE")
            if refund_fee < 1 or refunded + refund_fee > order.total_fee:
                return self._result(err_code="INVALID_REQUEST", err_code_des="退款金额大于支付金额")
            refund_id = "50" + secrets.token_hex(13)
            order.refunds[params["out_refund_no"]] = (refund_id, refund_fee)
            order.refund_states[params["out_refund_no"]] = self.refund_outcome
            order.trade_state = "REFUND"
        return self._result({
            "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
            "out_refund_no": params["out_refund_no"], "refund_id": refund_id, "refund_fee": refund_fee,
            "total_fee": order.total_fee, "cash_fee": order.total_fee,
        })

    def _refund_query(self, params: dict) -> bytes:
        """查询退款 by out_refund_no: one refund, its fields indexed 0."""
        number = params.get("out_refund_no", "")
        order = next((o for o in self.orders.values() if number in o.refunds), None)
        if order is None:
            return self._result(err_code="REFUNDNOTEXIST", err_code_des="退款订单查询失败")
        refund_id, refund_fee = order.refunds[number]
        return self._result({
            "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no, "total_fee": order.total_fee,
            "cash_fee": order.total_fee, "refund_fee": refund_fee, "refund_count": 1, "out_refund_no_0": number,
            "refund_id_0": refund_id, "refund_channel_0": "ORIGINAL", "refund_fee_0": refund_fee,
            "refund_status_0": order.refund_states[number], "refund_recv_accout_0": "支付用户的零钱",
        })

    def finish_refund(self, out_refund_no: str, status: str = "SUCCESS") -> bytes:
        """WeChat finishes a refund (SUCCESS, REFUNDCLOSE or CHANGE); returns the refund-result notify it POSTs."""
        with self._lock:
            order = next(o for o in self.orders.values() if out_refund_no in o.refunds)
            order.refund_states[out_refund_no] = status
        return self.refund_notification(out_refund_no)

    def refund_notification(self, out_refund_no: str, *, key: str | None = None, refund_fee: int | None = None,
                            status: str | None = None) -> bytes:
        """The refund-result notify for a refund, optionally tampered with: encrypted under another key, another
        amount or status. ``req_info`` is AES-256-ECB (PKCS#7) under md5(API key), base64."""
        order = next(o for o in self.orders.values() if out_refund_no in o.refunds)
        refund_id, fee = order.refunds[out_refund_no]
        inner = {
            "out_refund_no": out_refund_no, "out_trade_no": order.out_trade_no, "refund_id": refund_id,
            "transaction_id": order.transaction_id, "total_fee": order.total_fee,
            "refund_fee": fee if refund_fee is None else refund_fee,
            "settlement_refund_fee": fee if refund_fee is None else refund_fee,
            "refund_status": status or order.refund_states[out_refund_no],
            "success_time": china_now().strftime("%Y-%m-%d %H:%M:%S"), "refund_recv_accout": "支付用户的零钱",
            "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS", "refund_request_source": "API",
        }
        plain = to_xml(inner).replace(b"<xml>", b"<root>").replace(b"</xml>", b"</root>")
        padding = 32 - len(plain) % 32
        aes_key = hashlib.md5((self.mch_key if key is None else key).encode()).hexdigest().encode()
        encryptor = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor()
        secret = encryptor.update(plain + bytes([padding]) * padding) + encryptor.finalize()
        return to_xml({"return_code": "SUCCESS", "appid": self.app_id, "mch_id": self.mch_id,
                       "nonce_str": secrets.token_hex(16), "req_info": base64.b64encode(secret).decode()})

    def add_transfer(self, partner_trade_no: str, *, amount: int, openid: str, status: str = "SUCCESS",
                     spbill_create_ip: str = "10.0.0.9", desc: str = "顶俏收益提现") -> None:
        """A transfer WeChat already has under this number: an earlier attempt whose answer never reached us."""
        with self._lock:
            self.transfers[partner_trade_no] = {
                "payment_no": "10100" + secrets.token_hex(10), "amount": amount, "openid": openid, "desc": desc,
                "spbill_create_ip": spbill_create_ip, "status": status,
            }

    def _transfer_query(self, params: dict) -> bytes:
        """查询企业付款 (gettransferinfo); unsigned like the transfer itself."""
        transfer = self.transfers.get(params.get("partner_trade_no", ""))
        if params.get("mch_id") != self.mch_id or params.get("appid") != self.app_id:
            return to_xml({"return_code": "SUCCESS", "result_code": "FAIL", "err_code": "PARAM_ERROR",
                           "err_code_des": "参数错误"})
        if transfer is None:
            return to_xml({"return_code": "SUCCESS", "result_code": "FAIL", "err_code": "NOT_FOUND",
                           "err_code_des": "指定单号数据不存在"})
        answer = {"return_code": "SUCCESS", "result_code": "SUCCESS", "partner_trade_no": params["partner_trade_no"],
                  "mch_id": self.mch_id, "appid": self.app_id, "detail_id": transfer["payment_no"],
                  "status": transfer["status"], "openid": transfer["openid"], "payment_amount": transfer["amount"],
                  "desc": transfer["desc"], "transfer_time": china_now().strftime("%Y-%m-%d %H:%M:%S")}
        if transfer["status"] == "FAILED":
            answer["reason"] = "收款用户账户异常"
        return to_xml(answer)

    def _transfer(self, params: dict) -> bytes:
        """企业付款到零钱. Its answers are not signed (as at WeChat) and name the merchant mchid/mch_appid."""
        def failed(code: str, text: str) -> bytes:
            return to_xml({"return_code": "SUCCESS", "result_code": "FAIL", "err_code": code, "err_code_des": text})

        if params.get("mchid") != self.mch_id or params.get("mch_appid") != self.app_id:
            return failed("PARAM_ERROR", "商户号和appid不匹配")
        if not params.get("amount", "").isdigit() or int(params["amount"]) < 30 or not params.get("openid"):
            return failed("AMOUNT_LIMIT", "付款金额不能小于最低限额")
        if self.transfer_err_code:
            return failed(self.transfer_err_code, "余额不足" if self.transfer_err_code == "NOTENOUGH" else "系统繁忙")
        sent = {"amount": int(params["amount"]), "openid": params["openid"], "desc": params.get("desc", ""),
                "spbill_create_ip": params.get("spbill_create_ip", "")}
        earlier = self.transfers.get(params["partner_trade_no"])
        if earlier is None:
            earlier = self.transfers[params["partner_trade_no"]] = {
                "payment_no": "10100" + secrets.token_hex(10), "status": "SUCCESS", **sent}
        elif any(earlier[name] != value for name, value in sent.items()):
            return failed("FATAL_ERROR", "已存在该单号，并且两次请求参数不一致")
        if earlier["status"] != "SUCCESS":
            return failed("SYSTEMERROR", "系统繁忙，请稍后再试")
        return to_xml({
            "return_code": "SUCCESS", "result_code": "SUCCESS", "mch_appid": self.app_id, "mchid": self.mch_id,
            "partner_trade_no": params["partner_trade_no"], "payment_no": earlier["payment_no"],
            "payment_time": china_now().strftime("%Y-%m-%d %H:%M:%S"),
        })

    # --- test helpers: the user pays, WeChat notifies -----------------------------------------------
    def pay(self, out_trade_no: str) -> bytes:
        """The user pays in WeChat: the order becomes SUCCESS and this is the notify WeChat POSTs to its
        notify_url (the test posts it to the app). Paying again gives the same notify, as WeChat's resends."""
        with self._lock:
            order = self.orders[out_trade_no]
            if order.trade_state == "CLOSED":
                raise ValueError(f"order {out_trade_no} is closed; WeChat would not let the user pay it")
            if order.trade_state == "NOTPAY":
                order.trade_state = "SUCCESS"
                order.transaction_id = new_transaction_id()
                order.time_end = china_now().strftime("%Y%m%d%H%M%S")
        return self.notification_for(out_trade_no)

    def notification_for(self, out_trade_no: str, *, total_fee: int | None = None, key: str | None = None,
                         transaction_id: str | None = None) -> bytes:
        """A pay notify for an order, optionally tampered with: another amount, another signing key, …"""
        order = self.orders[out_trade_no]
        fee = order.total_fee if total_fee is None else total_fee
        return signed_xml({
            "appid": self.app_id, "mch_id": self.mch_id, "openid": order.openid, "out_trade_no": out_trade_no,
            "transaction_id": transaction_id or order.transaction_id or new_transaction_id(),
            "total_fee": fee, "cash_fee": fee, "fee_type": "CNY", "bank_type": "OTHERS", "is_subscribe": "N",
            "trade_type": "JSAPI", "time_end": order.time_end or china_now().strftime("%Y%m%d%H%M%S"),
            "result_code": "SUCCESS", "return_code": "SUCCESS",
        }, self.mch_key if key is None else key)
