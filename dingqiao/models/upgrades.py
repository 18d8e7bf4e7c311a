"""Identity upgrades: the rules that let a member become an outlet or an outlet a factory store, and the
applications that carry the shop's details.

Only measures of real goods bought or supplied can be a rule's condition (the CHECK on ``metric``): a product
or fee that unlocks an identity would be a disguised entry fee (入门费), refused by the service and the database.
"""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import one_of, utcnow
from .network import Region
from .users import User


class UpgradeTarget(StrEnum):
    OUTLET = "outlet"
    FACTORY = "factory"

    @property
    def label(self) -> str:
        return {"outlet": "核销网点", "factory": "工厂店"}[self.value]


class UpgradeMetric(StrEnum):
    GOODS_PURCHASES = "goods_purchases"  # the applicant's own paid purchases of goods, refunds excluded
    RESTOCK_VOLUME = "restock_volume"  # goods the applicant's outlet received through restock orders

    @property
    def label(self) -> str:
        return {"goods_purchases": "累计购买实物商品", "restock_volume": "门店累计进货"}[self.value]


class CountsAt(StrEnum):
    PAID = "paid"  # a purchase counts once paid: the upgrade happens in the payment transaction
    REDEEMED = "redeemed"  # a purchase counts once picked up: the upgrade happens in the redemption transaction

    @property
    def label(self) -> str:
        return {"paid": "以支付为准", "redeemed": "以提货为准"}[self.value]


class GrantMode(StrEnum):
    AUTO = "auto"  # granted the moment the rule holds
    REVIEW = "review"  # met applications wait for an admin
    CLOSED = "closed"  # no applications taken

    @property
    def label(self) -> str:
        return {"auto": "达标自动开通", "review": "达标后人工审核", "closed": "暂停申请"}[self.value]


class IdentityRuleVersion(db.Model):
    """A rule for one target identity. Never edited: a change is a new version; the newest per target rules."""

    __tablename__ = "identity_rule_versions"
    __table_args__ = (
        one_of("target", UpgradeTarget, "target"),
        one_of("metric", UpgradeMetric, "metric"),
        one_of("counts_at", CountsAt, "counts_at"),
        one_of("grant_mode", GrantMode, "grant_mode"),
        CheckConstraint("threshold_fen > 0", name="threshold_positive"),
        Index("ix_identity_rule_versions_target", "target", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(32))
    threshold_fen: Mapped[int]
    counts_at: Mapped[str] = mapped_column(String(16), default=CountsAt.REDEEMED)
    grant_mode: Mapped[str] = mapped_column(String(16), default=GrantMode.AUTO)
    note: Mapped[str] = mapped_column(String(256), default="")
    created_by_admin_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApplicationStatus(StrEnum):
    WAITING = "waiting"  # details filed, the rule does not hold yet; granted by the purchase that meets it
    REVIEW = "review"  # the rule holds, an admin decides
    GRANTED = "granted"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"

    @property
    def label(self) -> str:
        return {"waiting": "等待达标", "review": "待审核", "granted": "已开通", "refused": "未通过",
                "withdrawn": "已撤回"}[self.value]


OPEN_APPLICATION = (ApplicationStatus.WAITING, ApplicationStatus.REVIEW)


class IdentityApplication(db.Model):
    """An application to become an outlet or a factory store, with the shop's details. One open per user."""

    __tablename__ = "identity_applications"
    __table_args__ = (
        one_of("target", UpgradeTarget, "target"),
        one_of("status", ApplicationStatus, "status"),
        CheckConstraint("latitude_e6 IS NULL OR latitude_e6 BETWEEN -90000000 AND 90000000", name="latitude_range"),
        CheckConstraint("longitude_e6 IS NULL OR longitude_e6 BETWEEN -180000000 AND 180000000",
                        name="longitude_range"),
        # At most one open application per person, at the database.
        Index("uq_identity_applications_open", "user_id", unique=True,
              sqlite_where=text("status IN ('waiting', 'review')"),
              postgresql_where=text("status IN ('waiting', 'review')")),
        Index("ix_identity_applications_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    target: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    shop_name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(256))
    latitude_e6: Mapped[int | None]
    longitude_e6: Mapped[int | None]
    phone: Mapped[str] = mapped_column(String(20), default="")
    opening_hours: Mapped[str] = mapped_column(String(64), default="")
    # The rule version that was in force when the application was granted or sent to review.
    rule_version_id: Mapped[int | None] = mapped_column(ForeignKey("identity_rule_versions.id"))
    decision_reason: Mapped[str] = mapped_column(String(256), default="")
    decided_by_admin_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    is_auto: Mapped[bool] = mapped_column(Boolean, default=False)  # granted by the rule, not by an admin

    user: Mapped[User] = relationship()
    region: Mapped[Region] = relationship()
