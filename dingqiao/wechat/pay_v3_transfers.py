"""商家转账 (WeChat Pay API v3's transfer bills), as ``PayGatewayV3`` does them: the scene's 报备 items from the
settings, WeChat's bill states folded into ours (``BillState``: awaiting the member's 确认收款, paid, certainly not
paid, unknown), and the calls — make, query and cancel a bill — and the bill-finished notify. Mixed into
``pay_v3.PayGatewayV3``, which gives it ``settings``, ``_pay``, ``_call`` and ``_verified_resource``."""
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from .pay_outcomes import (
    _UNREACHABLE,
    MAX_NOTIFY_ID_LENGTH,
    InvalidNotification,
    PayError,
    TransferResult,
    TransferState,
)

TRANSFER_REMARK_MAX = 32  # characters
REAL_NAME_FROM_FEN = 200_000  # 商家转账 names the payee (encrypted) from ¥2,000 up
TRANSFER_SCENES = {
    # scene id → (the 报备 items WeChat requires for it, the 用户收款感知 shown to the member). Other scenes work
    # too when their items are named in the setting ("类型=内容|类型=内容") with the perception the scene allows.
    "1005": (("岗位类型", "报酬说明"), "劳务报酬"),  # 佣金报酬
    "1000": (("活动名称", "奖励说明"), "现金奖励"),  # 现金营销
}
REPORT_CONTENT_MAX = 32  # characters of one 报备 item


def transfer_report(scene: str, values: tuple[str, ...], perception: str = "") -> tuple[list[dict], str]:
    """(the 报备 items, the 用户收款感知) of a transfer in ``scene`` from the settings: for a scene we know, plain
    values in its order (1005: 岗位类型, 报酬说明); for any scene, ``类型=内容`` pairs. ValueError says what is wrong."""
    if not scene.isdigit():
        raise ValueError("the transfer scene id is the number the merchant platform shows (e.g. 1005)")
    known_items, known_perception = TRANSFER_SCENES.get(scene, ((), ""))
    pairs = []
    for index, value in enumerate(values):
        kind, separator, content = value.partition("=")
        if not separator:
            if index >= len(known_items):
                raise ValueError(f"scene {scene}: name each report item as 类型=内容 (e.g. 岗位类型=推广员)")
            kind, content = known_items[index], value
        pairs.append((kind.strip(), content.strip()))
    if known_items and [kind for kind, _ in pairs] != list(known_items):
        raise ValueError(f"scene {scene} needs exactly the report items {' | '.join(known_items)}, in that order")
    if not pairs or not all(kind and content and len(content) <= REPORT_CONTENT_MAX for kind, content in pairs):
        raise ValueError(f"each report item needs a type and a content of at most {REPORT_CONTENT_MAX} characters")
    if not (perception or known_perception):
        raise ValueError(f"scene {scene}: set the 用户收款感知 the scene allows (WECHAT_TRANSFER_PERCEPTION)")
    return [{"info_type": kind, "info_content": content} for kind, content in pairs], perception or known_perception


# 发起转账 answers that certainly mean no bill was made under this number: the money may go back to the wallet.
# Not among them: SYSTEM_ERROR, FREQUENCY_LIMITED, 5xx (retry with the same number), INVALID_REQUEST (among
# other things "this number was used with other parameters": an earlier attempt made a bill) and NOT_ENOUGH, whose
# documented answer is "充值后可以原单号发起重试，请勿更换商户单号": the payout waits, approved, for finance to top the
# operating account up and approve again under the same number.
_BILL_NOT_MADE = frozenset({"PARAM_ERROR", "NO_AUTH", "SIGN_ERROR", "ACCOUNT_ERROR",
                            "OPENID_INVALID", "USER_ACCOUNT_ABNORMAL", "MCH_NOT_EXISTS"})
