"""核销员: an outlet owner invites staff with a one-time link (shown as a QR code) and removes them.

Staff may redeem for their outlet and see its orders, nothing else. Access is read from ``outlet_staff`` on
every request, so removing the row takes the access away at once.
"""
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import FactoryStore, Outlet, OutletStaff, StaffInvite, User
from ..models.base import utcnow
from . import Conflict, Forbidden, NotFound
from .audit import record_audit
from .messages import enqueue_message
from .outlets import outlet_owned_by

INVITE_HOURS = 24
MAX_STAFF = 20


class StaffError(Conflict):
    pass


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def owned_outlet(session: Session, user_id: int) -> Outlet:
    outlet = outlet_owned_by(session, user_id)
    if outlet is None:
        raise Forbidden("只有门店店主可以管理核销员。")
    return outlet


def create_invite(session: Session, owner_user_id: int, now: datetime | None = None) -> tuple[StaffInvite, str]:
    """A fresh invite; the token is returned once (for the QR code) and only its hash is kept."""
    now = now or utcnow()
    token = secrets.token_urlsafe(24)
    with write_transaction(session):
        outlet = owned_outlet(session, owner_user_id)
        invite = StaffInvite(outlet_id=outlet.id, token_hash=_hash(token), created_by_user_id=owner_user_id,
                             created_at=now, expires_at=now + timedelta(hours=INVITE_HOURS))
        session.add(invite)
        session.flush()
        record_audit(session, actor_kind="user", actor_id=owner_user_id, action="staff.invite",
                     target_type="outlet", target_id=outlet.id, detail={"invite_id": invite.id})
    return invite, token


def accept_invite(session: Session, user_id: int, token: str, now: datetime | None = None) -> OutletStaff:
    """The invited person opens the link while logged in. Works once, until it expires."""
    now = now or utcnow()
    if not token or len(token) > 64:
        raise StaffError("邀请链接无效。")
    with write_transaction(session):
        invite = session.scalar(select(StaffInvite).where(StaffInvite.token_hash == _hash(token)))
        if invite is None:
            raise StaffError("邀请链接无效。")
        if invite.used_at is not None:
            raise StaffError("该邀请已被使用，请让店主重新生成。")
        if invite.expires_at <= now:
            raise StaffError("邀请已过期，请让店主重新生成。")
        user = session.get(User, user_id)
        if session.scalar(select(Outlet.id).where(Outlet.owner_user_id == user_id)) is not None or \
                session.scalar(select(FactoryStore.id).where(FactoryStore.owner_user_id == user_id)) is not None:
            raise StaffError("店主不能同时担任核销员。")
        current = session.scalar(select(OutletStaff).where(OutletStaff.user_id == user_id))
        if current is not None:
            same = current.outlet_id == invite.outlet_id
            raise StaffError("您已是本店核销员。" if same else "您已是其他门店的核销员，请先让原门店移除。")
        count = len(session.scalars(select(OutletStaff.id).where(OutletStaff.outlet_id == invite.outlet_id)).all())
        if count >= MAX_STAFF:
            raise StaffError(f"每家门店最多 {MAX_STAFF} 名核销员。")
        claimed = session.execute(
            update(StaffInvite).where(StaffInvite.id == invite.id, StaffInvite.used_at.is_(None))
            .values(used_at=now, used_by_user_id=user_id)
        ).rowcount
        if not claimed:
            raise StaffError("该邀请已被使用，请让店主重新生成。")
        staff = OutletStaff(outlet_id=invite.outlet_id, user_id=user_id, created_at=now)
        session.add(staff)
        try:
            session.flush()
        except IntegrityError:  # the same person accepted two invites at once (Postgres): one of them won
            raise StaffError("您已是其他门店的核销员，请先让原门店移除。") from None
        outlet = session.get(Outlet, invite.outlet_id)
        record_audit(session, actor_kind="user", actor_id=user_id, action="staff.join", target_type="outlet",
                     target_id=outlet.id, detail={"invite_id": invite.id})
        enqueue_message(session, user_id=outlet.owner_user_id, event="staff_joined", object_id=staff.id,
                        title="新核销员已加入", body=f"{user.display_name} 已成为「{outlet.name}」的核销员。",
                        link="/outlet/staff", template_data={"staff_name": user.display_name, "outlet": outlet.name})
    return staff


def invite_preview(session: Session, token: str, now: datetime | None = None) -> Outlet | None:
    """The outlet a still-valid invite is for (to show before accepting), else None."""
    if not token or len(token) > 64:
        return None
    invite = session.scalar(select(StaffInvite).where(StaffInvite.token_hash == _hash(token)))
    if invite is None or invite.used_at is not None or invite.expires_at <= (now or utcnow()):
        return None
    return session.get(Outlet, invite.outlet_id)


def remove_staff(session: Session, owner_user_id: int, staff_id: int) -> None:
    with write_transaction(session):
        outlet = owned_outlet(session, owner_user_id)
        staff = session.scalar(select(OutletStaff).where(OutletStaff.id == staff_id,
                                                         OutletStaff.outlet_id == outlet.id))
        if staff is None:
            raise NotFound("核销员不存在。")
        session.execute(delete(OutletStaff).where(OutletStaff.id == staff.id))
        record_audit(session, actor_kind="user", actor_id=owner_user_id, action="staff.remove",
                     target_type="outlet", target_id=outlet.id, detail={"user_id": staff.user_id})


@dataclass(frozen=True)
class StaffRow:
    id: int
    name: str
    since: datetime


def staff_of(session: Session, outlet_id: int) -> list[StaffRow]:
    return [StaffRow(staff_id, nickname or f"用户{code}", since) for staff_id, nickname, code, since in session.execute(
        select(OutletStaff.id, User.nickname, User.referral_code, OutletStaff.created_at)
        .join(User, User.id == OutletStaff.user_id).where(OutletStaff.outlet_id == outlet_id)
        .order_by(OutletStaff.id)
    )]
