"""Machine endpoints WeChat calls (the pay and refund notifies, the server callback) and the JS-SDK config pages ask for.
Answers WeChat in its XML (or "success"), never an HTML page."""
import time

from flask import Blueprint, current_app, request
from flask_limiter import RateLimitExceeded

from ...extensions import csrf, db, limiter
from ...services.payments import accept_pay_notification, record_refused_notify
from ...models import BindingSource, RefusedNotifyReason
from ...services.referrals import BindingRefused, bind_by_openid
from ...services.refunds import accept_refund_notification
from ...services.withdrawals import accept_transfer_notification
from ...services.replay import NonceClaim, claim_nonce, release_nonce
from ...wechat import WeChatError, js_sdk, pay_gateways, talks_to_wechat
from ...wechat.callback import (
    CallbackCrypto,
    ForgedCallback,
    MalformedCallback,
    fresh_timestamp,
    nonce_ok,
    parse_event,
    reply_to,
    signature_ok,
)
from ...wechat.pay import InvalidNotification, notify_reply
from ...web import public_url
from ...wechat.pay_v3 import notify_reply_v3

bp = Blueprint("wechat", __name__, url_prefix="/wechat")

MAX_NOTIFY_BYTES = 64 * 1024


@bp.post("/pay/notify")
@csrf.exempt  # WeChat signs the body instead; the signature is checked before anything else
def pay_notify():
    """A notify signed with our merchant key is always handled, whoever else sends from its address. Anything
    else is counted per sender address (request.remote_addr: the client's behind PROXY_COUNT proxies) and
    reason, within PAY_NOTIFY_JUNK_RATE; past it the sender gets 429 and nothing is written."""
    body, too_large = _notify_body()
    if too_large:
        return too_large
    gateway = pay_gateways(current_app).for_api("v2")
    try:
        notification = gateway.parse_notification(body)
    except InvalidNotification as exc:
        return _refused_notify(exc.reason, body, str(exc), 400)
    if accept_pay_notification(db.session, gateway.settings, notification):
        return _xml(notify_reply(True))
    return _xml(notify_reply(False, "rejected"), 400)


@bp.post("/pay/v3/notify")
@csrf.exempt  # WeChat Pay signs it (Wechatpay-Signature); verified before anything else
def pay_notify_v3():
    """API v3's pay notify (V3_PAY_NOTIFY_PATH): verified with WeChat Pay's public key or platform certificate,
    its resource decrypted with the APIv3 key; then the same transition as every other way an order gets paid."""
    return _v3_notify("pay notify", lambda gateway, body: gateway.parse_notification(body, request.headers),
                      lambda gateway, paid: accept_pay_notification(db.session, gateway.settings, paid))


@bp.post("/pay/v3/refund-notify")
@csrf.exempt  # signed by WeChat Pay like the pay notify
def refund_notify_v3():
    """REFUND.SUCCESS / REFUND.ABNORMAL / REFUND.CLOSED for refunds sent through API v3. A result whose amount
    differs from our refund is refused (and logged)."""
    return _v3_notify("refund notify", lambda gateway, body: gateway.parse_refund_notification(body, request.headers),
                      lambda _gateway, result: accept_refund_notification(db.session, result))


@bp.post("/pay/v3/transfer-notify")
@csrf.exempt  # signed by WeChat Pay like the pay notify
def transfer_notify():
    """MCHTRANSFER.BILL.FINISHED: a 商家转账 bill was paid, failed, expired or was cancelled."""
    return _v3_notify("transfer notify",
                      lambda gateway, body: gateway.parse_transfer_notification(body, request.headers),
                      lambda _gateway, bill: accept_transfer_notification(db.session, bill))


def _v3_notify(what: str, parse, accept):
    """The one shape of every v3 notify: size limit, verify and decrypt (junk counted and rate-limited like v2's),
    act, and answer as v3 expects (204, or 4xx JSON that makes WeChat resend)."""
    body, too_large = _notify_body(v3=True)
    if too_large:
        return too_large
    gateway = pay_gateways(current_app).for_api("v3")
    try:
        outcome = parse(gateway, body)
    except InvalidNotification as exc:
        return _refused_notify(exc.reason, body, f"{what}: {exc}", 400, v3=True)
    if accept(gateway, outcome):
        return notify_reply_v3(True)
    current_app.logger.warning("v3 %s refused after verifying: %r", what, outcome)
    return notify_reply_v3(False, "rejected")


def _notify_body(v3: bool = False):
    """(body, None), or (None, the refusal) for a body over MAX_NOTIFY_BYTES — by its Content-Length before
    reading it, else by what was read — counted like any refused notify."""
    if (request.content_length or 0) > MAX_NOTIFY_BYTES:
        return None, _refused_notify(RefusedNotifyReason.TOO_LARGE, b"", f"Content-Length {request.content_length}",
                                     413, v3=v3)
    body = request.get_data(cache=False)
    if len(body) > MAX_NOTIFY_BYTES:
        return None, _refused_notify(RefusedNotifyReason.TOO_LARGE, body, f"{len(body)} bytes", 413, v3=v3)
    return body, None


def _junk_notify_rate() -> str:
    return current_app.config["PAY_NOTIFY_JUNK_RATE"]


