"""Replay protection for requests whose signature covers a timestamp and a nonce but not the whole request
(WeChat's server callback in plain mode signs neither the body nor the handshake's echostr)."""
import hashlib
from enum import StrEnum

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import run, write_transaction
from ..models import CallbackNonce


class NonceClaim(StrEnum):
    FIRST = "first"  # never seen: act on the request
    REPEAT = "repeat"  # byte for byte a request already accepted: a retry of something already acted on
    REUSED = "reused"  # the nonce of another request: someone replaying a signed URL with content of their own


_CLAIM = insert(CallbackNonce).values(timestamp=bindparam("timestamp"), nonce=bindparam("nonce"),
                                      request_digest=bindparam("digest"))
# A pair older than the accepted skew is refused for its age before it gets here, so its row is no longer needed.
_PURGE = delete(CallbackNonce).where(CallbackNonce.timestamp < bindparam("oldest"))
_RELEASE = delete(CallbackNonce).where(CallbackNonce.timestamp == bindparam("timestamp"),
                                      CallbackNonce.nonce == bindparam("nonce"))
_DIGEST = select(CallbackNonce.request_digest).where(CallbackNonce.timestamp == bindparam("timestamp"),
                                                     CallbackNonce.nonce == bindparam("nonce"))


def claim_nonce(session: Session, timestamp: int, nonce: str, unsigned_content: bytes, *, oldest: int) -> NonceClaim:
    """Record that the request signed with (``timestamp``, ``nonce``) was accepted. The primary key decides,
    so two workers given the same pair at once cannot both see it as the first. ``oldest``: the earliest
    timestamp still accepted; rows before it are deleted in the same transaction."""
    digest = hashlib.sha256(unsigned_content).hexdigest()
    params = {"timestamp": timestamp, "nonce": nonce}
    try:
        with write_transaction(session):
            run(session, _PURGE, {"oldest": oldest})
            run(session, _CLAIM, {**params, "digest": digest})
        return NonceClaim.FIRST
    except IntegrityError:
        session.rollback()
    seen = session.execute(_DIGEST, params).scalar_one_or_none()
    return NonceClaim.REPEAT if seen == digest else NonceClaim.REUSED


def release_nonce(session: Session, timestamp: int, nonce: str) -> None:
    """Forget a claim whose request could not be acted on, so that WeChat's retry of it is acted on."""
    session.rollback()
    with write_transaction(session):
        run(session, _RELEASE, {"timestamp": timestamp, "nonce": nonce})
