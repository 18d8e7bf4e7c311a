"""Machine endpoints WeChat calls: the pay notify. Answers in WeChat's XML, never an HTML page."""
from flask import Blueprint, current_app, request

from ..extensions import csrf, db
from ..services.payments import handle_pay_notification
from ..models import BindingSource
from ..services.referrals import BindingRefused, bind_by_openid
from ..wechat import WeChatError, js_sdk, pay_gateway
from ..wechat.callback import MalformedCallback, parse_event, signature_ok
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
    """服务器配置: the URL-verification handshake (GET) and events (POST). Every request must carry a valid
    signature; a follow or scan of a member's parametric QR binds the follower to that member."""
    args = request.args
    if not signature_ok(current_app.config["WECHAT_TOKEN"], args.get("signature", ""), args.get("timestamp", ""),
                        args.get("nonce", "")):
        return "invalid signature", 403, {"Content-Type": "text/plain; charset=utf-8"}
    if request.method == "GET":
        return args.get("echostr", ""), 200, {"Content-Type": "text/plain; charset=utf-8"}
    body = request.get_data(cache=False)
    if len(body) > MAX_NOTIFY_BYTES:
        return "too large", 413, {"Content-Type": "text/plain; charset=utf-8"}
    try:
        event = parse_event(body)
    except MalformedCallback:
        return "malformed", 400, {"Content-Type": "text/plain; charset=utf-8"}
    if event.referral_code and event.openid:
        source = BindingSource.FOLLOW if event.kind == "subscribe" else BindingSource.QRCODE
        try:
            bind_by_openid(db.session, event.openid, event.referral_code, source,
                           protection_days=current_app.config["BINDING_PROTECTION_DAYS"])
        except BindingRefused:
            pass  # kept as a refused attempt; WeChat needs no more than "success"
    # Answering "success" within 5 s tells WeChat not to retry; replies and menus come with the messages work.
    return "success", 200, {"Content-Type": "text/plain; charset=utf-8"}
