"""Orders and their money trail: items with price snapshots, payments, notify records, refunds.

State machine: PENDING_PAYMENT → PAID → COMPLETED; PENDING_PAYMENT → CANCELLED;
PAID → REFUNDED. Every transition is one conditional UPDATE on ``status``.
"""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import one_of, utcnow
from .users import Identity


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"

    @property
    def label(self) -> str:
        return {
            "pending_payment": "待支付",
            "paid": "待自提",
            "completed": "已完成",
            "cancelled": "已取消",
            "refunded": "已退款",
        }[self.value]


class Order(db.Model):
    __tablename__ = "orders"
    __table_args__ = (
        one_of("status", OrderStatus, "status"),
        one_of("price_identity", Identity, "price_identity"),
        CheckConstraint("total_fen >= 0", name="total_not_negative"),
        Index("ix_orders_user_status_created", "user_id", "status", "created_at"),
        Index("ix_orders_outlet_status", "outlet_id", "status"),
        Index("ix_orders_outlet_paid", "outlet_id", "paid_at"),  # outlet and regional dashboards by day
        Index("ix_orders_paid_at", "paid_at"),  # the admin dashboard's sales by day
        Index("ix_orders_created_at", "created_at"),  # exports and the admin order list by date
        Index("ix_orders_status_expires", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlets.id"))
    status: Mapped[str] = mapped_column(String(20), default=OrderStatus.PENDING_PAYMENT)
    price_identity: Mapped[str] = mapped_column(String(16))
    total_fen: Mapped[int]
    # Single-use, random digits from `secrets`; unique across all orders, so never ambiguous.
    pickup_code: Mapped[str | None] = mapped_column(String(24), unique=True)
    rule_version_id: Mapped[int | None] = mapped_column(ForeignKey("commission_rule_versions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    redeemed_at: Mapped[datetime | None]
    redeemed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str] = mapped_column(String(64), default="")
    refunded_at: Mapped[datetime | None]
    # An open refund or after-sales request: redemption waits until it is decided.
    after_sales_open: Mapped[bool] = mapped_column(default=False)

    items: Mapped[list["OrderItem"]] = relationship(order_by="OrderItem.id")
    outlet: Mapped["Outlet"] = relationship()  # noqa: F821 - resolved by the registry
    user: Mapped["User"] = relationship(foreign_keys=[user_id])  # noqa: F821 - resolved by the registry

    @property
    def status_enum(self) -> OrderStatus:
        return OrderStatus(self.status)


class OrderItem(db.Model):
    """A line of an order with the product's name and price as they were when the order was placed."""

    __tablename__ = "order_items"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_fen >= 0 AND subtotal_fen = unit_price_fen * quantity", name="subtotal"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    product_name: Mapped[str] = mapped_column(String(64))
    unit_price_fen: Mapped[int]
    quantity: Mapped[int]
    subtotal_fen: Mapped[int]


# Status groups, named once: an order that was paid for and has not been refunded (it counts as a sale, for
# a team, a dashboard or an upline's first purchase), and a refund WeChat has been asked for but not answered.
PAID_ORDER_STATES = (OrderStatus.PAID, OrderStatus.COMPLETED)


class PaymentStatus(StrEnum):
    CREATED = "created"
    PAID = "paid"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        return {"created": "待支付", "paid": "已支付", "closed": "已关闭"}[self.value]


class Payment(db.Model):
    """One WeChat Pay attempt for an order. out_trade_no and transaction_id are unique: idempotency keys."""

    __tablename__ = "payments"
    __table_args__ = (
        one_of("status", PaymentStatus, "status"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    transaction_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    amount_fen: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.CREATED)
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    # The WeChat Pay API that took it ("v2" or "v3"): its refunds go through the same one.
    api: Mapped[str] = mapped_column(String(4), default="v2", server_default="v2")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None]


class PaymentEventKind(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    BAD_SIGNATURE = "bad_signature"
    MISMATCH = "mismatch"  # amount, merchant or app id differ from the order
    UNKNOWN_ORDER = "unknown_order"
    AFTER_CANCEL = "after_cancel"  # money arrived for a cancelled order: needs a refund
    DOUBLE_PAYMENT = "double_payment"  # a second, different transaction for an order already paid
    MALFORMED = "malformed"
    # WeChat reports money moved (a refund paid, a payout made) that we had already recorded as not moved: finance
    # must reconcile it by hand. BAD_SIGNATURE and MALFORMED are no longer written (refused_notifies counts
    # those); they stay for rows written before.
    LATE_RESULT = "late_result"


class PaymentEvent(db.Model):
    """Every pay notify or order-query result we saw, kept for admins; the odd ones need someone's attention."""

    __tablename__ = "payment_events"
    __table_args__ = (
        one_of("kind", PaymentEventKind, "kind"),
        CheckConstraint("refund_state IS NULL OR refund_state IN ('processing', 'succeeded', 'failed')",
                        name="refund_state"),
        # One refund offer per WeChat transaction, however many times (and however concurrently) its notify comes.
        Index("uq_payment_events_refund_offer", "transaction_id", unique=True,
              sqlite_where=text("kind = 'after_cancel'"), postgresql_where=text("kind = 'after_cancel'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(64), default="", index=True)
    transaction_id: Mapped[str] = mapped_column(String(64), default="")
    amount_fen: Mapped[int | None]
    detail: Mapped[str] = mapped_column(Text, default="")
    needs_attention: Mapped[bool] = mapped_column(default=False)
    resolved_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Money for a cancelled order going back (after_cancel): the refund number in flight or to use next, and
    # what WeChat said of it — processing, succeeded (the event is then resolved) or failed, with the reason.
    refund_no: Mapped[str | None] = mapped_column(String(32), unique=True)
    refund_state: Mapped[str | None] = mapped_column(String(16))
    refund_reason: Mapped[str] = mapped_column(String(200), default="")


class RefundStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"  # sent to WeChat, no answer yet (or none that says what happened)
    PROCESSING = "processing"  # WeChat accepted it; its result comes by notify or query
    REJECTED = "rejected"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # refused by WeChat, or closed after it accepted it (then wechat_refund_id is set)

    @property
    def label(self) -> str:
        return {"requested": "待审核", "approved": "已提交微信，结果未知", "processing": "微信退款处理中",
                "rejected": "已拒绝", "succeeded": "已退款", "failed": "退款失败"}[self.value]


REFUNDS_IN_FLIGHT = (RefundStatus.APPROVED, RefundStatus.PROCESSING)  # with WeChat, result not known yet


class Refund(db.Model):
    __tablename__ = "refunds"
    __table_args__ = (
        one_of("status", RefundStatus, "status"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    # Stable across retries of one WeChat refund; a retry after WeChat closed the refund gets a new one
    # (…-2, …-3: the closed number would only ever answer "closed").
    out_refund_no: Mapped[str] = mapped_column(String(32), unique=True)
    wechat_refund_id: Mapped[str | None] = mapped_column(String(64))  # set once WeChat accepted this number
    amount_fen: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.REQUESTED)
    reason: Mapped[str] = mapped_column(String(256), default="")
    reject_reason: Mapped[str] = mapped_column(String(256), default="")
    requested_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_by_admin_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reviewed_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
