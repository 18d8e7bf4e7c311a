"""Finance's side of a withdrawal that is not a WeChat call: rejecting it or paying it by hand, and the one way a
withdrawal moves on (``_finish``: a conditional update of its status with the ledger entry, the member's
message and the audit row, in one transaction) that every decision and every WeChat result goes through.
Also what both WeChat payouts share: the gateway of the API a payout started on, and the report of a payment
WeChat made for a withdrawal no longer waiting for it."""
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import WITHDRAWALS_PAYING_OUT, AdminUser, LedgerKind, Wallet, Withdrawal, WithdrawalStatus
from ..models.base import utcnow
from ..money import format_yuan
from ..wechat.pay import TransferResult
from . import NotFound, submissions
from .audit import record_audit
from .messages import enqueue_message
from .payments import record_late_result
from .wallet import post_entry
from .withdrawal_requests import WithdrawalError, _as_it_stands
from .policy import Duty, require

TRANSFER_REMARK = "顶俏收益提现"  # what the member reads on the transfer, legacy or 商家转账 (≤ 32 characters)


def mark_paid_offline(session: Session, admin: AdminUser, withdrawal_id: int, note: str,
                      submission_key: str | None = None) -> Withdrawal:
    _require_finance(admin)
    note = " ".join((note or "").split())[:60]
    if not note:
        raise WithdrawalError("请填写线下打款凭证号或说明。")
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="withdrawal.offline", target=withdrawal_id)
        if earlier is not None:
            return _as_it_stands(session, earlier)
        done = _finish(session, admin, withdrawal_id, WithdrawalStatus.REQUESTED, WithdrawalStatus.PAID,
                       payment_no=f"OFFLINE:{note}", payout_method="offline")
        submissions.remember(session, submission_key, done.id)
    return done


def reject_withdrawal(session: Session, admin: AdminUser, withdrawal_id: int, reason: str,
                      submission_key: str | None = None) -> Withdrawal:
    _require_finance(admin)
    reason = " ".join((reason or "").split())[:200]
    if not reason:
        raise WithdrawalError("请填写拒绝原因。")
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="withdrawal.reject", target=withdrawal_id)
        if earlier is not None:
            return _as_it_stands(session, earlier)
        done = _finish(session, admin, withdrawal_id, WithdrawalStatus.REQUESTED, WithdrawalStatus.REJECTED,
                       reject_reason=reason)
        submissions.remember(session, submission_key, done.id)
    return done


def _finish(session: Session, admin: AdminUser | None, withdrawal_id: int, expected: WithdrawalStatus,
            new: WithdrawalStatus, **values) -> Withdrawal:
    """Move a withdrawal on, with its ledger entry, message and audit row, in one transaction. ``admin`` None:
    the cron, acting on WeChat's answer."""
    with write_transaction(session):
        now = utcnow()
        extra = {"paid_at": now} if new == WithdrawalStatus.PAID else {}
        if expected == WithdrawalStatus.REQUESTED:
            extra |= {"reviewed_by_admin_id": admin.id, "reviewed_at": now}
        moved = session.execute(
            update(Withdrawal).where(Withdrawal.id == withdrawal_id, Withdrawal.status == expected)
            .values(status=new, **values, **extra)
        ).rowcount
        withdrawal = session.get(Withdrawal, withdrawal_id)
        if withdrawal is None:
            raise NotFound("提现申请不存在。")
        if not moved:
            raise WithdrawalError("该提现申请已处理。")
        # Leaving REQUESTED for a payout: the wallet must not be in debt (see _refuse_payout_while_in_debt).
        if expected == WithdrawalStatus.REQUESTED and new in WITHDRAWALS_PAYING_OUT:
            _refuse_payout_while_in_debt(session, withdrawal)
        amount = withdrawal.amount_fen
        if new == WithdrawalStatus.APPROVED:
            title, body = "提现审核通过", f"您的提现 {format_yuan(amount)} 已审核通过，正在打款。"
        elif new == WithdrawalStatus.PAID:
            post_entry(session, withdrawal.user_id, LedgerKind.WITHDRAWAL_PAID, withdrawing=-amount, withdrawn=amount,
                       withdrawal_id=withdrawal.id, memo="提现到账")
            title, body = "提现已到账", f"您的提现 {format_yuan(amount)} 已打款。"
        else:
            post_entry(session, withdrawal.user_id, LedgerKind.WITHDRAWAL_RETURNED, withdrawing=-amount,
                       available=amount, withdrawal_id=withdrawal.id, memo="提现退回")
            reason = values.get("reject_reason") or values.get("failure_reason") or ""
            title, body = "提现未成功", f"您的提现 {format_yuan(amount)} 已退回余额：{reason}"
        enqueue_message(session, user_id=withdrawal.user_id, event=f"withdrawal_{new.value}",
                        object_id=withdrawal.id, title=title, body=body, link="/wallet/",
                        template_data=_message_values(withdrawal, values))
        action = "withdrawal.approve" if new == WithdrawalStatus.APPROVED else f"withdrawal.{new.value}"
        record_audit(session, actor_kind="admin" if admin else "system", actor_id=admin.id if admin else None,
                     action=action, target_type="withdrawal", target_id=withdrawal.withdrawal_no,
                     detail={"amount_fen": amount, "fee_fen": withdrawal.fee_fen,
                             **{k: str(v) for k, v in values.items()}})
    session.refresh(withdrawal)
    return withdrawal


