"""Version numbers of what the page caches keep (services/cache_versions.py): one row per kind of data."""
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class CacheVersion(db.Model):
    """``version`` goes up by one in the transaction of every save of its kind of data; every cache key of that
    data carries it, so every worker reads the new version with its next request and stops using old copies."""

    __tablename__ = "cache_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(default=0)
