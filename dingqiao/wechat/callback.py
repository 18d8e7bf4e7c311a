"""The Official Account's server callback (服务器配置): signature check and the events we act on."""
from dataclasses import dataclass
from xml.parsers.expat import ExpatError

from wechatpy import parse_message
from wechatpy.events import ScanEvent, SubscribeEvent, SubscribeScanEvent
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

REFERRAL_SCENE_PREFIX = "ref_"


@dataclass(frozen=True)
class CallbackEvent:
    kind: str  # "subscribe", "scan", "other"
    openid: str
    referral_code: str | None  # from a parametric QR whose scene is "ref_<code>"


class MalformedCallback(ValueError):
    pass


def signature_ok(token: str, signature: str, timestamp: str, nonce: str) -> bool:
    if not token:
        return False
    try:
        check_signature(token, signature, timestamp, nonce)
    except InvalidSignatureException:
        return False
    return True


def parse_event(body: bytes) -> CallbackEvent:
    if not body.strip() or b"<!doctype" in body[:1024].lower():
        raise MalformedCallback("empty body or DTD in callback")
    try:
        message = parse_message(body)
    except (ExpatError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise MalformedCallback(repr(exc)) from exc
    openid = getattr(message, "source", "") or ""
    if isinstance(message, (SubscribeScanEvent, ScanEvent)):
        scene = str(message.scene_id or "")
        kind = "subscribe" if isinstance(message, SubscribeScanEvent) else "scan"
        code = scene[len(REFERRAL_SCENE_PREFIX):] if scene.startswith(REFERRAL_SCENE_PREFIX) else None
        return CallbackEvent(kind, openid, code)
    if isinstance(message, SubscribeEvent):
        return CallbackEvent("subscribe", openid, None)
    return CallbackEvent("other", openid, None)
