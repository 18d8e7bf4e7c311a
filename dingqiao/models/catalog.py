"""Catalog: categories and products with one price per identity, plus the per-user cart."""
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import utcnow
from .users import Identity


class Category(db.Model):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    sort_order: Mapped[int] = mapped_column(default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    def __str__(self) -> str:
        return self.name


class Product(db.Model):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint(
            "member_price_fen > 0 AND outlet_price_fen > 0 AND factory_price_fen > 0", name="prices_positive"
        ),
        CheckConstraint("NOT (price_review_pending AND is_on_sale)", name="priced_before_sale"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    subtitle: Mapped[str] = mapped_column(String(128), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    unit: Mapped[str] = mapped_column(String(8), default="件")
    member_price_fen: Mapped[int]
    outlet_price_fen: Mapped[int]
    factory_price_fen: Mapped[int]
    is_on_sale: Mapped[bool] = mapped_column(Boolean, default=True)
    # An operator created it: off sale until finance (or the superadmin) has checked its prices and put it on
    # sale (docs/admin.md, "Who may change what moves money").
    price_review_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    sort_order: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    category: Mapped[Category] = relationship()
    images: Mapped[list["ProductImage"]] = relationship(order_by="ProductImage.sort_order")

    def price_for(self, identity: str) -> int:
        return {
            Identity.MEMBER: self.member_price_fen,
            Identity.OUTLET: self.outlet_price_fen,
            Identity.FACTORY: self.factory_price_fen,
        }[Identity(identity)]

    @property
    def cover_path(self) -> str | None:
        return self.images[0].path if self.images else None

    @property
    def cover_thumb_path(self) -> str | None:
        """The small copy for lists and the cart; images from before thumbnails existed fall back to the cover."""
        return (self.images[0].thumb_path or self.images[0].path) if self.images else None


class ProductImage(db.Model):
    __tablename__ = "product_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    path: Mapped[str] = mapped_column(String(256))  # relative to the instance uploads folder
    thumb_path: Mapped[str | None] = mapped_column(String(256))
    sort_order: Mapped[int] = mapped_column(default=0)


class CartItem(db.Model):
    __tablename__ = "cart_items"
    __table_args__ = (
        UniqueConstraint("user_id", "product_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int]
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    product: Mapped[Product] = relationship()
