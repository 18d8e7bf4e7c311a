"""What the app remembers only to refuse abuse: the WeChat callback's used nonces and the rate-limit counters.
Both are short-lived rows in the app's own database, so every gunicorn worker (and every host on one
database) sees the same ones; expired rows are deleted by the code that writes them."""
from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class CallbackNonce(db.Model):
    """A (timestamp, nonce) pair the server callback accepted. Its key is the primary key: a second insert of
    the same pair fails, which is how a replayed request is recognised. Rows older than the accepted clock
    skew are useless (such a timestamp is refused anyway) and deleted."""

    __tablename__ = "callback_nonces"

    timestamp: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # WeChat's, Unix seconds
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    # sha256 of what the signature does not cover (the body; the handshake's echostr): a byte-identical
    # repeat is WeChat retrying a request it got no answer to, anything else under the same nonce a forgery.
    request_digest: Mapped[str] = mapped_column(String(64))


class RateLimitCounter(db.Model):
    """One fixed-window counter of Flask-Limiter (``dingqiao.ratelimit.DatabaseStorage``)."""

    __tablename__ = "rate_limit_counters"
    __table_args__ = (
        CheckConstraint("hits >= 0", name="hits_not_negative"),
        Index("ix_rate_limit_counters_expires_at_ms", "expires_at_ms"),  # the purge of ended windows
    )

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    hits: Mapped[int]
    # Unix time in milliseconds (an integer: no float column anywhere; the limits library counts in seconds)
    expires_at_ms: Mapped[int]
