"""What happens, inside the order's own transaction, when an order is paid, picked up or refunded: commission
lines, messages, and the identity upgrade a purchase may complete (``upgrades.on_purchase_counted``).

The payment, redemption and refund services call these at the one point where the order's state changes,
so commission lines, wallet entries and outbox messages commit or roll back with that change.
"""
from collections import defaultdict

from sqlalchemy.orm import Session

from ..models import CommissionRuleVersion, CountsAt, Order
from ..money import format_yuan
from .commissions import Line, reverse_order_lines, settle_order_lines, write_order_lines
from .messages import enqueue_message, enqueue_rows, message_row
from .upgrades import on_purchase_counted


def on_order_paid(session: Session, order, rule: CommissionRuleVersion | None) -> None:
    """``order``: anything with the order's ``id``, ``order_no``, ``user_id``, ``outlet_id`` and ``total_fen``;
    ``rule``: the commission rule in force, already stamped on the order."""
    lines = write_order_lines(session, order, rule)
    enqueue_rows(session, [
        message_row(user_id=order.user_id, event="order_paid", object_id=order.id, title="支付成功，待自提",
                    body=f"订单 {order.order_no} 已支付，请凭核销码到门店自提。", link=f"/orders/{order.order_no}",
                    template_data={"order_no": order.order_no, "amount": order.total_fen}),
        *(message_row(user_id=user_id, event="commission_frozen", object_id=f"{order.id}:{user_id}",
                      title="新增待结算收益", body=f"有一笔 {format_yuan(amount)} 的收益待买家提货后结算。",
                      link="/wallet/", template_data={"order_no": order.order_no, "amount": amount})
          for user_id, amount in _per_beneficiary(lines).items()),
    ])
    on_purchase_counted(session, order.user_id, CountsAt.PAID)


def on_order_redeemed(session: Session, order) -> None:
    """``order``: anything with the order's ``id``, ``order_no``, ``user_id`` and ``rule_version_id``."""
    settle_order_lines(session, order)
    enqueue_rows(session, [message_row(
        user_id=order.user_id, event="order_redeemed", object_id=order.id, title="已提货",
        body=f"订单 {order.order_no} 已在门店提货，感谢惠顾。", link=f"/orders/{order.order_no}",
        template_data={"order_no": order.order_no},
    )])
    on_purchase_counted(session, order.user_id, CountsAt.REDEEMED)


def on_order_refunded(session: Session, order: Order) -> None:
    reverse_order_lines(session, order)
    enqueue_message(
        session, user_id=order.user_id, event="order_refunded", object_id=order.id, title="退款成功",
        body=f"订单 {order.order_no} 已退款，款项将原路退回。", link=f"/orders/{order.order_no}",
        template_data={"order_no": order.order_no},
    )


def _per_beneficiary(lines: list[Line]) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for line in lines:
        totals[line.beneficiary_user_id] += line.amount_fen
    return dict(totals)
