"""Customer service (售后): a case per request — on an order or general — with a message thread between the
member and the operations team, and photos attached to messages."""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import one_of, utcnow


class CaseKind(StrEnum):
    REFUND = "refund"  # 退款
    QUALITY = "quality"  # 质量问题
    OTHER = "other"  # 其他

    @property
    def label(self) -> str:
        return {"refund": "退款", "quality": "质量问题", "other": "其他"}[self.value]


class CaseStatus(StrEnum):
    OPEN = "open"  # waiting for the team
    ANSWERED = "answered"  # the team replied, waiting for the member
    CLOSED = "closed"

    @property
    def label(self) -> str:
        return {"open": "待处理", "answered": "已回复", "closed": "已关闭"}[self.value]


class ServiceCase(db.Model):
    __tablename__ = "service_cases"
    __table_args__ = (
        one_of("kind", CaseKind, "kind"),
        one_of("status", CaseStatus, "status"),
        Index("ix_service_cases_user", "user_id", "id"),
        Index("ix_service_cases_status", "status", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_no: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.OPEN)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]

    messages: Mapped[list["ServiceMessage"]] = relationship(order_by="ServiceMessage.id", back_populates="case")


class ServiceMessage(db.Model):
    """One message of a case's thread: from the member (author_user_id) or from an admin (author_admin_id)."""

    __tablename__ = "service_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("service_cases.id"), index=True)
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    author_admin_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[ServiceCase] = relationship(back_populates="messages")
    photos: Mapped[list["ServicePhoto"]] = relationship(order_by="ServicePhoto.id")


class ServicePhoto(db.Model):
    __tablename__ = "service_photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("service_messages.id"), index=True)
    # relative to the uploads folder; re-encoded by us. Unique: the media route looks a photo up by it.
    path: Mapped[str] = mapped_column(String(256), unique=True)
    width: Mapped[int]
    height: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BannerTarget(StrEnum):
    PRODUCT = "product"
    CATEGORY = "category"
    ARTICLE = "article"


class Banner(db.Model):
    """A home-page banner linking to a product, a category or an article."""

    __tablename__ = "banners"
    __table_args__ = (one_of("target_kind", BannerTarget, "target_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(64))
    image_path: Mapped[str] = mapped_column(String(256))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[int]
    sort_order: Mapped[int] = mapped_column(default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArticleKind(StrEnum):
    BRAND = "brand"  # 品牌展示
    PRODUCT = "product"  # 产品故事 / 内容营销


class Article(db.Model):
    """Brand and product articles; ``body_html`` is sanitised when it is saved, never at display time."""

    __tablename__ = "articles"
    __table_args__ = (one_of("kind", ArticleKind, "kind"), Index("ix_articles_published", "is_published", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default=ArticleKind.BRAND)
    title: Mapped[str] = mapped_column(String(128))
    summary: Mapped[str] = mapped_column(String(256), default="")
    cover_path: Mapped[str | None] = mapped_column(String(256))
    body_html: Mapped[str] = mapped_column(Text, default="")
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    is_published: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Announcement(db.Model):
    """公告 on the home page while active (and inside its dates, when given)."""

    __tablename__ = "announcements"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200))
    link: Mapped[str] = mapped_column(String(256), default="")
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