def _message_values(withdrawal: Withdrawal, values: dict) -> dict:
    """What a withdrawal's template message can show (services.message_templates.EVENT_VALUES)."""
    reason = values.get("reject_reason") or values.get("failure_reason") or ""
    return {"withdrawal_no": withdrawal.withdrawal_no, "amount": withdrawal.amount_fen,
            **({"reason": reason} if reason else {})}


def _report_paid_after_all(session: Session, withdrawal_id: int, result: TransferResult) -> None:
    """WeChat paid a transfer whose withdrawal is no longer waiting for it — its money went back to the wallet
    on an earlier "not paid" (a query racing a retry of the same number): finance must reconcile it."""
    withdrawal = session.get(Withdrawal, withdrawal_id)
    if withdrawal is not None and withdrawal.status != WithdrawalStatus.PAID:
        record_late_result(session, reference=withdrawal.withdrawal_no,
                           wechat_id=result.payment_no or withdrawal.withdrawal_no,
                           amount_fen=withdrawal.amount_fen - withdrawal.fee_fen,
                           detail=f"微信已打款 {withdrawal.withdrawal_no}，但系统中该提现为「{withdrawal.status}」，请核对用户余额")


def _refuse_payout_while_in_debt(session: Session, withdrawal: Withdrawal) -> None:
    """The one rule before any payout starts (WeChat transfer or offline): a clawback since the request left
    the wallet negative — a receivable — so paying now would pay out money the member owes back. Read inside
    the transaction that moves the withdrawal, after its row is updated."""
    if session.scalar(select(Wallet.available_fen).where(Wallet.id == withdrawal.wallet_id)) < 0:
        raise WithdrawalError("该用户有售后追回的待抵扣金额，余额为负，暂不能打款；可拒绝此申请。")


def _require_finance(admin: AdminUser) -> None:
    require(admin, Duty.MONEY, "只有财务可以审核提现。")


def _payout_gateway(gateway, api: str):
    """The gateway of the API a payout started on: a transfer exists only there, so no other may stand in."""
    own = gateway.for_api(api, strict=True)
    if own is None:
        setting = "WECHAT_MCH_KEY 与 WECHAT_MCH_CERT_PATH" if api == "v2" else "WECHAT_APIV3_KEY 等 v3 设置"
        raise WithdrawalError(f"这笔提现经微信支付 {api} 打款，但 {api} 未配置（{setting}），无法重试或查询；"
                              "请恢复该设置，或在商户平台核对结果后联系技术处理。")
    return own
