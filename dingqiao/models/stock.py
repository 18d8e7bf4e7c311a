"""Stock per location and every change to it, plus restock orders (进货单) up the supply chain."""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import one_of, utcnow


class StockLevel(db.Model):
    """On hand and reserved for one product at one location. Reservations and deductions are conditional
    updates against these CHECKs, so stock can never be sold twice or go negative."""

    __tablename__ = "stock_levels"
    __table_args__ = (
        UniqueConstraint("location_id", "product_id"),
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
        CheckConstraint("low_stock_threshold >= 0", name="threshold_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("stock_locations.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    on_hand: Mapped[int] = mapped_column(default=0)
    reserved: Mapped[int] = mapped_column(default=0)
    low_stock_threshold: Mapped[int] = mapped_column(default=0)

    @hybrid_property
    def available(self) -> int:
        """What can still be sold or shipped: on hand less what paid orders hold. The same expression in a query
        (``StockLevel.available >= n``) and on a loaded row."""
        return self.on_hand - self.reserved


class StockReason(StrEnum):
    RESTOCK_IN = "restock_in"
    RESTOCK_OUT = "restock_out"
    RESERVE = "reserve"
    RELEASE = "release"
    REDEEM = "redeem"
    ADJUST = "adjust"
    INITIAL = "initial"

    @property
    def label(self) -> str:
        return {"restock_in": "进货入库", "restock_out": "发货出库", "reserve": "订单预留", "release": "取消释放",
                "redeem": "顾客提货", "adjust": "手动调整", "initial": "初始库存"}[self.value]

    @classmethod
    def labels(cls) -> dict[str, str]:
        """Each stored reason's label, for pages that list movements."""
        return {reason.value: reason.label for reason in cls}


class StockMovement(db.Model):
    """Append-only: the stock level of a location is the sum of its movements."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        one_of("reason", StockReason, "reason"),
        Index("ix_stock_movements_location_product", "location_id", "product_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("stock_locations.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    on_hand_delta: Mapped[int] = mapped_column(default=0)
    reserved_delta: Mapped[int] = mapped_column(default=0)
    reason: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    restock_order_id: Mapped[int | None] = mapped_column(ForeignKey("restock_orders.id"), index=True)
    note: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RestockStatus(StrEnum):
    PENDING = "pending"  # placed, not shipped yet; may be cancelled
    SHIPPING = "shipping"  # partly shipped
    SHIPPED = "shipped"
    RECEIVED = "received"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return {"pending": "待发货", "shipping": "部分发货", "shipped": "已发货", "received": "已收货",
                "cancelled": "已取消"}[self.value]


class RestockOrder(db.Model):
    __tablename__ = "restock_orders"
    __table_args__ = (
        one_of("status", RestockStatus, "status"),
        CheckConstraint("from_location_id <> to_location_id", name="distinct_locations"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    restock_no: Mapped[str] = mapped_column(String(32), unique=True)
    from_location_id: Mapped[int] = mapped_column(ForeignKey("stock_locations.id"), index=True)
    to_location_id: Mapped[int] = mapped_column(ForeignKey("stock_locations.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=RestockStatus.PENDING)
    total_fen: Mapped[int] = mapped_column(default=0)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(String(200), default="")
    cancel_reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    items: Mapped[list["RestockItem"]] = relationship()


class RestockItem(db.Model):
    __tablename__ = "restock_items"
    __table_args__ = (
        UniqueConstraint("restock_order_id", "product_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("shipped_quantity BETWEEN 0 AND quantity", name="shipped_within_ordered"),
        CheckConstraint("received_quantity BETWEEN 0 AND shipped_quantity", name="received_within_shipped"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    restock_order_id: Mapped[int] = mapped_column(ForeignKey("restock_orders.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    unit_price_fen: Mapped[int]
    quantity: Mapped[int]
    shipped_quantity: Mapped[int] = mapped_column(default=0)
    received_quantity: Mapped[int] = mapped_column(default=0)
