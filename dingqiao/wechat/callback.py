"""The Official Account's server callback (服务器配置): signature check, safe-mode crypto, the messages and
events we act on, and the passive replies (被动回复) we answer them with.

A reply must be rendered within WeChat's 5 seconds, so it is built from the message alone: no network calls.
"""
import struct
from dataclasses import dataclass
from xml.parsers.expat import ExpatError

from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import BaseEvent, ScanEvent, SubscribeEvent, SubscribeScanEvent, UnsubscribeEvent
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import TextMessage, UnknownMessage
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from .xmlsafe import refuse_dtd

REFERRAL_SCENE_PREFIX = "ref_"
MAX_OPENID_LENGTH = 64  # users.openid; WeChat's openids have 28 characters
MAX_NONCE_LENGTH = 64  # callback_nonces.nonce


@dataclass(frozen=True)
class CallbackEvent:
    kind: str  # "subscribe", "scan", "unsubscribe", "text", "message" (image, voice, location…), "other"
    openid: str
    account: str  # our account's original id (ToUserName): the sender of a reply
    referral_code: str | None = None  # from a parametric QR whose scene is "ref_<code>"
    text: str = ""  # a text message's content


class MalformedCallback(ValueError):
    pass


class ForgedCallback(ValueError):
    """A safe-mode message whose msg_signature does not match, or that was encrypted for another app."""


def signature_ok(token: str, signature: str, timestamp: str, nonce: str) -> bool:
    if not token:
        return False
    try:
        check_signature(token, signature, timestamp, nonce)
    except InvalidSignatureException:
        return False
    return True


def fresh_timestamp(timestamp: str, now: int, max_skew_seconds: int) -> int | None:
    """The signed ``timestamp`` as Unix seconds if it lies within ``max_skew_seconds`` of ``now`` either way
    (WeChat's clock against ours), else None: a signed URL older than that is not taken, however it was got."""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return None
    issued = int(timestamp)
    return issued if abs(issued - now) <= max_skew_seconds else None


def nonce_ok(nonce: str) -> bool:
    """WeChat's nonces are short digit strings; anything that does not fit callback_nonces.nonce is not one."""
    return 0 < len(nonce) <= MAX_NONCE_LENGTH and nonce.isascii() and nonce.isprintable()


class CallbackCrypto:
    """Safe mode (安全模式) and compatible mode (兼容模式): the message travels AES-encrypted in ``<Encrypt>``,
    signed by ``msg_signature`` over token, timestamp, nonce and the ciphertext; the reply goes back the same way.
    Only the encrypted part is trusted: compatible mode's plain-text copy beside it is ignored."""

    def __init__(self, token: str, encoding_aes_key: str, app_id: str):
        self._crypto = WeChatCrypto(token, encoding_aes_key, app_id)

    def decrypt(self, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> bytes:
        try:
            refuse_dtd(body)
            return self._crypto.decrypt_message(body, msg_signature, timestamp, nonce).encode()
        except (InvalidSignatureException, InvalidAppIdException) as exc:
            raise ForgedCallback(repr(exc)) from exc
        except (ExpatError, ValueError, LookupError, TypeError, AttributeError, struct.error) as exc:
            raise MalformedCallback(repr(exc)) from exc

    def encrypt(self, reply_xml: str, timestamp: str, nonce: str) -> str:
        return self._crypto.encrypt_message(reply_xml, nonce, timestamp)


def parse_event(body: bytes) -> CallbackEvent:
    if not body.strip():
        raise MalformedCallback("empty callback")
    try:
        refuse_dtd(body)
        message = parse_message(body)
    except (ExpatError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise MalformedCallback(repr(exc)) from exc
    openid, account = message.source or "", message.target or ""
    if not (isinstance(openid, str) and isinstance(account, str) and openid and account):
        raise MalformedCallback("FromUserName or ToUserName missing")
    if "]]>" in openid + account:  # they go back into the reply's CDATA
        raise MalformedCallback("CDATA terminator in a user name")
    if len(openid) > MAX_OPENID_LENGTH:  # a follower becomes a user: the openid must fit its column
        raise MalformedCallback("FromUserName too long")
    if isinstance(message, (SubscribeScanEvent, ScanEvent)):
        scene = str(message.scene_id or "")
        kind = "subscribe" if isinstance(message, SubscribeScanEvent) else "scan"
        code = scene[len(REFERRAL_SCENE_PREFIX):] if scene.startswith(REFERRAL_SCENE_PREFIX) else None
        return CallbackEvent(kind, openid, account, code or None)
    if isinstance(message, SubscribeEvent):
        return CallbackEvent("subscribe", openid, account)
    if isinstance(message, UnsubscribeEvent):
        return CallbackEvent("unsubscribe", openid, account)
    if isinstance(message, TextMessage):
        return CallbackEvent("text", openid, account, text=str(message.content or ""))
    if isinstance(message, (BaseEvent, UnknownMessage)):
        return CallbackEvent("other", openid, account)
    return CallbackEvent("message", openid, account)


SHOP = ("逛商城", "/")
ORDERS = ("我的订单", "/orders/")
SERVICE = ("联系客服", "/service/")
SHARE = ("推广赚钱", "/me/share")
WALLET = ("我的钱包", "/wallet/")

WELCOME = ("欢迎关注顶俏！好物下单、门店自提，分享还能赚佣金。", (SHOP, ORDERS, SHARE))
HELP = ("您好，这里是顶俏。您可以：", (SHOP, ORDERS, SERVICE, SHARE))
# The first topic whose keyword appears in a text message leads the reply with its own links.
TOPICS = (
    (("订单", "物流", "快递", "发货", "提货"), "订单进度、物流和提货码都在「我的订单」：", (ORDERS, SERVICE)),
    (("退款", "退货", "售后", "客服", "投诉", "人工"), "退款、售后问题请联系客服，我们会尽快处理：", (SERVICE, ORDERS)),
    (("推广", "分享", "佣金", "提现", "赚钱"), "分享链接或海报赚佣金，佣金在钱包里提现：", (SHARE, WALLET)),
)


def _reply_text(event: CallbackEvent) -> tuple[str, tuple] | None:
    if event.kind == "subscribe":
        return WELCOME
    if event.kind == "text":
        for keywords, lead, links in TOPICS:
            if any(word in event.text for word in keywords):
                return lead, links + tuple(link for link in HELP[1] if link not in links)
        return HELP
    if event.kind == "message":
        return HELP
    return None


def reply_to(event: CallbackEvent, base_url: str) -> str:
    """The passive reply's XML for ``event`` with links into the H5 at ``base_url``; "" when there is nothing
    to say (WeChat is then answered "success")."""
    text = _reply_text(event)
    if text is None:
        return ""
    lead, links = text
    lines = [lead, *(f'<a href="{base_url}{path}">{label}</a>' for label, path in links)]
    return TextReply(source=event.account, target=event.openid, content="\n".join(lines)).render()
