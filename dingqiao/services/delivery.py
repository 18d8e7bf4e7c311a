"""Delivering the outbox to WeChat (`flask deliver-messages`): 模板消息, or 订阅通知 to members who subscribed.

The business transaction wrote the message row; this runs later, outside any sale, so a WeChat outage can
never block or roll back one. A pass:

1. claims a batch: each row goes PENDING → SENDING with a conditional UPDATE (``WHERE status = PENDING AND
   next_attempt_at = <as read>``), so of two workers only one claims a row. A claim is a lease: a SENDING
   row whose worker died is claimable again once ``next_attempt_at`` (the lease end) has passed;
2. sends each claimed row outside any transaction — the event's template and typed keys from settings
   (``services.message_templates``), the member's openid, a link back into the H5;
3. records the outcome with another conditional UPDATE (only if this worker still holds the claim): SENT;
   SKIPPED (no template mapping for the event, no openid, the member does not follow the account or did not
   subscribe — the message stays in the in-app message centre); or back to PENDING with exponential backoff;
   FAILED after the last attempt or on an error retrying cannot fix (a bad template id, a value WeChat refuses
   — the error names the key and the value sent), for admins to see.

Delivery is at-least-once, and WeChat drops the repeats: a worker killed between WeChat's answer and step 3
leaves a row that is sent again after its lease, with the same ``client_msg_id`` (``dq-<row id>``); WeChat
sends one template message per openid and id within 10 minutes, and the lease is 5, so while workers run the
repeat is dropped by WeChat (only one sent after a longer stop can arrive twice). A one-time 订阅通知 sent
again finds its subscription used up (43101) and is recorded as in-app only.
"""
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import DeliveryStatus, OutboxMessage, User
from ..models.base import utcnow
from ..paging import Page, page_of
from .message_templates import MessageSetting, Outgoing, UnfittableValue, outgoing_for, refused_fields

LEASE = timedelta(minutes=5)
# WeChat errcodes no retry can fix: the template or the message is wrong — an admin must look.
PERMANENT_ERRORS = {40003, 40036, 40037, 41028, 41029, 41030, 47001, 47003}
INVALID_VALUE = 47003  # a key's value broke its type's rule, or was empty
# The member cannot receive the message (not following, blocked them, did not subscribe or used the
# subscription up): in-app only, not a failure.
UNREACHABLE_MEMBER = {43004, 43019, 43101}


class SendError(Exception):
    """What a sender raises: WeChat's errcode when WeChat answered, None when it could not be reached."""

    def __init__(self, message: str, errcode: int | None = None):
        super().__init__(message)
        self.errcode = errcode


# sender(openid, url, outgoing) → WeChat's msgid (0 when it gives none); raises SendError
Sender = Callable[[str, str, Outgoing], int]


@dataclass(frozen=True)
class DeliverySettings:
    messages: Mapping[str, MessageSetting]  # WECHAT_MESSAGES
    template_ids: Mapping[str, str]  # the older WECHAT_TEMPLATE_IDS, for events that write their template keys
    base_url: str
    max_attempts: int = 6
    retry_base_seconds: int = 30
    batch_size: int = 50


@dataclass
class PassResult:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
    outcomes: dict[int, str] = field(default_factory=dict)


def deliver_once(session: Session, sender: Sender, settings: DeliverySettings, worker_id: str,
                 now: datetime | None = None) -> PassResult:
    """One pass: claim a batch, send it, record each outcome."""
    now = now or utcnow()
    result = PassResult()
    for message_id in claim_batch(session, worker_id, settings.batch_size, now):
        result.claimed += 1
        outcome = _deliver(session, sender, settings, worker_id, message_id, now)
        result.outcomes[message_id] = outcome
        setattr(result, outcome, getattr(result, outcome) + 1)
    return result


