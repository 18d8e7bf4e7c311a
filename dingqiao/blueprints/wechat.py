"""Machine endpoints WeChat calls (the pay notify, the server callback) and the JS-SDK config pages ask for.
Answers WeChat in its XML (or "success"), never an HTML page."""
from flask import Blueprint, current_app, request

from ..extensions import csrf, db
from ..services.payments import handle_pay_notification
from ..models import BindingSource
from ..services.referrals import BindingRefused, bind_by_openid
from ..wechat import WeChatError, js_sdk, pay_gateway
from ..wechat.callback import (
    CallbackCrypto,
    ForgedCallback,
    MalformedCallback,
    parse_event,
    reply_to,
    signature_ok,
)
from ..wechat.pay import notify_reply

bp = Blueprint("wechat", __name__, url_prefix="/wechat")

MAX_NOTIFY_BYTES = 64 * 1024


@bp.post("/pay/notify")
@csrf.exempt  # WeChat signs the body instead; the signature is checked before anything else
def pay_notify():
    body = request.get_data(cache=False)
    if len(body) > MAX_NOTIFY_BYTES:
        return _xml(notify_reply(False, "too large"), 413)
    handled = handle_pay_notification(db.session, pay_gateway(current_app.config), body)
    if handled:
        return _xml(notify_reply(True))
    return _xml(notify_reply(False, "rejected"), 400)


def _xml(body: str, status: int = 200):
    return body, status, {"Content-Type": "application/xml; charset=utf-8"}


JS_API_LIST = ["getLocation", "scanQRCode", "updateAppMessageShareData", "updateTimelineShareData"]


@bp.get("/jssdk-config")
def jssdk_config():
    """A JS-SDK config for one of our own pages (the page passes its own URL, WeChat checks the domain)."""
    if current_app.config["DINGQIAO_DEMO"]:
        return {"enabled": False}
    url = request.args.get("url", "")
    base = current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/")
    if not (url == base or url.startswith(base + "/")) or len(url) > 2048:
        return {"error": "只能为本站页面签名"}, 400
    try:
        config = js_sdk(current_app).config_for(url, JS_API_LIST)
    except WeChatError as exc:
        current_app.logger.warning("jssdk config failed: %s", exc)
        return {"error": exc.message}, 502
    return {"enabled": True, **config}


@bp.route("/callback", methods=["GET", "POST"])
@csrf.exempt  # WeChat signs every request instead; the signature is checked first
def callback():
    """服务器配置: the URL-verification handshake (GET) and messages and events (POST). Every request must carry
    a valid signature; with WECHAT_ENCODING_AES_KEY set (safe or compatible mode) a POST must also be encrypted
    and carry a valid msg_signature, and the reply goes back encrypted. A follow or scan of a member's parametric
    QR binds the follower to that member; follows and messages get a text reply with links into the H5."""
    args, config = request.args, current_app.config
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    if not signature_ok(config["WECHAT_TOKEN"], args.get("signature", ""), timestamp, nonce):
        return _text("invalid signature", 403)
    if request.method == "GET":
        return _text(args.get("echostr", ""))
    if (request.content_length or 0) > MAX_NOTIFY_BYTES:
        return _text("too large", 413)
    body = request.get_data(cache=False)
    if len(body) > MAX_NOTIFY_BYTES:
        return _text("too large", 413)
    crypto = None
    if config["WECHAT_ENCODING_AES_KEY"]:
        if args.get("encrypt_type") != "aes":
            return _text("encrypted message expected", 403)  # the plain signature does not cover the body
        crypto = CallbackCrypto(config["WECHAT_TOKEN"], config["WECHAT_ENCODING_AES_KEY"], config["WECHAT_APP_ID"])
    try:
        if crypto:
            body = crypto.decrypt(body, args.get("msg_signature", ""), timestamp, nonce)
        event = parse_event(body)
    except ForgedCallback as exc:
        current_app.logger.warning("wechat callback: encrypted message refused: %s", exc)
        return _text("invalid msg_signature", 403)
    except MalformedCallback as exc:
        if args.get("encrypt_type") == "aes" and not crypto:
            current_app.logger.warning("wechat callback: an encrypted message, but WECHAT_ENCODING_AES_KEY is empty")
        current_app.logger.info("wechat callback: malformed message: %s", exc)
        return _text("malformed", 400)
    if event.referral_code:
        source = BindingSource.FOLLOW if event.kind == "subscribe" else BindingSource.QRCODE
        try:
            bind_by_openid(db.session, event.openid, event.referral_code, source,
                           protection_days=config["BINDING_PROTECTION_DAYS"])
        except BindingRefused:
            pass  # kept as a refused attempt; the follower still gets the welcome
    if event.kind == "unsubscribe":
        current_app.logger.info("wechat unsubscribe: openid=%s", event.openid)
    reply = reply_to(event, config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/"))
    if not reply:
        return _text("success")  # tells WeChat not to retry; accepted in every mode
    return _xml(crypto.encrypt(reply, timestamp, nonce) if crypto else reply)


def _text(body: str, status: int = 200):
    return body, status, {"Content-Type": "text/plain; charset=utf-8"}
