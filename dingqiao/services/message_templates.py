"""Which WeChat message each event becomes, and its values fitted to today's rules (docs/messages.md).

Since May 2023 WeChat's templates have no ``first``/``remark`` lines and no colours. A category template (类目模板)
takes typed keys — ``thing1``, ``character_string2``, ``amount3``, ``time4``, ``phrase5`` … — and refuses the whole
message (47003) when one value breaks its type's rule; an older industry template (历史模板) takes ``keyword1`` …,
each folded after 20 characters. 订阅通知 (``cgi-bin/message/subscribe/bizsend``) uses the same typed keys.

``WECHAT_MESSAGES`` (JSON) names, per event, the template, its kind and which of our values fills each key::

    {"order_paid": {"template_id": "…", "kind": "template",
                    "data": {"character_string1": "order_no", "amount2": "amount", "time3": "time"}},
     "withdrawal_paid": {"template_id": "…", "kind": "subscribe", "data": {"amount1": "amount", "thing2": "title"}}}

A message's values: ``title``, ``body``, ``time`` (when the event happened) and ``status`` for every event, plus
what the event itself wrote (``template_data``, see ``EVENT_VALUES``). Each value is fitted to its key's type
(``fit``) before WeChat sees it; a value that cannot be made valid raises ``UnfittableValue`` naming the key.
"""
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType

from ..china_time import CHINA_TIME
from ..config import ConfigError

COMMON_VALUES = ("title", "body", "time", "status")

# What each event writes into its message's ``template_data`` besides the common values: amounts in fen
# (integers), the rest text. An event writing a value not listed here cannot be mapped; a listed value the event
# did not write counts as empty.
EVENT_VALUES: dict[str, tuple[str, ...]] = {
    "order_paid": ("order_no", "amount", "product", "outlet"),
    "order_redeemed": ("order_no", "amount", "product", "outlet"),
    "order_refunded": ("order_no", "amount", "product"),
    "commission_frozen": ("order_no", "amount"),
    "commission_settled": ("order_no", "amount"),
    "withdrawal_approved": ("withdrawal_no", "amount"),
    "withdrawal_confirm": ("withdrawal_no", "amount"),  # 商家转账: the member must tap 确认收款 within 24 h
    "withdrawal_paid": ("withdrawal_no", "amount"),
    "withdrawal_rejected": ("withdrawal_no", "amount", "reason"),
    "withdrawal_failed": ("withdrawal_no", "amount", "reason"),
    "identity_eligible": ("identity",),
    "identity_review": ("identity", "shop"),
    "identity_upgraded": ("identity", "shop"),
    "identity_refused": ("identity", "reason"),
    "restock_placed": ("restock_no", "amount"),
    "restock_shipped": ("restock_no", "quantity"),
    "staff_joined": ("staff_name", "outlet"),
    "service_reply": ("case_no", "subject"),
}

# The ``status`` value of each event: at most five Chinese characters, so it fits a ``phrase`` key.
EVENT_STATUS: dict[str, str] = {
    "order_paid": "待自提", "order_redeemed": "已提货", "order_refunded": "已退款",
    "commission_frozen": "待结算", "commission_settled": "已到账",
    "withdrawal_approved": "审核通过", "withdrawal_confirm": "待确认", "withdrawal_paid": "已到账", "withdrawal_rejected": "已驳回",
    "withdrawal_failed": "已退回",
    "identity_eligible": "可申请", "identity_review": "待审核", "identity_upgraded": "已开通",
    "identity_refused": "未通过",
    "restock_placed": "待发货", "restock_shipped": "已发货", "staff_joined": "已加入", "service_reply": "已回复",
}


class Kind(StrEnum):
    TEMPLATE = "template"  # 模板消息: to followers, any number
    SUBSCRIBE = "subscribe"  # 订阅通知: one message per subscription the member gave with the page's button