def claim_batch(session: Session, worker_id: str, limit: int, now: datetime) -> list[int]:
    """Rows due now — pending ones, and SENDING ones whose lease ran out — claimed for ``worker_id``."""
    with write_transaction(session):
        due = session.execute(
            select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.next_attempt_at)
            .where(OutboxMessage.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
                   OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(limit)
        ).all()
        claimed = []
        for message_id, status, next_attempt_at in due:
            taken = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id, OutboxMessage.status == status,
                       OutboxMessage.next_attempt_at == next_attempt_at)
                .values(status=DeliveryStatus.SENDING, claimed_by=worker_id, next_attempt_at=now + LEASE)
            ).rowcount
            if taken:
                claimed.append(message_id)
    return claimed


def _deliver(session: Session, sender: Sender, settings: DeliverySettings, worker_id: str, message_id: int,
             now: datetime) -> str:
    message = session.get(OutboxMessage, message_id)
    openid = session.scalar(select(User.openid).where(User.id == message.user_id))
    unfit = ""
    try:
        outgoing = outgoing_for(message, settings.messages, settings.template_ids)
    except UnfittableValue as exc:
        outgoing, unfit = None, f"not sent, WeChat would refuse {exc}"
    link, attempts, event = message.link, message.attempts + 1, message.event
    session.rollback()  # end the read transaction: nothing is held while WeChat answers
    if outgoing is None and not unfit:
        return _record(session, worker_id, message_id, DeliveryStatus.SKIPPED, "no template mapping")
    if not openid:
        return _record(session, worker_id, message_id, DeliveryStatus.SKIPPED, "no WeChat openid")
    if unfit:
        return _record(session, worker_id, message_id, DeliveryStatus.FAILED, f"{event}: {unfit}", attempts=attempts)
    url = f"{settings.base_url}{link}" if link.startswith("/") else link
    try:
        sender(openid, url, outgoing)
    except SendError as exc:
        error = f"{exc.errcode}: {exc}" if exc.errcode is not None else str(exc)
        if exc.errcode == INVALID_VALUE:
            error = f"{exc.errcode}: WeChat refused {refused_fields(str(exc), outgoing.data)} ({exc})"
        if exc.errcode in UNREACHABLE_MEMBER:
            return _record(session, worker_id, message_id, DeliveryStatus.SKIPPED, error)
        if exc.errcode in PERMANENT_ERRORS or attempts >= settings.max_attempts:
            return _record(session, worker_id, message_id, DeliveryStatus.FAILED, error, attempts=attempts)
        delay = timedelta(seconds=settings.retry_base_seconds * 2 ** (attempts - 1))
        return _record(session, worker_id, message_id, DeliveryStatus.PENDING, error, attempts=attempts,
                       next_attempt_at=now + delay)
    return _record(session, worker_id, message_id, DeliveryStatus.SENT, "", attempts=attempts, sent_at=utcnow())


OUTCOME = {DeliveryStatus.SENT: "sent", DeliveryStatus.SKIPPED: "skipped", DeliveryStatus.PENDING: "retried",
           DeliveryStatus.FAILED: "failed"}


def _record(session: Session, worker_id: str, message_id: int, status: DeliveryStatus, error: str, **values) -> str:
    """The outcome, only while this worker still holds the claim (a lease that ran out belongs to another)."""
    with write_transaction(session):
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.status == DeliveryStatus.SENDING,
                   OutboxMessage.claimed_by == worker_id)
            .values(status=status, last_error=error[:500], **values)
        )
    return OUTCOME[status]


def failed_messages(session: Session, page: int | None = None) -> Page:
    """For the admin pages: messages WeChat would not take, newest first, a page at a time."""
    return page_of(session, select(OutboxMessage).where(OutboxMessage.status == DeliveryStatus.FAILED)
                   .order_by(OutboxMessage.id.desc()), page, scalars=True)


def retry_failed(session: Session, message_id: int) -> bool:
    """An admin sends a failed message again (after fixing the template id, say)."""
    with write_transaction(session):
        return bool(session.execute(
            update(OutboxMessage).where(OutboxMessage.id == message_id, OutboxMessage.status == DeliveryStatus.FAILED)
            .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=utcnow(), last_error="")
        ).rowcount)