_BILL_RETRY_REASONS = {"NOT_ENOUGH": "商户运营账户余额不足，请充值后再次点击同意，按原单号重试（NOT_ENOUGH）"}
_BILL_FAIL_REASONS = {
    "OVERDUE_CLOSE": "超过 24 小时未确认收款，转账已关闭",
    "TRANSFER_SCENE_UNAVAILABLE": "商户的转账场景不可用",
    "TRANSFER_SCENE_INVALID": "商户的转账场景不可用",
    "ACCOUNT_FROZEN": "收款人微信零钱已冻结",
    "ACCOUNT_NOT_EXIST": "收款人微信账户不存在",
    "REAL_NAME_CHECK_FAIL": "收款人未实名，或姓名与实名不符",
    "NAME_NOT_CORRECT": "收款人姓名与实名不符",
    "BLOCK_B2C_USERLIMITAMOUNT_BSRULE_MONTH": "收款人本月收款已达上限",
    "BLOCK_B2C_USERLIMITAMOUNT_MONTH": "收款人本月收款已达上限",
    "EXCEEDED_ESTIMATED_AMOUNT": "超出商户预估的转账额度",
    "MERCHANT_REJECT": "商户已撤销",
    "MERCHANT_NOT_CONFIRM": "商户未确认",
}
_BILL_IN_PROGRESS = {"ACCEPTED", "PROCESSING", "TRANSFERING", "CANCELING"}


class BillState(StrEnum):
    """A transfer bill as our services need it: WeChat's states, folded."""
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # WAIT_USER_CONFIRM: the member must tap 确认收款
    PAID = "paid"  # SUCCESS
    NOT_PAID = "not_paid"  # FAIL (incl. never confirmed within 24 h) or CANCELLED: no money moved
    UNKNOWN = "unknown"  # in progress at WeChat, no answer, or an answer we could not verify: ask again later


@dataclass(frozen=True)
class TransferBill:
    state: BillState
    out_bill_no: str
    bill_no: str = ""  # WeChat's transfer_bill_no
    package_info: str = ""  # for requestMerchantTransfer, only while AWAITING_CONFIRMATION
    wechat_state: str = ""  # WeChat's own word, for finance
    amount_fen: int | None = None
    openid: str = ""
    reason: str = ""  # Chinese, for finance and the member
    error: str = ""  # WeChat's error code when it refused the call (NOT_ENOUGH, NOT_FOUND, …)

    def as_transfer_result(self) -> TransferResult:
        state = {BillState.PAID: TransferState.PAID, BillState.NOT_PAID: TransferState.NOT_PAID}.get(
            self.state, TransferState.UNKNOWN)
        return TransferResult(state, payment_no=self.bill_no, reason=self.reason)

    @property
    def short_of_funds(self) -> bool:
        """WeChat refused the call for the operating account being short (NOT_ENOUGH): the payout waits, and the
        same number may be sent again once the merchant has topped the account up."""
        return self.error == "NOT_ENOUGH"

    @property
    def not_found(self) -> bool:
        """WeChat knows no bill under this number (NOT_FOUND) — not yet, or never made."""
        return self.error == "NOT_FOUND"


def awaits_member(wechat_state: str | None) -> bool:
    """A bill's WeChat state as kept on the withdrawal (``transfer_state``) says the member has yet to confirm it."""
    return wechat_state == "WAIT_USER_CONFIRM"


