"""Machine endpoints WeChat calls: the pay notify. Answers in WeChat's XML, never an HTML page."""
from flask import Blueprint, current_app, request

from ..extensions import csrf, db
from ..services.payments import handle_pay_notification
from ..wechat import pay_gateway
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
