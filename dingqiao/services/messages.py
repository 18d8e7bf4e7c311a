"""Outgoing messages: rows in the outbox, written inside the business transaction that caused them, so a
message exists if and only if its event committed. Delivery to WeChat happens later, elsewhere."""
import json

from sqlalchemy.orm import Session

from ..models import OutboxMessage


def enqueue_message(session: Session, *, user_id: int, event: str, object_id: int | str, title: str, body: str,
                    link: str = "", template_data: dict | None = None) -> OutboxMessage:
    """Call inside the caller's write transaction. ``event:object_id`` is the deduplication key."""
    message = OutboxMessage(
        dedup_key=f"{event}:{object_id}",
        user_id=user_id,
        event=event,
        title=title,
        body=body,
        link=link,
        template_data=json.dumps(template_data or {}, ensure_ascii=False),
    )
    session.add(message)
    return message
