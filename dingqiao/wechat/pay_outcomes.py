"""What services see of WeChat Pay, whichever API took the money: the outcomes both gateways (``pay.PayGateway``
on v2, ``pay_v3.PayGatewayV3`` on v3) turn WeChat's answers into — a pay notify, an order query, a refund's
result, a transfer's result — and their two errors, plus the limits and small helpers both share, so services
never see which API took the money."""
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

from ..china_time import CHINA_TIME
from . import WeChatError

BODY_MAX_BYTES = 128  # WeChat refuses a longer 商品描述
MAX_NOTIFY_ID_LENGTH = 32
MAX_NOTIFY_FEE = 2**63 - 1  # fen; a BigInteger
_UNREACHABLE = "暂时无法连接微信支付，请稍后再试。"
# 退款异常: WeChat holds the money, the buyer's card refused it. Not final: once the merchant re-routes it on the
# merchant platform (to the buyer's WeChat balance) the same refund number answers SUCCESS.
_REFUND_CHANGE = "退款异常：买家的银行卡已注销或冻结，款项未到账；请在微信支付商户平台「交易中心-退款管理」处理这笔异常退款，处理后结果自动更新。"


@dataclass(frozen=True)
class PayNotification:
    out_trade_no: str
    transaction_id: str
    total_fee: int  # fen
    mch_id: str
    appid: str
    openid: str
    result_ok: bool  # return_code and result_code both SUCCESS
    raw: dict  # the parsed fields, for the record


@dataclass(frozen=True)
class PayQueryResult:
    trade_state: str  # SUCCESS, NOTPAY, CLOSED, REFUND, USERPAYING, PAYERROR, REVOKED
    out_trade_no: str
    transaction_id: str  # "" when not paid
    total_fee: int | None  # WeChat tells it only once there was a payment
    mch_id: str
    appid: str

    @property
    def paid(self) -> bool:
        """WeChat took the money for this order (SUCCESS)."""
        return self.trade_state == "SUCCESS"

    @property
    def awaiting_payment(self) -> bool:
        """Not paid and still payable (NOTPAY, USERPAYING): closing it at WeChat stops a late payment."""
        return self.trade_state in ("NOTPAY", "USERPAYING")


class InvalidNotification(WeChatError):
    """A pay notify we must not believe. ``reason``: "bad_signature", "malformed" or "dtd"."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__("支付通知无效。", detail=detail or reason)
        self.reason = reason


class PayError(WeChatError):
    """WeChat Pay refused or could not be reached. ``err_code`` is WeChat's own code (ORDERPAID,
    ORDERNOTEXIST, ORDERCLOSED, …) so callers can tell "already paid" from a failure; "" when none.
    ``definite``: WeChat certainly did nothing with this request (a refund that was not made), as opposed to
    no answer or an answer that may hide what was done."""

    def __init__(self, message: str, *, err_code: str = "", detail: str = "", definite: bool = False):
        super().__init__(message, detail=detail or message)
        self.err_code = err_code
        self.definite = definite


class RefundState(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # closed, or refused by the buyer's bank: nothing reached the buyer
    PROCESSING = "processing"


@dataclass(frozen=True)
class RefundResult:
    """What became of a refund WeChat accepted (refund query or refund notify)."""
    out_refund_no: str
    state: RefundState
    refund_fee: int  # fen
    refund_id: str
    reason: str = ""  # why it failed, in Chinese, for finance


class TransferState(StrEnum):
    PAID = "paid"
    NOT_PAID = "not_paid"  # certainly nothing was paid under this number: the money may go back
    UNKNOWN = "unknown"  # no answer, or one that may hide a payment: ask again, never pay back


@dataclass(frozen=True)
class TransferResult:
    state: TransferState
    payment_no: str = ""
    reason: str = ""  # Chinese, for finance and the member



def _clip_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def _as_china_time(moment: datetime) -> datetime:
    aware = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
    return aware.astimezone(CHINA_TIME)

