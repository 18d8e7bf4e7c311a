"""One-time submission keys: a form that moves money or stock carries a fresh random key (``new_key``, put in the
form by the ``submission_key_field()`` template helper), and the service that writes claims the key inside its
own write transaction:

    with write_transaction(session):
        earlier = submissions.claim(session, key, actor=f"member:{user_id}", action="withdraw")
        if earlier is not None:
            return session.get(Withdrawal, earlier)     # the first answer, nothing written
        withdrawal = ...                                # the write
        submissions.remember(session, key, withdrawal.id)

The key row commits or rolls back with the write, so a repeat (a double tap, a retried request, a replay) finds
either nothing — the first attempt failed and wrote nothing, so this one runs — or the first result. Two copies
racing each other: on SQLite the writers already run one at a time; on Postgres the second INSERT waits on the
primary key until the first transaction ends, then finds its row.

A key is bound to who sent it and to which form: someone else's key, or a key from another form, is refused
rather than answered with another person's result. A request without a key (an API client, an old page) is
served without the repeat check; the state checks of each service still refuse what cannot happen twice.
"""
import re
import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..db import insert_or_ignore, write_transaction
from ..models import SubmissionKey
from ..models.base import utcnow
from . import Conflict, DomainError, NotFound

FIELD_NAME = "submission_key"
KEEP_FOR = timedelta(days=7)
_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class SubmissionRefused(Conflict):
    pass


def new_key() -> str:
    """A fresh key for one rendering of a form (22 URL-safe characters, 128 random bits)."""
    return secrets.token_urlsafe(16)


def clean_key(raw: str | None) -> str | None:
    """The key from a form: None when absent; a malformed one is refused (it was not made by our page)."""
    if raw is None or raw == "":
        return None
    if not _SHAPE.match(raw):
        raise DomainError("页面已过期，请刷新后重试。")
    return raw


def claim(session: Session, key: str | None, *, actor: str, action: str, target: int | str | None = None) -> int | None:
    """Inside the caller's write transaction: claim ``key`` for this write. Returns None when the write should
    go ahead, or the first submission's result id when this is a repeat (the caller answers with it and writes
    nothing). A repeat whose first run stored no result id returns 0. ``target``: the row the form acts on (the
    restock being shipped, the refund being approved); the same key sent against another row is refused rather
    than answered with the first row's result."""
    key = clean_key(key)
    if key is None:
        return None
    if target is not None:
        action = f"{action}:{target}"
    created = insert_or_ignore(session, SubmissionKey,
                               [{"key": key, "actor": actor[:64], "action": action[:32], "created_at": utcnow()}],
                               key="key", returning=SubmissionKey.key)
    if created.first() is not None:
        return None
    earlier = session.execute(
        select(SubmissionKey.actor, SubmissionKey.action, SubmissionKey.result_id).where(SubmissionKey.key == key)
    ).one()
    if earlier.actor != actor[:64] or earlier.action != action[:32]:
        raise SubmissionRefused("该表单已提交过，请刷新页面后重试。")
    return earlier.result_id or 0


def remember(session: Session, key: str | None, result_id: int) -> None:
    """Inside the same write transaction, after the write: the result a repeat of ``key`` answers with."""
    key = clean_key(key)
    if key is None:
        return
    session.execute(update(SubmissionKey).where(SubmissionKey.key == key).values(result_id=result_id))


def first_result(session: Session, model, result_id: int):
    """The answer to a repeated submission: the row the first one made or acted on, as it now stands (read
    afresh: the first run may have moved it on since)."""
    row = session.get(model, result_id, populate_existing=True)
    if row is None:
        raise NotFound("该记录已不存在。")
    return row


def forget(session: Session, key: str | None) -> None:
    """Inside a write transaction: let ``key`` go, for a write whose outcome the user is asked to try again
    (WeChat gave no answer): the next submission of the same form is a new attempt, not a repeat."""
    key = clean_key(key)
    if key is not None:
        session.execute(delete(SubmissionKey).where(SubmissionKey.key == key))


def sweep(session: Session, now=None) -> int:
    """Forget keys older than KEEP_FOR (a page left open for a week gets "already submitted" no more; its key is
    simply new again, and the service's own state checks still hold). Returns how many were removed."""
    cutoff = (now or utcnow()) - KEEP_FOR
    with write_transaction(session):
        return session.execute(delete(SubmissionKey).where(SubmissionKey.created_at < cutoff)).rowcount
