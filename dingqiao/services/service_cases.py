"""售后与客服: a member opens a case (on one of their orders, or general), the team answers in its thread.

Status follows the last word: a member's message makes a case OPEN (waiting for the team), a reply from the
team makes it ANSWERED; a CLOSED case takes no more messages. Each change is one conditional UPDATE of the
case's status, so a message can never slip into a case that a concurrent request has just closed.

Photos are decoded and re-encoded by ``uploads.save_image`` before the transaction starts (a refused file
writes nothing); when the transaction fails afterwards, the files it would have referenced are deleted.

A refund case on an order also asks ``refunds.request_refund`` for the money back. When the order does not
allow that, the case is opened all the same and the refusal is recorded in the thread as a system note
(a message with neither a member nor an admin as author), so the member and the team both see why.
"""
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from sqlalchemy import case as sql_case
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from ..db import write_transaction
from ..models import (
    AdminUser,
    CaseKind,
    CaseStatus,
    Order,
    OrderStatus,
    Refund,
    ServiceCase,
    ServiceMessage,
    ServicePhoto,
    User,
)
from ..models.base import utcnow
from ..money import format_yuan
from ..paging import Page, page_of
from ..uploads import SavedImage, UploadRefused, delete_stored, removed_on_failure, save_image
from . import Conflict, DomainError, NotFound, submissions
from .audit import record_audit
from .messages import enqueue_message
from .orders import new_number
from .refunds import RefundError, request_refund

MAX_SUBJECT_LENGTH = 64
MAX_BODY_LENGTH = 1000
MAX_PHOTOS = 6
PHOTO_KIND = "service"  # the uploads sub-folder
MEMBER_LIST_SIZE = 50
ORDER_CHOICES = 20


class CaseError(DomainError):
    pass


class CaseClosed(Conflict):
    pass


@dataclass(frozen=True)
class CaseThread:
    """One case with everything its page shows."""

    case: ServiceCase
    member: User
    order: Order | None
    refunds: list[Refund]  # the order's refunds, newest first


def photo_owner(session: Session, path: str) -> int | None:
    """The member whose after-sales case holds the photo stored at ``path``; None when no case does."""
    return session.scalar(
        select(ServiceCase.user_id)
        .join(ServiceMessage, ServiceMessage.case_id == ServiceCase.id)
        .join(ServicePhoto, ServicePhoto.message_id == ServiceMessage.id)
        .where(ServicePhoto.path == path))


def new_case_no(now: datetime) -> str:
    return new_number("SV", now)


def open_case(session: Session, user_id: int, *, kind: str, subject: str, body: str, order_no: str | None = None,
              photos: Sequence[BinaryIO] = (), upload_folder: str, max_bytes: int,
              submission_key: str | None = None) -> ServiceCase:
    """Open a case with its first message. ``order_no`` must be one of the member's orders (someone else's
    is NotFound, like a missing one). A blank subject is taken from the start of the message. A repeat of
    ``submission_key`` (a double tap on 提交) answers with the case the first one opened."""
    kind = _parse_kind(kind)
    body = _clean_body(body)
    subject = _clean_subject(subject) or " ".join(body.split())[:MAX_SUBJECT_LENGTH]
    order_no = (order_no or "").strip() or None
    saved = _save_photos(photos, upload_folder, max_bytes)
    with removed_on_failure(upload_folder, saved), write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"member:{user_id}", action="service.open")
        if earlier is not None:
            return _repeated(session, ServiceCase, earlier, upload_folder, saved)
        order = None
        if order_no is not None:
            order = session.scalar(select(Order).where(Order.order_no == order_no, Order.user_id == user_id))
            if order is None:
                raise NotFound("订单不存在。", field="order_no")
        now = utcnow()
        case = ServiceCase(case_no=new_case_no(now), user_id=user_id, order_id=order.id if order else None,
                           kind=kind, subject=subject, status=CaseStatus.OPEN, created_at=now, updated_at=now)
        session.add(case)
        session.flush()
        _add_message(session, case.id, body, saved, now, author_user_id=user_id)
        if kind == CaseKind.REFUND and order is not None:
            _add_message(session, case.id, _start_refund(session, user_id, order, case, body), [], now)
        submissions.remember(session, submission_key, case.id)
    return case


def add_member_message(session: Session, user_id: int, case_id: int, body: str, *,
                       photos: Sequence[BinaryIO] = (), upload_folder: str, max_bytes: int,
                       submission_key: str | None = None) -> ServiceMessage:
    """The member writes in their own case; it goes back to the team's queue as OPEN."""
    body = _clean_body(body)
    saved = _save_photos(photos, upload_folder, max_bytes)
    with removed_on_failure(upload_folder, saved), write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"member:{user_id}", action="service.message", target=case_id)
        if earlier is not None:
            return _repeated(session, ServiceMessage, earlier, upload_folder, saved)
        now = utcnow()
        moved = session.execute(
            update(ServiceCase)
            .where(ServiceCase.id == case_id, ServiceCase.user_id == user_id,
                   ServiceCase.status != CaseStatus.CLOSED)
            .values(status=CaseStatus.OPEN, updated_at=now)
        ).rowcount
        if not moved:
            _refuse(session, case_id, user_id, "该服务单已关闭，不能再留言；如有新问题请重新提交。")
        message = _add_message(session, case_id, body, saved, now, author_user_id=user_id)
        submissions.remember(session, submission_key, message.id)
    return message