class TransferBillsV3:
    """PayGatewayV3's 商家转账 calls."""


    # --- 商家转账 ----------------------------------------------------------------------------------------
    def create_transfer_bill(self, *, out_bill_no: str, openid: str, amount: int, remark: str,
                             real_name: str = "") -> TransferBill:
        """发起转账: one bill per payout, which the member confirms on their phone. The same out_bill_no with the same
        parameters makes at most one bill, so a retry after an unknown answer is safe; a new number only after a
        query shows the bill failed."""
        scene = self.settings.transfer_scene_id
        report, perception = transfer_report(scene, self.settings.transfer_report_values,
                                             self.settings.transfer_perception)  # checked at start
        if amount >= REAL_NAME_FROM_FEN and not real_name:
            return TransferBill(BillState.NOT_PAID, out_bill_no, reason="¥2,000 及以上的提现需要填写收款人真实姓名")
        try:
            answer = self._call(lambda: self._pay.mch_transfer_bills(
                out_bill_no=out_bill_no, transfer_scene_id=scene, openid=openid, transfer_amount=amount,
                transfer_remark=remark[:TRANSFER_REMARK_MAX],
                user_name=real_name if amount >= REAL_NAME_FROM_FEN else None,
                user_recv_perception=perception,
                transfer_scene_report_infos=report, notify_url=self.settings.transfer_notify_url or None,
            ), definite=_BILL_NOT_MADE)
        except PayError as exc:
            state = BillState.NOT_PAID if exc.definite else BillState.UNKNOWN
            reason = _BILL_RETRY_REASONS.get(exc.err_code) or (
                f"{exc.message}（{exc.err_code}）" if exc.err_code else exc.message)
            return TransferBill(state, out_bill_no, reason=reason, error=exc.err_code)
        return self._bill(answer, out_bill_no)

    def query_transfer_bill(self, out_bill_no: str) -> TransferBill:
        """查询转账单 by our number (WeChat keeps them 30 days). Not found: unknown (error NOT_FOUND) — the bill may not
        be there yet."""
        try:
            answer = self._call(lambda: self._pay.mch_transfer_bills_query(out_bill_no=out_bill_no))
        except PayError as exc:
            return TransferBill(BillState.UNKNOWN, out_bill_no, reason=exc.message, error=exc.err_code)
        return self._bill(answer, out_bill_no)

    def cancel_transfer_bill(self, out_bill_no: str) -> TransferBill:
        """撤销转账 while the member has not confirmed. The answer is CANCELING or CANCELLED; only a query (or the
        notify) says it is final."""
        try:
            answer = self._call(lambda: self._pay.mch_transfer_bills_cancel(out_bill_no))
        except PayError as exc:
            return TransferBill(BillState.UNKNOWN, out_bill_no, reason=exc.message)
        return self._bill(answer, out_bill_no)

    def _bill(self, answer: dict, out_bill_no: str) -> TransferBill:
        state = answer.get("state")
        if answer.get("out_bill_no") != out_bill_no or not isinstance(state, str):
            return TransferBill(BillState.UNKNOWN, out_bill_no, reason=_UNREACHABLE)
        common = {"out_bill_no": out_bill_no, "bill_no": str(answer.get("transfer_bill_no") or ""),
                  "wechat_state": state, "openid": str(answer.get("openid") or ""),
                  "amount_fen": amount if isinstance(amount := answer.get("transfer_amount"), int) else None}
        if state == "SUCCESS":
            return TransferBill(BillState.PAID, **common)
        if state == "WAIT_USER_CONFIRM" and isinstance(answer.get("package_info"), str) and answer["package_info"]:
            return TransferBill(BillState.AWAITING_CONFIRMATION, package_info=answer["package_info"], **common,
                                reason="待用户确认收款")
        if state == "WAIT_USER_CONFIRM":  # a query: WeChat gives the package only when the bill is made
            return TransferBill(BillState.AWAITING_CONFIRMATION, **common, reason="待用户确认收款")
        if state == "FAIL":
            code = str(answer.get("fail_reason") or "")
            reason = _BILL_FAIL_REASONS.get(code, "微信转账失败")
            return TransferBill(BillState.NOT_PAID, **common, reason=f"{reason}（{code}）" if code else reason)
        if state == "CANCELLED":
            return TransferBill(BillState.NOT_PAID, **common, reason="转账已撤销")
        return TransferBill(BillState.UNKNOWN, **common,
                            reason="微信转账处理中。" if state in _BILL_IN_PROGRESS else f"微信转账状态未知（{state}）")

    def parse_transfer_notification(self, body: bytes, headers: Mapping[str, str] | None = None) -> TransferBill:
        """MCHTRANSFER.BILL.FINISHED: the bill reached SUCCESS, FAIL or CANCELLED. The caller compares the amount
        and payee with its own withdrawal."""
        _event, res = self._verified_resource(body, headers or {}, ("mch_payment",))
        if res.get("mch_id", self.settings.mch_id) != self.settings.mch_id:
            raise InvalidNotification("bad_signature", "transfer notify of another merchant")
        no = res.get("out_bill_no")
        if not isinstance(no, str) or not no or len(no) > MAX_NOTIFY_ID_LENGTH:
            raise InvalidNotification("malformed", "no out_bill_no")
        bill = self._bill(res, no)
        if bill.state == BillState.UNKNOWN and res.get("state") not in _BILL_IN_PROGRESS:
            raise InvalidNotification("malformed", f"state {res.get('state')!r}")
        return bill
