"""What waits for someone in each admin queue, defined once: the queue's page lists exactly these rows and the
dashboard counts exactly these, so the two always agree. Each queue is one named function returning a page
(paging.page_of: bounded, PAGE_SIZE rows at most) and, where the dashboard shows it, a count of the same
statement."""
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ..models import (
    OPEN_APPLICATION,
    IdentityApplication,
    Order,
    PaymentEvent,
    Refund,
    RefundStatus,
    User,
    Withdrawal,
    WithdrawalStatus,
)
from ..paging import Page, page_of

# Requested, failed at WeChat (to retry or reject), sent without an answer, or accepted with its result pending.
REFUNDS_WAITING = Refund.status.in_([RefundStatus.REQUESTED, RefundStatus.FAILED, RefundStatus.APPROVED,
                                     RefundStatus.PROCESSING])
# Requested, or approved with a transfer whose outcome is unknown.
WITHDRAWALS_WAITING = Withdrawal.status.in_([WithdrawalStatus.REQUESTED, WithdrawalStatus.APPROVED])
APPLICATIONS_WAITING = IdentityApplication.status.in_(OPEN_APPLICATION)
DECIDED_APPLICATIONS_SHOWN = 20


def _count(session: Session, statement: Select) -> int:
    return int(session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())))


# ---------------------------------------------------------------- refunds

def _waiting_refunds() -> Select:
    """Each waiting refund with its order, oldest first."""
    return (select(Refund, Order).join(Order, Order.id == Refund.order_id).where(REFUNDS_WAITING)
            .order_by(Refund.created_at, Refund.id))


def waiting_refunds(session: Session, page: int | None) -> Page:
    """The refunds queue's page: rows of (Refund, Order)."""
    return page_of(session, _waiting_refunds(), page)


def waiting_refunds_count(session: Session) -> int:
    """How many refunds wait: the count of the very statement the queue pages (its ``total``), for the
    dashboard."""
    return _count(session, _waiting_refunds())


# ---------------------------------------------------------------- withdrawals

def waiting_withdrawals(session: Session, page: int | None) -> Page:
    """The withdrawal review queue's page, rows of (Withdrawal, User): open requests and unknown transfers."""
    return page_of(session, select(Withdrawal, User).join(User, User.id == Withdrawal.user_id)
                   .where(WITHDRAWALS_WAITING).order_by(Withdrawal.created_at, Withdrawal.id), page)


# ---------------------------------------------------------------- identity applications

def _open_applications() -> Select:
    return (select(IdentityApplication).where(APPLICATIONS_WAITING)
            .order_by(IdentityApplication.status, IdentityApplication.id))  # "review" sorts before "waiting"


def open_applications(session: Session, page: int | None) -> Page:
    """Applications waiting for review, then those waiting for the rule to hold: one bounded page."""
    return page_of(session, _open_applications(), page, scalars=True)


def open_applications_count(session: Session) -> int:
    return _count(session, _open_applications())


def decided_applications(session: Session, limit: int = DECIDED_APPLICATIONS_SHOWN) -> list[IdentityApplication]:
    """The latest decisions, newest first."""
    return list(session.scalars(select(IdentityApplication).where(IdentityApplication.status.not_in(OPEN_APPLICATION))
                                .order_by(IdentityApplication.id.desc()).limit(limit)))


# ---------------------------------------------------------------- payment events

def unresolved_payment_events(session: Session, page: int | None) -> Page:
    """Signed pay notifies that need a person and nobody has resolved yet, oldest first."""
    return page_of(session, select(PaymentEvent)
                   .where(PaymentEvent.needs_attention.is_(True), PaymentEvent.resolved_at.is_(None))
                   .order_by(PaymentEvent.id), page, scalars=True)


# ---------------------------------------------------------------- restocks

def platform_restocks(session: Session, page: int | None) -> Page:
    """Factory stores' restock orders from the platform warehouse, newest first. Without a platform warehouse
    the query finds nothing: no location has id 0."""
    from .restock import platform_location_id, restock_orders

    return page_of(session, restock_orders(platform_location_id(session) or 0, incoming=False), page, scalars=True)
