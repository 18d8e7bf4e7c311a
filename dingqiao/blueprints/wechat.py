"""Machine endpoints WeChat calls: the pay notify. Answers in WeChat's XML, never an HTML page."""
from flask import Blueprint, current_app, request

from ..extensions import csrf, db
from ..services.payments import handle_pay_notification
from ..wechat import WeChatError, js_sdk, pay_gateway
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