@dataclass(frozen=True)
class MessageSetting:
    """One event's entry of WECHAT_MESSAGES: ``data`` pairs each template key with the value that fills it."""
    template_id: str
    kind: Kind
    data: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Outgoing:
    """A message ready for WeChat: the keys with their fitted values, as the send APIs take them."""
    kind: Kind
    template_id: str
    data: dict[str, dict[str, str]]
    client_msg_id: str  # WeChat sends one template message per openid and id within 10 minutes


class UnfittableValue(ValueError):
    """A value no fitting makes valid for its key (an amount of 10^11 yuan, a time that is not one): WeChat
    would refuse the message, so it is not sent; the text names the key and the value for the admin."""


# ---------------------------------------------------------------- fitting a value to its key's type

PLACEHOLDER = "-"
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
TEMPLATE_KEY = re.compile(r"([a-z_]+?)_?\d+")  # thing1, character_string12, amount01: the type, then a number


def key_type(key: str) -> str:
    """``character_string2`` → ``character_string``: a key's type is its name without the trailing number."""
    match = TEMPLATE_KEY.fullmatch(key)
    return match.group(1) if match else key


def _clean(value) -> str:
    """As text without control characters and emoji (WeChat refuses both), each run of whitespace one space."""
    if value is None:
        return ""
    kept = [ch for ch in str(value) if not _unwanted(ch)]
    return " ".join("".join(kept).split())


def _unwanted(ch: str) -> bool:
    """Control and format characters (the emoji joiner among them), and emoji with their skin tones, keycaps
    and variation selectors."""
    category = unicodedata.category(ch)
    if ch.isspace():
        return False
    return (category in {"Cc", "Cf", "Cs", "Co", "Cn"} or category in {"So", "Sk", "Me"} and not ch.isascii()
            or "\ufe00" <= ch <= "\ufe0f")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _thing(value) -> str:
    """事物: at most 20 characters of any kind."""
    return _cut(_clean(value), 20) or PLACEHOLDER


def _character_string(value) -> str:
    """字符串: at most 32 digits, letters or symbols — no Chinese, so anything else is dropped."""
    text = "".join(ch for ch in _clean(value) if "!" <= ch <= "~")
    return text[:32] or PLACEHOLDER


def _number(value) -> str:
    """数字: at most 32 digits, a decimal point allowed; a number is never cut (it would be another number)."""
    text = _clean(value)
    if isinstance(value, bool) or not re.fullmatch(r"\d+(\.\d+)?", text) or len(text.replace(".", "")) > 32:
        raise UnfittableValue("not a number of at most 32 digits")
    return text


def _letter(value) -> str:
    """字母: at most 32 letters."""
    text = "".join(ch for ch in _clean(value) if ch.isascii() and ch.isalpha())[:32]
    if not text:
        raise UnfittableValue("no letters")
    return text


def _symbol(value) -> str:
    """符号: at most 5 symbols, neither Chinese nor letters nor digits."""
    text = "".join(ch for ch in _clean(value) if unicodedata.category(ch)[0] in "PS" and not CJK.match(ch))
    return text[:5] or PLACEHOLDER


def _amount(value) -> str:
    """金额: one currency sign and at most 10 digits, with decimals — from fen, ``¥12.30``."""
    if isinstance(value, bool) or not re.fullmatch(r"\d+", str(value if value is not None else "").strip()):
        raise UnfittableValue("not an amount in fen (a whole number, not negative)")
    whole, cents = divmod(int(str(value).strip()), 100)
    if len(str(whole)) + 2 > 10:
        raise UnfittableValue("more than 10 digits")
    return f"¥{whole}.{cents:02d}"


