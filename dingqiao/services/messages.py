"""Messages to members: rows in the outbox, written inside the business transaction that caused them, so a
message exists if and only if its event committed. Delivery to WeChat happens later (``services.delivery``);
the same rows are the member's in-app message centre (消息中心), read here."""
import json

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from ..db import run, write_transaction
from ..models import OutboxMessage
from ..models.base import utcnow
from . import NotFound


def message_row(*, user_id: int, event: str, object_id: int | str, title: str, body: str, link: str = "",
                template_data: dict | None = None) -> dict:
    """One outbox row. ``event:object_id`` is the deduplication key."""
    return {"dedup_key": f"{event}:{object_id}", "user_id": user_id, "event": event, "title": title, "body": body,
            "link": link, "template_data": json.dumps(template_data or {}, ensure_ascii=False)}


def enqueue_message(session: Session, *, user_id: int, event: str, object_id: int | str, title: str, body: str,
                    link: str = "", template_data: dict | None = None) -> OutboxMessage:
    """Call inside the caller's write transaction."""
    message = OutboxMessage(**message_row(user_id=user_id, event=event, object_id=object_id, title=title,
                                          body=body, link=link, template_data=template_data))
    session.add(message)
    return message


def enqueue_once(session: Session, *, user_id: int, event: str, object_id: int | str, title: str, body: str,
                 link: str = "", template_data: dict | None = None) -> None:
    """One message, unless one with the same deduplication key exists: for events that may be reached more
    than once, e.g. "you qualify" notices. Inside a write transaction, so the check and the insert see the
    same database (the unique key stays the last guard); see ``enqueue_rows``."""
    enqueue_rows(session, [message_row(user_id=user_id, event=event, object_id=object_id, title=title, body=body,
                                       link=link, template_data=template_data)], once=True)


# Prebuilt (see db.run), for the pay and pickup transactions.
_INSERT_ROWS = insert(OutboxMessage)
_EXISTING_KEYS = select(OutboxMessage.dedup_key).where(OutboxMessage.dedup_key.in_(bindparam("keys", expanding=True)))


def enqueue_rows(session: Session, rows: list[dict], *, once: bool = False) -> None:
    """Several ``message_row``s in one statement, inside the caller's write transaction. With ``once``, rows
    whose deduplication key exists already are left out. The rows go straight to
    the database (db.run), so their users must be stored already, not only added to the session — and
    ``once`` sees only messages stored already, not ones merely added to the session."""
    if once and rows:
        existing = set(run(session, _EXISTING_KEYS, {"keys": [row["dedup_key"] for row in rows]}).scalars())
        rows = [row for row in rows if row["dedup_key"] not in existing]
    if rows:
        run(session, _INSERT_ROWS, rows)


# ---------------------------------------------------------------- 消息中心: the same rows, read in the H5

_UNREAD = select(func.count()).select_from(OutboxMessage).where(
    OutboxMessage.user_id == bindparam("user_id"), OutboxMessage.read_at.is_(None))  # prebuilt: every page's tab bar


# What a message's link opens, as the message centre names it (first matching prefix).
TARGET_LABELS = (("/orders/", "查看订单"), ("/wallet/", "查看钱包"), ("/service/", "查看售后"), ("/restock/", "查看进货单"),
                 ("/me/upgrade", "查看申请"), ("/outlet/staff", "查看店员"), ("/", "查看"))


def inside_link(link: str) -> str:
    """The message's link if it leads to a page of the H5 ("/orders/…"), else "" — never elsewhere."""
    return link if link.startswith("/") and not link.startswith(("//", "/\\")) else ""


def target_label(link: str) -> str:
    """"查看订单", "查看钱包"…: what opening the message shows; "" when it has no target."""
    path = inside_link(link)
    return next((label for prefix, label in TARGET_LABELS if path.startswith(prefix)), "") if path else ""


def unread_count(session: Session, user_id: int) -> int:
    return run(session, _UNREAD, {"user_id": user_id}).scalar() or 0


def inbox(session: Session, user_id: int, *, before_id: int | None = None, limit: int = 30) -> list[OutboxMessage]:
    """The member's messages, newest first by when they were written, a page at a time (``before_id``: the last
    id of the previous page; a message not the member's starts from the top)."""
    query = select(OutboxMessage).where(OutboxMessage.user_id == user_id)
    if before_id is not None:
        last = session.scalar(select(OutboxMessage.created_at).where(OutboxMessage.id == before_id,
                                                                     OutboxMessage.user_id == user_id))
        if last is not None:
            query = query.where(or_(OutboxMessage.created_at < last,
                                    and_(OutboxMessage.created_at == last, OutboxMessage.id < before_id)))
    order = (OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
    return list(session.scalars(query.order_by(*order).limit(limit)))


def mark_read(session: Session, user_id: int, message_id: int) -> OutboxMessage:
    """Open one message: it is read from now on. Someone else's message is not found."""
    with write_transaction(session):
        message = session.scalar(select(OutboxMessage).where(OutboxMessage.id == message_id,
                                                             OutboxMessage.user_id == user_id))
        if message is None:
            raise NotFound("消息不存在。")
        if message.read_at is None:
            message.read_at = utcnow()
    return message


def mark_all_read(session: Session, user_id: int) -> int:
    with write_transaction(session):
        return session.execute(update(OutboxMessage).where(OutboxMessage.user_id == user_id,
                                                           OutboxMessage.read_at.is_(None))
                               .values(read_at=utcnow())).rowcount
