"""The offline network: regions, factory stores, outlets (核销网点), their staff, and stock locations."""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import one_of, utcnow


class Region(db.Model):
    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    factory_store: Mapped["FactoryStore | None"] = relationship(back_populates="region", uselist=False)

    def __str__(self) -> str:
        return self.name


class LocationKind(StrEnum):
    PLATFORM = "platform"
    FACTORY = "factory"
    OUTLET = "outlet"


class StockLocation(db.Model):
    """A place that holds goods: the platform warehouse, a factory store or an outlet."""

    __tablename__ = "stock_locations"
    __table_args__ = (one_of("kind", LocationKind, "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))


class SiteStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"

    @property
    def label(self) -> str:
        return {"pending": "待开通", "active": "营业中", "suspended": "已暂停"}[self.value]


class FactoryStore(db.Model):
    """工厂店: holds one region exclusively — the unique region_id is the database's guarantee of it."""

    __tablename__ = "factory_stores"
    __table_args__ = (one_of("status", SiteStatus, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), unique=True)
    owner_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("stock_locations.id"), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(256), default="")
    phone: Mapped[str] = mapped_column(String(20), default="")
    status: Mapped[str] = mapped_column(String(16), default=SiteStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    region: Mapped[Region] = relationship(back_populates="factory_store")
    location: Mapped[StockLocation] = relationship()


class Outlet(db.Model):
    """核销网点: a community pickup point. Coordinates are integer micro-degrees (GCJ-02, as WeChat gives them),
    so the bounding-box prefilter of "nearby outlets" is a plain integer range scan."""

    __tablename__ = "outlets"
    __table_args__ = (
        one_of("status", SiteStatus, "status"),
        CheckConstraint("latitude_e6 BETWEEN -90000000 AND 90000000", name="latitude_range"),
        CheckConstraint("longitude_e6 BETWEEN -180000000 AND 180000000", name="longitude_range"),
        Index("ix_outlets_position", "latitude_e6", "longitude_e6"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)
    owner_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("stock_locations.id"), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(256))
    latitude_e6: Mapped[int]
    longitude_e6: Mapped[int]
    phone: Mapped[str] = mapped_column(String(20), default="")
    opening_hours: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default=SiteStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    region: Mapped[Region] = relationship()
    location: Mapped[StockLocation] = relationship()

    def __str__(self) -> str:
        return self.name


class OutletStaff(db.Model):
    """核销员: may redeem for one outlet. Removing the row removes the access at once."""

    __tablename__ = "outlet_staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlets.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffInvite(db.Model):
    """A one-time link (shown as a QR code) an outlet owner hands to a new 核销员. Only the token's SHA-256 is
    stored; the link works once and until it expires."""

    __tablename__ = "staff_invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlets.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
