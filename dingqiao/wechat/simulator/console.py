"""The simulated WeChat's own pages, for the person giving the demo (WeChat has nothing like them): what it sent
(template messages, notifies to our server), the transfers and refunds it holds, the 确认收款 page a member's tap
opens, and a follow or scan of a member's QR code, posted to our server's callback as WeChat posts it — signed and
encrypted (安全模式) with the callback token and EncodingAESKey the demo gave the app."""
import hashlib
import json
import re
import secrets
import time
from urllib.parse import quote

import requests
from jinja2 import DictLoader, Environment
from wechatpy.crypto import WeChatCrypto

from .demo_pay import DemoPayV3
from .message_templates import DEMO_TEMPLATES
from .official_account import FakeWeChat, from_xml, to_xml
from .server import Page, PageRequest

ACCOUNT = "gh_dingqiao_demo"  # the Official Account's original id (原始ID): ToUserName of every message
ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:\d+)?")
SHOWN = 50  # messages, transfers and refunds on the console, newest first
HEADERS = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
           "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; form-action 'self'; "
                                      "frame-ancestors 'none'; base-uri 'none'"}

PAGES = {
    "layout.html": """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}模拟微信{% endblock %}</title>
<style>
body{font:15px/1.5 system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC",sans-serif;margin:0 auto;max-width:960px;
padding:16px;color:#191919;background:#ededed}
h1{font-size:20px}h2{font-size:17px;margin-top:28px}
section,.sheet{background:#fff;border-radius:8px;padding:12px 16px}table{border-collapse:collapse;width:100%}
td,th{border-top:1px solid #eee;padding:6px 4px;text-align:left;vertical-align:top}
.muted{color:#888}.note{background:#e8f8ee;border-radius:8px;padding:10px 14px}
button,.button{background:#07c160;border:0;border-radius:6px;color:#fff;cursor:pointer;display:inline-block;
font-size:15px;padding:8px 16px;text-decoration:none}button.plain{background:#f2f2f2;color:#191919}
input,select{font-size:15px;padding:6px;width:100%;box-sizing:border-box}label{display:block;margin:8px 0}
.amount{font-size:36px;font-weight:600;margin:12px 0}.sheet{max-width:380px;margin:40px auto;text-align:center}
.sheet form,.sheet button{margin-top:12px;width:100%}
</style></head>
<body{% block body_attrs %}{% endblock %}>{% block content %}{% endblock %}
<script src="/simulator.js" defer></script></body></html>""",
    "home.html": """{% extends "layout.html" %}{% block content %}
<h1>模拟微信 · 顶俏演示</h1>
<p class="muted">演示模式下，顶俏服务器的每个微信请求（网页授权、JS-SDK、模板消息、微信支付 v3、商家转账）都发到这里，
由它像微信一样应答，并把退款、转账结果通知发回顶俏。数据只在内存中，重启即清空。</p>
{% if result %}<p class="note">{{ result }}</p>{% endif %}

<h2>模拟扫码关注</h2>
<section><form method="post" action="/follow">
  <label>推荐人的推广码（在顶俏「我的 → 推广赚钱」里）<input name="code" required></label>
  <label>扫码的微信用户 openid（默认是一位新用户；也可选已收到消息或转账的用户）
    <input name="openid" value="{{ new_openid }}" list="openids" required></label>
  <datalist id="openids">{% for openid in known_openids %}<option value="{{ openid }}">{% endfor %}</datalist>
  <label>事件<select name="event"><option value="subscribe">扫码关注（新关注）</option>
    <option value="SCAN">已关注用户扫码</option></select></label>
  <label>顶俏地址<input name="app" value="{{ app_url }}" placeholder="http://127.0.0.1:5000" required></label>
  <button type="submit">发送到顶俏的 /wechat/callback</button>
</form></section>

<h2>模板消息（最近 {{ messages | length }} 条）</h2>
<section>{% for m in messages %}<table><tr><th colspan="2">{{ m.title }} → {{ m.touser }}
  <span class="muted">msgid {{ m.msgid }}</span></th></tr>
  {% for label, value in m.fields %}<tr><td class="muted">{{ label }}</td><td>{{ value }}</td></tr>{% endfor %}
  {% if m.url %}<tr><td class="muted">详情</td><td><a href="{{ m.url }}">{{ m.url }}</a></td></tr>{% endif %}
</table>{% else %}<p class="muted">还没有发出模板消息。</p>{% endfor %}</section>

<h2>商家转账</h2>
<section><table><tr><th>单号</th><th>金额</th><th>收款人</th><th>状态</th><th></th></tr>
{% for b in bills %}<tr><td>{{ b.out_bill_no }}</td><td>{{ b.transfer_amount | yuan }}</td><td>{{ b.openid }}</td>
  <td>{{ b.state }}{% if b.fail_reason %}（{{ b.fail_reason }}）{% endif %}</td>
  <td>{% if b.state == "WAIT_USER_CONFIRM" %}
    <a class="button" href="/transfer/confirm?package={{ b.package_info | urlencode }}">代用户确认收款</a>
    <form method="post" action="/transfer/expire"><input type="hidden" name="out_bill_no" value="{{ b.out_bill_no }}">
    <button class="plain" type="submit">模拟 24 小时未确认</button></form>{% endif %}</td></tr>
{% else %}<tr><td colspan="5" class="muted">还没有转账。</td></tr>{% endfor %}</table></section>

<h2>退款</h2>
<section><table><tr><th>退款单号</th><th>订单号</th><th>金额</th><th>状态</th></tr>
{% for r in refunds %}<tr><td>{{ r.out_refund_no }}</td><td>{{ r.out_trade_no }}</td><td>{{ r.refund | yuan }}</td>
  <td>{{ r.status }}</td></tr>{% else %}<tr><td colspan="4" class="muted">还没有退款。</td></tr>{% endfor %}</table></section>

<h2>发给顶俏的通知</h2>
<section><table><tr><th>时间</th><th>事件</th><th>地址</th><th>顶俏的应答</th></tr>
{% for n in notifies %}<tr><td>{{ n.at }}</td><td>{{ n.event }}</td><td>{{ n.url }}</td><td>{{ n.answer }}</td></tr>
{% else %}<tr><td colspan="4" class="muted">还没有通知（退款、转账结果会通知到顶俏的 PUBLIC_BASE_URL）。</td></tr>{% endfor %}
</table></section>
{% endblock %}""",
    "confirm.html": """{% extends "layout.html" %}{% block title %}确认收款{% endblock %}{% block content %}
<div class="sheet"><h1>微信支付 · 确认收款</h1>
<p class="amount">{{ bill.transfer_amount | yuan }}</p>
<p>来自商户 {{ bill.mch_id }}（模拟）</p><p class="muted">{{ bill.transfer_remark }} · 收款人 {{ bill.openid }}</p>
<form method="post" action="/transfer/confirm"><input type="hidden" name="package" value="{{ bill.package_info }}">
  <input type="hidden" name="origin" value="{{ origin }}"><button type="submit">确认收款</button></form>
<button class="plain" type="button" data-cancel>取消</button></div>
{% endblock %}""",
    "answered.html": """{% extends "layout.html" %}{% block title %}确认收款{% endblock %}
{% block body_attrs %} data-result="{{ result }}" data-origin="{{ origin }}"{% endblock %}{% block content %}
<div class="sheet"><h1>{{ text }}</h1><p><a href="/">回到模拟微信</a></p></div>
{% endblock %}""",
}

