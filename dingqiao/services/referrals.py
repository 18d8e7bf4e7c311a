"""锁粉: who brought whom. The first valid binding wins and is locked; every attempt is kept with its source.

Refused, with the reason kept: an unknown code, binding to oneself, a cycle (the upline is already in the
person's own team), an already bound person (unless the protection-period setting lets a relation that
never led to a purchase be replaced). The tree is kept as a closure table (team_paths) so team queries are
index range scans.
"""
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import serialize_writers, write_transaction
from ..models import BindingAttempt, BindingSource, Order, OrderStatus, ReferralBinding, TeamPath, User
from ..models.base import utcnow
from . import DomainError
from .accounts import clean_referral_code, new_referral_code

BINDING_LOCK_KEY = 5_021_001  # advisory-lock key: bindings run one at a time on Postgres (no cross cycles)
PAID_STATES = (OrderStatus.PAID, OrderStatus.COMPLETED)

REFUSALS = {
    "unknown_code": "推广码不存在。",
    "self": "不能绑定自己的推广码。",
    "cycle": "对方已在您的团队中，不能互相绑定。",
    "already_bound": "您已有推荐人，推荐关系已锁定。",
}


class BindingRefused(DomainError):
    status = 409

    def __init__(self, reason: str):
        super().__init__(REFUSALS[reason])
        self.reason = reason


def bind_upline(session: Session, user_id: int, raw_code: str, source: BindingSource, *,
                protection_days: int = 0, now: datetime | None = None) -> ReferralBinding:
    """Bind ``user_id`` under the owner of ``raw_code``, or raise BindingRefused. ``protection_days`` 0 locks
    a binding for good; N lets a binding whose member has not bought anything be replaced after N days.
    Every attempt, accepted or refused, is kept (binding provenance)."""
    now = now or utcnow()
    code = clean_referral_code(raw_code) or ""
    binding = None
    try:
        with write_transaction(session):
            serialize_writers(session, BINDING_LOCK_KEY)
            upline = session.scalar(select(User).where(User.referral_code == code)) if code else None
            reason = _refusal(session, user_id, upline, now)
            if reason:  # kept as a refused attempt; the refusal is raised once that has committed
                _attempt(session, user_id, code, upline, source, reason)
            else:
                binding = _bind(session, user_id, upline, source, protection_days, now)
                _attempt(session, user_id, code, upline, source, "")
    except IntegrityError:
        # Another first binding of the same person committed in between (possible on Postgres): it won.
        session.rollback()
        with write_transaction(session):
            _attempt(session, user_id, code, None, source, "already_bound")
        reason = "already_bound"
    if reason:
        raise BindingRefused(reason)
    return binding


def _bind(session: Session, user_id: int, upline: User, source: BindingSource, protection_days: int,
          now: datetime) -> ReferralBinding:
    existing = session.get(ReferralBinding, user_id)
    if existing is not None:  # replaceable (see _refusal): the old relation and its paths go
        _unlink(session, user_id)
        session.delete(existing)
        session.flush()
    locked_until = now + timedelta(days=protection_days) if protection_days else None
    binding = ReferralBinding(user_id=user_id, upline_id=upline.id, source=source, bound_at=now,
                              locked_until=locked_until)
    session.add(binding)
    session.flush()
    _link(session, user_id, upline.id)
    return binding


def bind_by_openid(session: Session, openid: str, raw_code: str, source: BindingSource, **kwargs) -> ReferralBinding:
    """A follow or scan of the parametric QR arrives with an openid only: make the account if it is new."""
    user = session.scalar(select(User).where(User.openid == openid))
    if user is None:
        try:
            with write_transaction(session):
                user = User(openid=openid, referral_code=new_referral_code(), signup_ref_code=clean_referral_code(raw_code))
                session.add(user)
        except IntegrityError:
            session.rollback()
            user = session.scalar(select(User).where(User.openid == openid))
    return bind_upline(session, user.id, raw_code, source, **kwargs)


def _refusal(session: Session, user_id: int, upline: User | None, now: datetime) -> str:
    if upline is None or not upline.is_active:
        return "unknown_code"
    if upline.id == user_id:
        return "self"
    existing = session.get(ReferralBinding, user_id)
    if existing is not None and not _replaceable(session, existing, now):
        return "already_bound"
    in_own_team = session.scalar(
        select(TeamPath.depth).where(TeamPath.ancestor_id == user_id, TeamPath.descendant_id == upline.id)
    )
    return "cycle" if in_own_team is not None else ""


def _replaceable(session: Session, binding: ReferralBinding, now: datetime) -> bool:
    if binding.locked_until is None or binding.locked_until > now:
        return False
    bought = session.scalar(
        select(func.count()).select_from(Order).where(Order.user_id == binding.user_id, Order.status.in_(PAID_STATES))
    )
    return not bought


def _link(session: Session, user_id: int, upline_id: int) -> None:
    """Closure rows: every ancestor of the upline (and the upline) over the person and their whole team."""
    above = select(TeamPath.ancestor_id.label("a"), TeamPath.depth.label("d")).where(
        TeamPath.descendant_id == upline_id).union_all(select(literal(upline_id).label("a"), literal(0).label("d"))
                                                       ).subquery()
    below = select(TeamPath.descendant_id.label("b"), TeamPath.depth.label("d")).where(
        TeamPath.ancestor_id == user_id).union_all(select(literal(user_id).label("b"), literal(0).label("d"))
                                                   ).subquery()
    session.execute(insert(TeamPath).from_select(
        ["ancestor_id", "descendant_id", "depth"],
        select(above.c.a, below.c.b, above.c.d + below.c.d + 1).select_from(above).join(below, literal(True)),
    ))


def _unlink(session: Session, user_id: int) -> None:
    """Remove the paths that ran through the person's old upline: ancestors of the person over the person
    and their team (the team's own internal paths stay)."""
    team = select(TeamPath.descendant_id).where(TeamPath.ancestor_id == user_id)
    ancestors = select(TeamPath.ancestor_id).where(TeamPath.descendant_id == user_id)
    session.execute(
        delete(TeamPath).where(
            TeamPath.ancestor_id.in_(ancestors),
            (TeamPath.descendant_id == user_id) | TeamPath.descendant_id.in_(team),
        ).execution_options(synchronize_session=False)
    )


def _attempt(session: Session, user_id: int, code: str, upline: User | None, source: BindingSource,
             reason: str) -> None:
    session.add(BindingAttempt(user_id=user_id, referral_code=code[:32], upline_id=upline.id if upline else None,
                               source=source, accepted=not reason, reason=reason))
    session.flush()
