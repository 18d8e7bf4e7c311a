"""Refunds of paid orders not yet picked up: the member asks, finance decides, WeChat pays back.

Approval claims the refund (REQUESTED/FAILED → APPROVED) before calling WeChat, so two admins clicking at
once cannot refund twice; the out_refund_no makes a retried call idempotent at WeChat as well.
"""
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import MONEY_REVIEWERS, AdminUser, Order, OrderStatus, Refund, RefundStatus
from ..models.base import utcnow
from ..wechat.pay import PayError, PayGateway
from . import DomainError, Forbidden, NotFound
from .audit import record_audit
from .orders import release_order_stock, transition
from .settlement import on_order_refunded

MAX_REASON_LENGTH = 200
# Refund answers that certainly mean "nothing was refunded"; anything else (no answer, SYSTEMERROR,
# BIZERR_NEED_RETRY) may hide a refund, so the refund stays APPROVED for a retry with the same number.
REFUND_NOT_DONE = {"NOTENOUGH", "TRADE_OVERDUE", "USER_ACCOUNT_ABNORMAL", "INVALID_TRANSACTIONID", "PARAM_ERROR",
                   "ORDERNOTEXIST", "INVALID_REQUEST", "ERROR", "FREQUENCY_LIMITED", "TRADE_STATE_ERROR",
                   "SIGNERROR", "XML_FORMAT_ERROR", "APPID_NOT_EXIST", "MCHID_NOT_EXIST"}


class RefundError(DomainError):
    status = 409


def request_refund(session: Session, user_id: int, order_no: str, reason: str) -> Refund:
    """The member asks for the money back for a paid order not yet picked up; finance decides."""
    reason = _clean_reason(reason, "请填写退款原因。")
    with write_transaction(session):
        order = session.scalar(select(Order).where(Order.order_no == order_no, Order.user_id == user_id))
        if order is None:
            raise NotFound("订单不存在。")
        refund = _open_refund(session, order, OrderStatus.PAID, reason, requested_by_user_id=user_id)
        if refund is None:
            session.refresh(order)
            if order.after_sales_open:
                raise RefundError("该订单已有退款申请在处理中。")
            raise RefundError("只有已支付、未自提的订单可以申请退款。")
        record_audit(session, actor_kind="user", actor_id=user_id, action="refund.request", target_type="order",
                     target_id=order.order_no, detail={"refund_id": refund.id, "amount_fen": refund.amount_fen})
    return refund


def open_after_sales_refund(session: Session, admin: AdminUser, order_no: str, reason: str) -> Refund:
    """After-sales (售后): finance opens a refund for an order already picked up. Approving it refunds at
    WeChat and claws the settled commissions back (see commissions.reverse_order_lines)."""
    _require_finance(admin)
    reason = _clean_reason(reason, "请填写退款原因。")
    with write_transaction(session):
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        if order is None:
            raise NotFound("订单不存在。")
        refund = _open_refund(session, order, OrderStatus.COMPLETED, reason)
        if refund is None:
            raise RefundError("只有已提货且没有进行中售后的订单可以发起售后退款。")
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="refund.after_sales_open",
                     target_type="order", target_id=order.order_no, detail={"refund_id": refund.id})
    return refund


def _open_refund(session: Session, order: Order, expected: OrderStatus, reason: str,
                 requested_by_user_id: int | None = None) -> Refund | None:
    """Mark the order's after-sales as open (one at a time, by a conditional update) and add the refund;
    None when the order is not in ``expected`` state or already has one open."""
    opened = session.execute(
        update(Order)
        .where(Order.id == order.id, Order.status == expected, Order.after_sales_open.is_(False))
        .values(after_sales_open=True)
    ).rowcount
    if not opened:
        return None
    # Numbered per order (a rejected request may be followed by another): unique, and stable for WeChat.
    earlier = session.scalar(select(func.count()).select_from(Refund).where(Refund.order_id == order.id))
    refund = Refund(order_id=order.id, out_refund_no=f"RF{order.order_no[2:]}{earlier + 1:02d}",
                    amount_fen=order.total_fen, reason=reason, requested_by_user_id=requested_by_user_id)
    session.add(refund)
    session.flush()
    return refund