def _moment(value) -> datetime:
    """A datetime (naive ones are UTC, as the database keeps them) or its ISO text, in China time."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise UnfittableValue("not a time") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=CHINA_TIME)
    if not isinstance(value, datetime):
        raise UnfittableValue("not a time")
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(CHINA_TIME)


def _time(value) -> str:
    """时间: 24-hour time with its date, ``2026-12-01 09:30``."""
    return _moment(value).strftime("%Y-%m-%d %H:%M")


def _date(value) -> str:
    """日期: ``2026-12-01``."""
    return _moment(value).strftime("%Y-%m-%d")


def _phrase(value) -> str:
    """汉字: at most 5 Chinese characters and nothing else."""
    return "".join(CJK.findall(_clean(value)))[:5] or "无"


def _name(value) -> str:
    """姓名: at most 10 Chinese characters (a name mixing Chinese and letters counts as Chinese) or at most 20
    letters and symbols; digits and emoji are dropped."""
    text = " ".join("".join(ch for ch in _clean(value) if not ch.isdigit()).split())
    return text[:10 if CJK.search(text) else 20] or PLACEHOLDER


def _phone_number(value) -> str:
    """电话: at most 17 digits and symbols; a phone number is never cut."""
    text = "".join(ch for ch in _clean(value) if ch.isascii() and (ch.isdigit() or ch in "+-()"))
    if len(text) > 17:
        raise UnfittableValue("more than 17 characters")
    return text or PLACEHOLDER


def _car_number(value) -> str:
    """车牌: at most 8 characters, letters and digits, the first and the last may be Chinese."""
    text = re.sub(r"[\s·.\-]", "", _clean(value)).upper()
    if not (len(text) <= 8 and re.fullmatch(r"[\u4e00-\u9fff]?[A-Z0-9]+[\u4e00-\u9fff]?", text)):
        raise UnfittableValue("not a licence plate")
    return text


FITTERS: dict[str, Callable[[object], str]] = {
    "thing": _thing, "keyword": _thing, "character_string": _character_string, "number": _number,
    "letter": _letter, "symbol": _symbol, "amount": _amount, "time": _time, "date": _date, "phrase": _phrase,
    "name": _name, "phone_number": _phone_number, "car_number": _car_number,
}


def fit(key: str, value, source: str = "") -> str:
    """``value`` made valid for the template key ``key`` (its type: ``key_type``); empty values of the text types
    become a placeholder, since WeChat refuses an empty one. ``source``: the value's name, for the error."""
    fitter = FITTERS.get(key_type(key))
    if fitter is None:
        raise UnfittableValue(f"{key}: WeChat's rule for this key type is not known here")
    try:
        return fitter(value)
    except UnfittableValue as exc:
        named = f" ← {source}" if source else ""
        shown = ": no value" if value is None or value == "" else f" = {str(value)[:40]!r}: {exc}"
        raise UnfittableValue(f"{key}{named}{shown}") from None


# ---------------------------------------------------------------- the settings

def message_settings(config) -> Mapping[str, MessageSetting]:
    """WECHAT_MESSAGES as event → MessageSetting; ConfigError when malformed."""
    raw = config.get("WECHAT_MESSAGES") or ""
    return _parse(raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True))


def check_message_settings(config) -> None:
    """For ``config.validate``: refuse a malformed WECHAT_MESSAGES at start-up, not at the first send."""
    message_settings(config)


def subscribe_template_ids(config, events: Iterable[str]) -> list[str]:
    """The 订阅通知 template ids of ``events`` (those configured as ``subscribe``), each once: what a page's
    subscribe button asks the member to accept."""
    settings = message_settings(config)
    ids = [settings[e].template_id for e in events if e in settings and settings[e].kind == Kind.SUBSCRIBE]
    return list(dict.fromkeys(ids))


@lru_cache(maxsize=8)
def _parse(raw: str) -> Mapping[str, MessageSetting]:
    if not raw.strip():
        return MappingProxyType({})
    try:
        entries = json.loads(raw)
    except ValueError:
        raise ConfigError("WECHAT_MESSAGES must be JSON, e.g. {\"order_paid\": {\"template_id\": \"…\", "
                          "\"kind\": \"template\", \"data\": {\"character_string1\": \"order_no\"}}}.") from None
    if not isinstance(entries, dict):
        raise ConfigError("WECHAT_MESSAGES must be a JSON object: event → {template_id, kind, data}.")
    return MappingProxyType({event: _setting(event, entry) for event, entry in entries.items()})


