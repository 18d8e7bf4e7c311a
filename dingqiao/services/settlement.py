"""What happens, inside the order's own transaction, when an order is paid or refunded.

The payment and refund services call these at the one point where the order's state changes, so
everything here commits or rolls back with that change. The commission engine hooks in here.
"""
from sqlalchemy.orm import Session

from ..models import Order
from .messages import enqueue_message


def on_order_paid(session: Session, order: Order) -> None:
    enqueue_message(
        session,
        user_id=order.user_id,
        event="order_paid",
        object_id=order.id,
        title="支付成功，待自提",
        body=f"订单 {order.order_no} 已支付，请凭核销码到门店自提。",
        link=f"/orders/{order.order_no}",
    )


def on_order_refunded(session: Session, order: Order) -> None:
    enqueue_message(
        session,
        user_id=order.user_id,
        event="order_refunded",
        object_id=order.id,
        title="退款成功",
        body=f"订单 {order.order_no} 已退款，款项将原路退回。",
        link=f"/orders/{order.order_no}",
    )