@limiter.limit(_junk_notify_rate, scope="pay-notify-refused")
def _count_refused_notify(reason: str, body: bytes, detail: str) -> None:
    # The limit is checked (and spent) on entry, so a sender over it has nothing written.
    record_refused_notify(db.session, request.remote_addr or "", reason, body, detail)


def _refused_notify(reason: str, body: bytes, detail: str, status: int, v3: bool = False):
    """Count the refusal and answer it in the notify's own dialect (v2 XML, v3 JSON)."""
    try:
        _count_refused_notify(reason, body, detail)
    except RateLimitExceeded:
        status, message = 429, "too many refused notifies"
    else:
        message = "too large" if status == 413 else "rejected"
    if v3:
        text, _, headers = notify_reply_v3(False, message)
        return text, status, headers
    return _xml(notify_reply(False, message), status)


def _xml(body: str, status: int = 200):
    return body, status, {"Content-Type": "application/xml; charset=utf-8"}


@bp.post("/pay/refund-notify")
@csrf.exempt  # WeChat encrypts the result with our API key instead; it is decrypted before anything is believed
def refund_notify():
    """The result of a refund WeChat accepted (REFUND_NOTIFY_PATH, sent as notify_url with every refund). Junk
    is counted and rate-limited like junk pay notifies."""
    body, too_large = _notify_body()
    if too_large:
        return too_large
    try:
        result = pay_gateways(current_app).for_api("v2").parse_refund_notification(body)
    except InvalidNotification as exc:
        return _refused_notify(exc.reason, body, f"refund notify: {exc}", 400)
    if accept_refund_notification(db.session, result):
        return _xml(notify_reply(True))
    current_app.logger.warning("refund notify for %s refused: amount %s differs", result.out_refund_no,
                               result.refund_fee)
    return _xml(notify_reply(False, "rejected"), 400)


JS_API_LIST = ["getLocation", "scanQRCode", "updateAppMessageShareData", "updateTimelineShareData",
               "requestMerchantTransfer"]


@bp.get("/jssdk-config")
def jssdk_config():
    """A JS-SDK config for one of our own pages (the page passes its own URL, WeChat checks the domain)."""
    if not talks_to_wechat(current_app.config):
        return {"enabled": False}
    url = request.args.get("url", "")
    base = public_url()
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
    a valid signature, a timestamp within WECHAT_CALLBACK_MAX_SKEW_SECONDS and a nonce not used by another
    request (docs/wechat-callback.md, "Replays"); with WECHAT_ENCODING_AES_KEY set (safe or compatible mode) a POST must also be encrypted
    and carry a valid msg_signature, and the reply goes back encrypted. A follow or scan of a member's parametric
    QR binds the follower to that member; follows and messages get a text reply with links into the H5."""
    args, config = request.args, current_app.config
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    if not signature_ok(config["WECHAT_TOKEN"], args.get("signature", ""), timestamp, nonce):
        return _text("invalid signature", 403)
    now, max_skew = int(time.time()), config["WECHAT_CALLBACK_MAX_SKEW_SECONDS"]
    issued = fresh_timestamp(timestamp, now, max_skew)
    if issued is None or not nonce_ok(nonce):
        return _text("stale timestamp or malformed nonce", 403)
    if request.method == "GET":
        echostr = args.get("echostr", "")
        if claim_nonce(db.session, issued, nonce, echostr.encode(), oldest=now - max_skew) is NonceClaim.REUSED:
            return _text("nonce already used", 403)
        return _text(echostr)  # echoing a repeat again is harmless
    if (request.content_length or 0) > MAX_NOTIFY_BYTES:
        return _text("too large", 413)
    body = raw_body = request.get_data(cache=False)
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
    # Only now, once the message is known to be well-formed (and in safe mode genuine): a forgery must not use
    # up the nonce of the real request it copied.
    claim = claim_nonce(db.session, issued, nonce, raw_body, oldest=now - max_skew)
    if claim is NonceClaim.REPEAT:
        return _text("success")  # a retry of a message already acted on: once is enough, and WeChat stops
    if claim is NonceClaim.REUSED:
        current_app.logger.warning("wechat callback: a used nonce with another body refused (replay)")
        return _text("nonce already used", 403)
    if event.referral_code:
        source = BindingSource.FOLLOW if event.kind == "subscribe" else BindingSource.QRCODE
        try:
            bind_by_openid(db.session, event.openid, event.referral_code, source,
                           protection_days=config["BINDING_PROTECTION_DAYS"])
        except BindingRefused:
            pass  # kept as a refused attempt; the follower still gets the welcome
        except Exception:
            # Not acted on (the database was busy, …): WeChat's retry of this very request must be acted on.
            release_nonce(db.session, issued, nonce)
            raise
    if event.kind == "unsubscribe":
        current_app.logger.info("wechat unsubscribe: openid=%s", event.openid)
    reply = reply_to(event, public_url())
    if not reply:
        return _text("success")  # tells WeChat not to retry; accepted in every mode
    return _xml(crypto.encrypt(reply, timestamp, nonce) if crypto else reply)


def _text(body: str, status: int = 200):
    return body, status, {"Content-Type": "text/plain; charset=utf-8"}