SCRIPT = """/* The simulated 确认收款 page answers the H5 that opened it (through the demo's WeixinJSBridge stand-in,
   dingqiao/static/js/demo_wechat.js) and closes, as WeChat's own page returns to the H5. */
(function () {
  "use strict";
  var body = document.body;
  function answer(result) {
    if (!window.opener || !body.dataset.origin) { return false; }
    window.opener.postMessage({ err_msg: result }, body.dataset.origin);
    window.close();
    return true;
  }
  if (body.dataset.result) { answer(body.dataset.result); }
  var cancel = document.querySelector("[data-cancel]");
  if (cancel) {
    cancel.addEventListener("click", function () {
      if (!answer("requestMerchantTransfer:cancel")) { window.location.href = "/"; }
    });
  }
})();
""".encode()

TITLES = {t.template_id: (t.title, {key: label for key, label, _value in t.fields}) for t in DEMO_TEMPLATES}


def _yuan(fen) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}" if isinstance(fen, int) else "—"


def _environment() -> Environment:
    environment = Environment(loader=DictLoader(PAGES), autoescape=True)
    environment.filters["yuan"] = _yuan
    return environment


def new_openid() -> str:
    """An openid as WeChat gives them: 28 characters starting with "o"."""
    return "o" + secrets.token_urlsafe(21)[:27]