def _setting(event: str, entry) -> MessageSetting:
    where = f"WECHAT_MESSAGES[{event!r}]"
    if event not in EVENT_VALUES:
        raise ConfigError(f"{where}: no such event; the events are {', '.join(EVENT_VALUES)}.")
    if not isinstance(entry, dict) or set(entry) != {"template_id", "kind", "data"}:
        raise ConfigError(f"{where} must be an object with exactly template_id, kind and data.")
    template_id, kind, data = entry["template_id"], entry["kind"], entry["data"]
    if not (isinstance(template_id, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,128}", template_id)):
        raise ConfigError(f"{where}.template_id must be the template id copied from the 公众平台.")
    if not isinstance(kind, str) or kind not in {k.value for k in Kind}:
        raise ConfigError(f"{where}.kind must be \"template\" (模板消息) or \"subscribe\" (订阅通知), not {kind!r}.")
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{where}.data must map the template's keys (thing1, amount2, …) to our values.")
    available = COMMON_VALUES + EVENT_VALUES[event]
    for key, value in data.items():
        if key in {"first", "remark"}:
            raise ConfigError(f"{where}.data.{key}: WeChat dropped first/remark in 2023; map only the template's "
                              "own keys.")
        if not (TEMPLATE_KEY.fullmatch(key) and key_type(key) in FITTERS):
            raise ConfigError(f"{where}.data.{key}: not a key type we can fill ({', '.join(FITTERS)}); pick a "
                              "template without it.")
        if value not in available:
            raise ConfigError(f"{where}.data.{key} names the value {value!r}; {event} has: {', '.join(available)}.")
    return MessageSetting(template_id, Kind(kind), tuple(data.items()))


# ---------------------------------------------------------------- a message's outgoing form

def message_values(message) -> dict:
    """What ``message`` (an OutboxMessage) can fill keys with: the common values and what its event wrote."""
    written = json.loads(message.template_data or "{}")
    return {"status": EVENT_STATUS.get(message.event, ""), **written, "title": message.title,
            "body": message.body, "time": message.created_at}


def outgoing_for(message, settings: Mapping[str, MessageSetting], template_ids: Mapping[str, str]) -> Outgoing | None:
    """The WeChat message for an outbox row, or None when its event has no mapping (it stays in-app).

    The event's WECHAT_MESSAGES entry decides; else an older WECHAT_TEMPLATE_IDS entry is used only for template
    keys the event wrote itself (``thing1``: …) — never the first/keyword1/remark layout today's templates
    refuse. Raises UnfittableValue."""
    client_msg_id = f"dq-{message.id}"
    setting = settings.get(message.event)
    if setting is not None:
        values = message_values(message)
        data = {key: {"value": fit(key, values.get(name), name)} for key, name in setting.data}
        return Outgoing(setting.kind, setting.template_id, data, client_msg_id)
    template_id = template_ids.get(message.event)
    written = {key: value for key, value in json.loads(message.template_data or "{}").items()
               if TEMPLATE_KEY.fullmatch(key)}
    if not (template_id and written):
        return None
    return Outgoing(Kind.TEMPLATE, template_id, {key: {"value": fit(key, value)} for key, value in written.items()},
                    client_msg_id)


def refused_fields(error: str, data: Mapping[str, Mapping[str, str]]) -> str:
    """For a 47003 answer: the key WeChat names (``data.thing1.value invalid``) with the value we sent, or every
    key and value when it names none — so an admin can see which mapping to fix."""
    named = re.search(r"data\.(\w+)\.value", error)
    keys = [named.group(1)] if named and named.group(1) in data else list(data)
    return ", ".join(f"{key}={data[key]['value']!r}" for key in keys)