def add_admin_reply(session: Session, admin: AdminUser, case_id: int, body: str, *,
                    photos: Sequence[BinaryIO] = (), upload_folder: str, max_bytes: int,
                    submission_key: str | None = None) -> ServiceMessage:
    """The team answers any open case: ANSWERED, a message to the member, and an audit row."""
    body = _clean_body(body)
    saved = _save_photos(photos, upload_folder, max_bytes)
    with removed_on_failure(upload_folder, saved), write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="service.reply", target=case_id)
        if earlier is not None:
            return _repeated(session, ServiceMessage, earlier, upload_folder, saved)
        now = utcnow()
        moved = session.execute(
            update(ServiceCase)
            .where(ServiceCase.id == case_id, ServiceCase.status != CaseStatus.CLOSED)
            .values(status=CaseStatus.ANSWERED, updated_at=now)
        ).rowcount
        if not moved:
            _refuse(session, case_id, None, "该服务单已关闭，不能再回复。")
        message = _add_message(session, case_id, body, saved, now, author_admin_id=admin.id)
        case = session.get(ServiceCase, case_id)
        enqueue_message(session, user_id=case.user_id, event="service_reply", object_id=message.id,
                        title="客服回复了您的售后单", body=f"「{case.subject}」：{_excerpt(body)}",
                        link=f"/service/{case.id}", template_data={"case_no": case.case_no, "subject": case.subject})
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="service.reply",
                     target_type="service_case", target_id=case.case_no,
                     detail={"message_id": message.id, "photos": len(saved)})
        submissions.remember(session, submission_key, message.id)
    return message


def close_member_case(session: Session, user_id: int, case_id: int,
                      submission_key: str | None = None) -> ServiceCase:
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"member:{user_id}", action="service.close", target=case_id)
        if earlier is not None:
            return _repeated(session, ServiceCase, earlier)
        _close(session, case_id, user_id)
        submissions.remember(session, submission_key, case_id)
        case = session.get(ServiceCase, case_id)
    return case


def close_case_by_admin(session: Session, admin: AdminUser, case_id: int,
                        submission_key: str | None = None) -> ServiceCase:
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="service.close", target=case_id)
        if earlier is not None:
            return _repeated(session, ServiceCase, earlier)
        _close(session, case_id, None)
        submissions.remember(session, submission_key, case_id)
        case = session.get(ServiceCase, case_id)
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="service.close",
                     target_type="service_case", target_id=case.case_no, detail={"case_id": case.id})
    return case


def member_cases(session: Session, user_id: int) -> list[ServiceCase]:
    """The member's cases, the most recently active first."""
    return list(session.scalars(
        select(ServiceCase).where(ServiceCase.user_id == user_id)
        .order_by(ServiceCase.updated_at.desc(), ServiceCase.id.desc()).limit(MEMBER_LIST_SIZE)
    ))


def admin_queue(session: Session, status: str = "", page: int | None = None) -> Page:
    """The team's queue, a page of (case, member) at a time: OPEN cases first (they wait for us), then ANSWERED,
    then CLOSED; within each, the most recently active first. ``status`` narrows it to one status; empty means
    every case not closed."""
    waiting_first = sql_case({CaseStatus.OPEN.value: 0, CaseStatus.ANSWERED.value: 1}, value=ServiceCase.status,
                             else_=2)
    query = (select(ServiceCase, User).join(User, User.id == ServiceCase.user_id)
             .order_by(waiting_first, ServiceCase.updated_at.desc(), ServiceCase.id.desc()))
    if status in set(CaseStatus):
        query = query.where(ServiceCase.status == status)
    else:
        query = query.where(ServiceCase.status != CaseStatus.CLOSED)
    return page_of(session, query, page)


def member_thread(session: Session, user_id: int, case_id: int) -> CaseThread:
    """The member's own case; someone else's is NotFound, exactly like a missing one."""
    return _thread(session, select(ServiceCase).where(ServiceCase.id == case_id, ServiceCase.user_id == user_id))


def admin_thread(session: Session, case_id: int) -> CaseThread:
    return _thread(session, select(ServiceCase).where(ServiceCase.id == case_id))


def order_choices(session: Session, user_id: int, preselected_no: str | None = None) -> list[Order]:
    """The member's recent orders for the "which order" choice; an older order named by ``preselected_no``
    (the link on its detail page) is added when it is the member's own, ignored otherwise."""
    orders = list(session.scalars(
        select(Order).where(Order.user_id == user_id).order_by(Order.created_at.desc(), Order.id.desc())
        .limit(ORDER_CHOICES)
    ))
    if preselected_no and all(order.order_no != preselected_no for order in orders):
        older = session.scalar(select(Order).where(Order.order_no == preselected_no, Order.user_id == user_id))
        if older is not None:
            orders.append(older)
    return orders