def _clean_reason(raw: str | None, missing: str) -> str:
    reason = " ".join((raw or "").split())[:MAX_REASON_LENGTH]
    if not reason:
        raise RefundError(missing)
    return reason


def approve_refund(session: Session, gateway: PayGateway, admin: AdminUser, refund_id: int) -> Refund:
    _require_finance(admin)
    with write_transaction(session):
        claimed = session.execute(
            update(Refund)
            # APPROVED too: if WeChat refunded but our last step failed, approving again finishes it (the same
            # out_refund_no never refunds twice at WeChat).
            .where(Refund.id == refund_id,
                   Refund.status.in_([RefundStatus.REQUESTED, RefundStatus.FAILED, RefundStatus.APPROVED]))
            .values(status=RefundStatus.APPROVED, reviewed_by_admin_id=admin.id, reviewed_at=utcnow())
        ).rowcount
        if not claimed:
            raise RefundError("该退款已处理。")
    refund = session.get(Refund, refund_id)
    order = session.get(Order, refund.order_id)
    try:
        gateway.refund(out_trade_no=order.order_no, out_refund_no=refund.out_refund_no,
                       total_fee=order.total_fen, refund_fee=refund.amount_fen)
    except PayError as exc:
        if exc.err_code not in REFUND_NOT_DONE:
            # No answer, or "try again": WeChat may have refunded. Stay APPROVED; approving again repeats
            # the same out_refund_no, which WeChat refunds at most once.
            raise RefundError(f"微信退款结果未知（{exc.message}），请稍后再次点击同意重试。") from exc
        with write_transaction(session):
            session.execute(update(Refund).where(Refund.id == refund_id)
                            .values(status=RefundStatus.FAILED, reject_reason=exc.message[:200]))
            record_audit(session, actor_kind="admin", actor_id=admin.id, action="refund.failed",
                         target_type="order", target_id=order.order_no, detail={"refund_id": refund_id})
        raise RefundError(f"微信退款失败：{exc.message}") from exc
    with write_transaction(session):
        finished = session.execute(
            update(Refund).where(Refund.id == refund_id, Refund.status == RefundStatus.APPROVED)
            .values(status=RefundStatus.SUCCEEDED, completed_at=utcnow())
        ).rowcount
        if not finished:
            # Two approvals at once: WeChat refunded once (same out_refund_no) and the other one finished it.
            raise RefundError("该退款已处理。")
        picked_up = order.status == OrderStatus.COMPLETED
        if not transition(session, order.id, OrderStatus.COMPLETED if picked_up else OrderStatus.PAID,
                          OrderStatus.REFUNDED, refunded_at=utcnow(), after_sales_open=False):
            # WeChat has paid the money back but the order moved on: never lose that fact.
            raise RuntimeError(f"order {order.order_no} changed state while refund {refund_id} was being paid")
        if not picked_up:
            release_order_stock(session, order)  # goods handed over stay with the buyer
        session.refresh(order)
        on_order_refunded(session, order)
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="refund.approve", target_type="order",
                     target_id=order.order_no, detail={"refund_id": refund_id, "amount_fen": refund.amount_fen})
    session.refresh(refund)
    return refund


def reject_refund(session: Session, admin: AdminUser, refund_id: int, reason: str) -> Refund:
    _require_finance(admin)
    reason = _clean_reason(reason, "请填写拒绝原因。")
    with write_transaction(session):
        rejected = session.execute(
            update(Refund).where(Refund.id == refund_id,
                                 Refund.status.in_([RefundStatus.REQUESTED, RefundStatus.FAILED]))
            .values(status=RefundStatus.REJECTED, reject_reason=reason, reviewed_by_admin_id=admin.id,
                    reviewed_at=utcnow())
        ).rowcount
        if not rejected:
            raise RefundError("该退款已处理。")
        refund = session.get(Refund, refund_id)
        session.execute(update(Order).where(Order.id == refund.order_id).values(after_sales_open=False))
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="refund.reject", target_type="refund",
                     target_id=refund_id, detail={"reason": reason})
    return refund


def _require_finance(admin: AdminUser) -> None:
    if admin.role not in MONEY_REVIEWERS:
        raise Forbidden("只有财务可以审核退款。")
