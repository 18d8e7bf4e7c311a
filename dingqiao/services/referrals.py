"""锁粉: who brought whom. The first valid binding wins and is locked; every attempt is kept with its source.

Refused, with the reason kept: an unknown code, binding to oneself, a cycle (the upline is already in the
person's own team), an already bound person (unless the protection-period setting lets a relation that
never led to a purchase be replaced). The tree is kept as a closure table (team_paths) so team queries are
index range scans. Finance (or the superadmin) may correct a relation whatever its lock (``correct_upline``),
audited.
"""
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import serialize_writers, write_transaction
from ..models import (
    MONEY_REVIEWERS,
    PAID_ORDER_STATES,
    AdminUser,
    BindingAttempt,
    BindingSource,
    Order,
    ReferralBinding,
    TeamPath,
    User,
)
from ..models.base import utcnow
from . import Conflict, DomainError, Forbidden, NotFound
from .accounts import admin_reason, clean_referral_code, new_referral_code
from .audit import record_audit

BINDING_LOCK_KEY = 5_021_001  # advisory-lock key: bindings run one at a time on Postgres (no cross cycles)

REFUSALS = {
    "unknown_code": "推广码不存在。",
    "self": "不能绑定自己的推广码。",
    "cycle": "对方已在您的团队中，不能互相绑定。",
    "already_bound": "您已有推荐人，推荐关系已锁定。",
}
CORRECTION_REFUSALS = {  # reason → what an admin is told, nothing written
    "unknown_code": "推广码不存在，或该推荐人账号已停用。",
    "self": "不能把会员设为自己的推荐人。",
    "cycle": "新推荐人在该会员的团队中，改绑会形成循环。",
    "unchanged": "新推荐人与现在的相同，无需修改。",
    "already_root": "该会员现在没有推荐人，无需修改。",
}
CORRECTION_CONFLICTS = {"cycle", "unchanged", "already_root"}  # not a wrong request: the tree as it stands says no
CORRECTION_NEEDS_FINANCE = "改绑推荐人会改变之后佣金的去向，需财务或超级管理员操作。"


class BindingRefused(Conflict):
    pass

    def __init__(self, reason: str):
        super().__init__(REFUSALS[reason])
        self.reason = reason


class CorrectionRefused(DomainError):
    """An admin's correction refused for ``reason`` (a key of CORRECTION_REFUSALS); raise ``because(reason)``."""

    def __init__(self, reason: str):
        super().__init__(CORRECTION_REFUSALS[reason])
        self.reason = reason

    @staticmethod
    def because(reason: str) -> "CorrectionRefused":
        return (CorrectionConflict if reason in CORRECTION_CONFLICTS else CorrectionRefused)(reason)


class CorrectionConflict(CorrectionRefused, Conflict):
    """A correction the tree as it stands refuses (a cycle, no change, no upline to change)."""


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
    _unbind(session, user_id)  # a replaceable relation (see _refusal) or an admin correction: the old one goes
    locked_until = now + timedelta(days=protection_days) if protection_days else None
    binding = ReferralBinding(user_id=user_id, upline_id=upline.id, source=source, bound_at=now,
                              locked_until=locked_until)
    session.add(binding)
    session.flush()
    _link(session, user_id, upline.id)
    return binding


def _unbind(session: Session, user_id: int) -> None:
    existing = session.get(ReferralBinding, user_id)
    if existing is not None:
        _unlink(session, user_id)
        session.delete(existing)
        session.flush()


def correct_upline(session: Session, admin: AdminUser, user_id: int, raw_code: str, reason: str, *,
                   now: datetime | None = None) -> ReferralBinding | None:
    """An admin's correction of who brought ``user_id``: the owner of ``raw_code`` becomes the upline, or with
    an empty code nobody does (the member becomes a root; returns None). The member's whole team moves along.

    Unlike a member's own binding it ignores the lock and the protection period — overriding them is its
    point — and the new binding (source ADMIN) is locked for good. It redirects every future commission of the
    member's whole team, so only finance or the superadmin may make it: anyone else gets Forbidden, whatever
    page or path they came by. Refused with CorrectionRefused, nothing written: an unknown code or inactive
    upline, the member themself, a cycle, no change. Checked and moved under the same lock as ``bind_upline``,
    so no pair of bindings and corrections can make a cycle together.

    Commission lines already written are not changed, whether frozen or settled: an order's beneficiaries are
    fixed when it is paid, so only orders paid after the correction follow the new tree."""
    if admin.role not in MONEY_REVIEWERS:
        raise Forbidden(CORRECTION_NEEDS_FINANCE)
    reason = admin_reason(reason, "请填写改绑原因。")
    wanted = (raw_code or "").strip()
    now = now or utcnow()
    with write_transaction(session):
        serialize_writers(session, BINDING_LOCK_KEY)
        if session.get(User, user_id) is None:
            raise NotFound("会员不存在。")
        upline = None
        if wanted:
            code = clean_referral_code(wanted)
            upline = session.scalar(select(User).where(User.referral_code == code)) if code else None
        existing = session.get(ReferralBinding, user_id)
        old_upline_id = existing.upline_id if existing else None
        refusal = _correction_refusal(session, user_id, wanted, upline, old_upline_id)
        if refusal:
            raise CorrectionRefused.because(refusal)
        if upline is None:
            _unbind(session, user_id)
            binding = None
        else:
            binding = _bind(session, user_id, upline, BindingSource.ADMIN, protection_days=0, now=now)
        _attempt(session, user_id, upline.referral_code if upline else "", upline, BindingSource.ADMIN, "")
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="member.upline_corrected",
                     target_type="user", target_id=user_id,
                     detail={"old_upline_id": old_upline_id, "new_upline_id": upline.id if upline else None,
                             "reason": reason})
    return binding


def _correction_refusal(session: Session, user_id: int, wanted: str, upline: User | None,
                        old_upline_id: int | None) -> str:
    if not wanted:
        return "" if old_upline_id is not None else "already_root"
    if upline is None or not upline.is_active:
        return "unknown_code"
    if upline.id == user_id:
        return "self"
    if upline.id == old_upline_id:
        return "unchanged"
    return "cycle" if _in_team(session, user_id, upline.id) else ""


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
    return "cycle" if _in_team(session, user_id, upline.id) else ""


def _in_team(session: Session, ancestor_id: int, user_id: int) -> bool:
    return session.scalar(
        select(TeamPath.depth).where(TeamPath.ancestor_id == ancestor_id, TeamPath.descendant_id == user_id)
    ) is not None


def _replaceable(session: Session, binding: ReferralBinding, now: datetime) -> bool:
    if binding.locked_until is None or binding.locked_until > now:
        return False
    bought = session.scalar(
        select(func.count()).select_from(Order).where(Order.user_id == binding.user_id, Order.status.in_(PAID_ORDER_STATES))
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