def _thread(session: Session, statement) -> CaseThread:
    case = session.scalar(statement.options(selectinload(ServiceCase.messages).selectinload(ServiceMessage.photos)))
    if case is None:
        raise NotFound("服务单不存在。")
    order = session.get(Order, case.order_id) if case.order_id else None
    refunds = list(session.scalars(
        select(Refund).where(Refund.order_id == order.id).order_by(Refund.id.desc())
    )) if order else []
    return CaseThread(case, session.get(User, case.user_id), order, refunds)


def _start_refund(session: Session, user_id: int, order: Order, case: ServiceCase, body: str) -> str:
    """Ask the refund service for the order's money back; return the system note saying what happened. A
    refusal is rolled back to a savepoint and explained, and the case stays open for the team."""
    reason = f"[售后单 {case.case_no}] {case.subject}：{body}"
    try:
        with session.begin_nested():
            refund = request_refund(session, user_id, order.order_no, reason)
    except RefundError as exc:
        session.refresh(order)
        note = f"未能自动提交退款申请。{exc.message}"
        if order.status == OrderStatus.COMPLETED and not order.after_sales_open:
            note += "已提货的订单请在此说明问题并上传照片，客服核实后为您办理售后退款。"
        return note
    return f"已为订单 {order.order_no} 提交退款申请（{format_yuan(refund.amount_fen)}），审核通过后原路退回。"


def _repeated(session: Session, model, earlier: int, upload_folder: str = "", saved: Sequence[SavedImage] = ()):
    """The answer to a repeated submission: what the first one made, as it now stands. The repeat's own copies
    of the photos are not referenced by anything, so they go."""
    if saved:
        delete_stored(upload_folder, [path for image in saved for path in image.paths])
    made = session.get(model, earlier, populate_existing=True)
    if made is None:
        raise NotFound("服务单不存在。")
    return made


def _add_message(session: Session, case_id: int, body: str, saved: Sequence[SavedImage], now: datetime, *,
                 author_user_id: int | None = None, author_admin_id: int | None = None) -> ServiceMessage:
    message = ServiceMessage(case_id=case_id, author_user_id=author_user_id, author_admin_id=author_admin_id,
                             body=body, created_at=now)
    session.add(message)
    session.flush()
    session.add_all(ServicePhoto(message_id=message.id, path=image.path, width=image.width, height=image.height,
                                 created_at=now) for image in saved)
    session.flush()
    return message


def _close(session: Session, case_id: int, user_id: int | None) -> None:
    now = utcnow()
    query = update(ServiceCase).where(ServiceCase.id == case_id, ServiceCase.status != CaseStatus.CLOSED)
    if user_id is not None:
        query = query.where(ServiceCase.user_id == user_id)
    if not session.execute(query.values(status=CaseStatus.CLOSED, closed_at=now, updated_at=now)).rowcount:
        _refuse(session, case_id, user_id, "该服务单已关闭。")


def _refuse(session: Session, case_id: int, user_id: int | None, closed_message: str):
    """Nothing was updated: say whether the case is missing (or not the member's) or already closed."""
    query = select(ServiceCase.id).where(ServiceCase.id == case_id)
    if user_id is not None:
        query = query.where(ServiceCase.user_id == user_id)
    if session.scalar(query) is None:
        raise NotFound("服务单不存在。")
    raise CaseClosed(closed_message)


def _parse_kind(raw: str | None) -> CaseKind:
    try:
        return CaseKind((raw or "").strip())
    except ValueError:
        raise CaseError("请选择问题类型。", field="kind") from None


def _clean_subject(raw: str | None) -> str:
    subject = " ".join((raw or "").split())
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise CaseError(f"标题不能超过 {MAX_SUBJECT_LENGTH} 个字。", field="subject")
    return subject


def _clean_body(raw: str | None) -> str:
    body = (raw or "").replace("\r\n", "\n").strip()
    if not body:
        raise CaseError("请填写留言内容。", field="body")
    if len(body) > MAX_BODY_LENGTH:
        raise CaseError(f"留言不能超过 {MAX_BODY_LENGTH} 个字。", field="body")
    return body


def _excerpt(body: str, length: int = 60) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= length else flat[:length] + "…"


PHOTOS = "photos"  # the argument (and the form's file input) a refused photo is about


def _save_photos(photos: Sequence[BinaryIO], upload_folder: str, max_bytes: int) -> list[SavedImage]:
    """Check and store every photo, or none: a refused one removes those already stored."""
    if len(photos) > MAX_PHOTOS:
        raise CaseError(f"每条留言最多 {MAX_PHOTOS} 张图片。", field=PHOTOS)
    saved: list[SavedImage] = []
    with removed_on_failure(upload_folder, saved):
        for number, stream in enumerate(photos, start=1):
            try:
                saved.append(save_image(stream, upload_folder, PHOTO_KIND, max_bytes))
            except UploadRefused as exc:
                message = exc.message if len(photos) == 1 else f"第 {number} 张图片：{exc.message}"
                raise UploadRefused(message, field=PHOTOS) from None
    return saved