def _signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


class Console:
    """The pages of one simulated WeChat (``pages`` for ``server.serve``)."""

    def __init__(self, wechat: FakeWeChat, token: str, encoding_aes_key: str):
        self.wechat = wechat
        self.pay: DemoPayV3 = wechat.pay_v3
        self.token = token
        self.crypto = WeChatCrypto(token, encoding_aes_key, wechat.app_id)
        self.app_url = ""  # our server: from the demo login page's link (?app=) or the last follow form
        self.result = ""  # what the last follow or scan got back, shown once
        self.templates = _environment()

    def pages(self) -> dict[tuple[str, str], Page]:
        return {("GET", "/"): self.home, ("POST", "/follow"): self.follow,
                ("GET", "/transfer/confirm"): self.confirm_page, ("POST", "/transfer/confirm"): self.confirm,
                ("POST", "/transfer/expire"): self.expire,
                ("POST", "/jsapi/verify"): self.verify_jsapi, ("GET", "/simulator.js"): self.script}

    def _render(self, name: str, status: int = 200, **values) -> tuple[int, dict, bytes]:
        return status, HEADERS, self.templates.get_template(name).render(**values).encode()

    @staticmethod
    def _back_home() -> tuple[int, dict, bytes]:
        return 303, {"Location": "/", "Content-Type": "text/plain"}, b""

    def home(self, request: PageRequest):
        if ORIGIN.fullmatch(request.query.get("app", "").rstrip("/")):
            self.app_url = request.query["app"].rstrip("/")
        result, self.result = self.result, ""
        bills, refunds = self.pay.held()
        known = sorted({m["touser"] for m in self.wechat.template_messages} | {b["openid"] for b in bills})
        return self._render("home.html", result=result, new_openid=new_openid(), known_openids=known,
                            app_url=self.app_url,
                            messages=[self._message(m) for m in reversed(self.wechat.template_messages[-SHOWN:])],
                            bills=bills[:SHOWN], refunds=refunds[:SHOWN], notifies=list(self.pay.notifier.sent))

    @staticmethod
    def _message(message: dict) -> dict:
        title, labels = TITLES.get(message["template_id"], (message["template_id"], {}))
        fields = [(labels.get(key, key), (item or {}).get("value", "")) for key, item in message["data"].items()]
        return {"title": title, "touser": message["touser"], "msgid": message["msgid"], "fields": fields,
                "url": message.get("url", "")}

    # --- 确认收款: the page WeChat opens when the member taps 确认收款 (requestMerchantTransfer) --------------
    def confirm_page(self, request: PageRequest):
        bill = self.pay.bill_for_package(request.query.get("package", ""))
        origin = request.query.get("origin", "") if ORIGIN.fullmatch(request.query.get("origin", "")) else ""
        if bill is None or bill["state"] != "WAIT_USER_CONFIRM":
            return self._answered("这笔转账不存在，或已处理", "requestMerchantTransfer:fail", origin, 404)
        return self._render("confirm.html", bill=bill, origin=origin)

    def confirm(self, request: PageRequest):
        bill = self.pay.bill_for_package(request.form.get("package", ""))
        origin = request.form.get("origin", "") if ORIGIN.fullmatch(request.form.get("origin", "")) else ""
        if bill is None or not self.pay.confirm(bill["out_bill_no"]):
            return self._answered("这笔转账不存在，或已处理", "requestMerchantTransfer:fail", origin, 404)
        return self._answered(f"已确认收款 {_yuan(bill['transfer_amount'])}", "requestMerchantTransfer:ok", origin)

    def _answered(self, text: str, result: str, origin: str, status: int = 200):
        return self._render("answered.html", status, text=text, result=result, origin=origin)

    def expire(self, request: PageRequest):
        self.pay.expire(request.form.get("out_bill_no", ""))
        return self._back_home()

    @staticmethod
    def script(_request: PageRequest):
        return 200, {"Content-Type": "text/javascript; charset=utf-8"}, SCRIPT

    # --- JS-SDK: what WeChat's client checks when a page calls wx.config -----------------------------------
    def verify_jsapi(self, request: PageRequest):
        fields = request.form
        ok = self.wechat.jsapi_signature_ok(fields.get("appId", ""), fields.get("url", ""), fields.get("timestamp", ""),
                                            fields.get("nonceStr", ""), fields.get("signature", ""))
        return 200, {"Content-Type": "application/json"}, json.dumps({"ok": ok}).encode()

    # --- 扫码关注: a follow (or a follower's scan) of a member's parametric QR, posted to our callback -------
    def follow(self, request: PageRequest):
        form = request.form
        app_url, code, openid = form.get("app", "").rstrip("/"), form.get("code", "").strip(), form.get("openid", "")
        if not (ORIGIN.fullmatch(app_url) and re.fullmatch(r"[A-Za-z0-9]{1,32}", code)
                and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", openid)):
            self.result = "请填写推广码、openid 和顶俏地址（如 http://127.0.0.1:5000）。"
            return self._back_home()
        self.app_url = app_url
        self.result = self.post_follow(app_url, openid, code, subscribe=form.get("event") != "SCAN")
        return self._back_home()

    def post_follow(self, app_url: str, openid: str, code: str, *, subscribe: bool) -> str:
        """Post the event as WeChat would; returns what happened, for the console."""
        scene = f"ref_{code}"
        now, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        event = to_xml({"ToUserName": ACCOUNT, "FromUserName": openid, "CreateTime": int(now), "MsgType": "event",
                        "Event": "subscribe" if subscribe else "SCAN",
                        "EventKey": f"qrscene_{scene}" if subscribe else scene,
                        "Ticket": "gQ" + hashlib.sha1(f"{self.wechat.app_id}:{scene}".encode()).hexdigest()})
        sealed = from_xml(self.crypto.encrypt_message(event.decode(), nonce, now).encode())
        query = (f"signature={_signature(self.token, now, nonce)}&timestamp={now}&nonce={nonce}&openid={quote(openid)}"
                 f"&encrypt_type=aes&msg_signature={sealed['MsgSignature']}")
        what = f"{openid} {'扫码关注' if subscribe else '扫码'}（推广码 {code}）"
        try:
            answer = requests.post(f"{app_url}/wechat/callback?{query}", timeout=10,
                                   data=to_xml({"ToUserName": ACCOUNT, "Encrypt": sealed["Encrypt"]}),
                                   headers={"Content-Type": "text/xml"})
        except requests.RequestException as exc:
            return f"{what}：顶俏没有应答（{type(exc).__name__}），请检查顶俏地址。"
        return f"{what}：顶俏应答 HTTP {answer.status_code}。{self._reply_text(answer.content)}"

    def _reply_text(self, body: bytes) -> str:
        """The text of our server's encrypted reply (the welcome with its links), or nothing."""
        try:
            sealed = from_xml(body)
            reply = self.crypto.decrypt_message(body, sealed["MsgSignature"], sealed["TimeStamp"], sealed["Nonce"])
            return "回复：" + from_xml(reply.encode()).get("Content", "")
        except Exception:  # noqa: BLE001 - "success", or anything else that is no encrypted reply
            return ""
