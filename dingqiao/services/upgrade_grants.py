"""Identity upgrades moving on by themselves: the purchase (at payment or at pickup, as the rule says) or the
restock receipt that meets a waiting application's rule grants it — or sends it to review — inside that same
transaction, so identity, menu and price tier change with the payment that earned them. Granting opens the
outlet or factory store through services/network.py; a site it refuses (a taken region) refuses the application
with its reason. Admins' decisions (``upgrades.approve_application``) grant through here as well."""
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from ..db import run
from ..models import (
    OPEN_APPLICATION,
    ApplicationStatus,
    CountsAt,
    GrantMode,
    Identity,
    IdentityApplication,
    IdentityRuleVersion,
    UpgradeTarget,
    User,
)
from ..models.base import utcnow
from .audit import record_audit
from .messages import enqueue_message, enqueue_once
from .network import NetworkError, open_factory_store, open_outlet
from .upgrade_rules import current_identity_rule, metric_value, rule_summary

_IDENTITY = select(User.identity).where(User.id == bindparam("user_id"))


def _open_application(session: Session, user_id: int) -> IdentityApplication | None:
    return session.scalar(select(IdentityApplication).where(
        IdentityApplication.user_id == user_id, IdentityApplication.status.in_(OPEN_APPLICATION)))


def on_purchase_counted(session: Session, user_id: int, moment: CountsAt, now: datetime | None = None) -> None:
    """Called inside the payment (``PAID``) and redemption (``REDEEMED``) transactions of the buyer's order.
    Grants a waiting outlet application the purchase has just made good; tells a member who has qualified
    without applying. Never raises for a rule reason: the sale must not roll back because of an upgrade."""
    rule = current_identity_rule(session, UpgradeTarget.OUTLET)
    if rule is None or rule.grant_mode == GrantMode.CLOSED or rule.counts_at != moment:
        return
    if run(session, _IDENTITY, {"user_id": user_id}).scalar() != Identity.MEMBER:
        return
    value = metric_value(session, user_id, rule)
    if value < rule.threshold_fen:
        return
    application = _open_application(session, user_id)
    if application is not None:
        if application.status == ApplicationStatus.WAITING and application.target == UpgradeTarget.OUTLET:
            _advance(session, application, rule, now or utcnow(), value)
        return
    enqueue_once(session, user_id=user_id, event="identity_eligible", object_id=f"{user_id}:{rule.target}",
                 title="可申请成为核销网点", body=f"您已满足条件：{rule_summary(rule)}填写门店信息即可开通。",
                 link="/me/upgrade", template_data={"identity": UpgradeTarget(rule.target).label})


def on_restock_received(session: Session, owner_user_id: int, now: datetime | None = None) -> None:
    """Called inside the transaction that records goods received by an outlet (the restock issue)."""
    rule = current_identity_rule(session, UpgradeTarget.FACTORY)
    if rule is None or rule.grant_mode == GrantMode.CLOSED:
        return
    application = _open_application(session, owner_user_id)
    if (application is not None and application.status == ApplicationStatus.WAITING
            and application.target == UpgradeTarget.FACTORY):
        _advance(session, application, rule, now or utcnow())


def _advance(session: Session, application: IdentityApplication, rule: IdentityRuleVersion, now: datetime,
             value: int | None = None) -> None:
    """WAITING → granted / REVIEW once the rule holds; otherwise nothing changes. ``value``: the measure, when
    the caller has just read it."""
    value = metric_value(session, application.user_id, rule) if value is None else value
    if value < rule.threshold_fen:
        return
    if rule.grant_mode == GrantMode.AUTO:
        _grant(session, application, rule, admin_id=None, now=now, value=value)
    elif rule.grant_mode == GrantMode.REVIEW:
        application.status = ApplicationStatus.REVIEW
        application.rule_version_id = rule.id
        session.flush()
        enqueue_message(session, user_id=application.user_id, event="identity_review", object_id=application.id,
                        title="申请已达标，等待审核",
                        body=f"您的{UpgradeTarget(application.target).label}申请已满足条件，运营人员审核后即可开通。",
                        link="/me/upgrade", template_data={"identity": UpgradeTarget(application.target).label,
                                                           "shop": application.shop_name})


def _grant(session: Session, application: IdentityApplication, rule: IdentityRuleVersion | None, *,
           admin_id: int | None, now: datetime, value: int | None = None) -> bool:
    """Open the outlet or factory store (which changes the identity), in the caller's transaction. A site the
    network refuses — a taken region — refuses the application with the reason instead (returns False)."""
    target = UpgradeTarget(application.target)
    # Claim the application first: of two transactions that both see it open (two payments of one buyer on
    # Postgres), the second waits on this row, then finds nothing to claim and leaves the sale alone.
    claimed = session.execute(
        update(IdentityApplication)
        .where(IdentityApplication.id == application.id, IdentityApplication.status.in_(OPEN_APPLICATION))
        .values(status=ApplicationStatus.GRANTED)
    ).rowcount
    session.refresh(application)
    if not claimed:
        return False
    user = session.get(User, application.user_id)
    before = user.identity
    shop = {"region": application.region, "owner": user, "name": application.shop_name,
            "address": application.address, "phone": application.phone}
    try:
        if target == UpgradeTarget.OUTLET:
            site = open_outlet(session, **shop, opening_hours=application.opening_hours,
                               latitude_e6=application.latitude_e6, longitude_e6=application.longitude_e6)
        else:
            site = open_factory_store(session, **shop)
    except NetworkError as refused:  # the region was taken meanwhile: a reason for the applicant, not an error
        _decide(session, application, ApplicationStatus.REFUSED, admin_id, now, refused.message)
        return False
    application.is_auto = admin_id is None
    if rule is not None:
        application.rule_version_id = rule.id
    _decide(session, application, ApplicationStatus.GRANTED, admin_id, now, "")
    if value is None and rule is not None:
        value = metric_value(session, user.id, rule)
    record_audit(session, actor_kind="admin" if admin_id else "system", actor_id=admin_id, action="identity.upgrade",
                 target_type="user", target_id=user.id,
                 detail={"from": before, "to": user.identity, "application_id": application.id,
                         "rule_version_id": rule.id if rule else None, "metric_value_fen": value,
                         "site_id": site.id})
    enqueue_message(session, user_id=user.id, event="identity_upgraded", object_id=application.id,
                    title=f"已开通{target.label}",
                    body=f"「{application.shop_name}」已开通，您现在享受{target.label}价格，菜单已更新。", link="/me/",
                    template_data={"identity": target.label, "shop": application.shop_name})
    return True


def _decide(session: Session, application: IdentityApplication, status: ApplicationStatus, admin_id: int | None,
            now: datetime, reason: str) -> None:
    application.status = status
    application.decided_by_admin_id = admin_id
    application.decided_at = now
    application.decision_reason = reason
    session.flush()
    if status == ApplicationStatus.REFUSED:
        record_audit(session, actor_kind="admin" if admin_id else "system", actor_id=admin_id,
                     action="identity_application.refuse", target_type="identity_application",
                     target_id=application.id, detail={"reason": reason})
        enqueue_message(session, user_id=application.user_id, event="identity_refused", object_id=application.id,
                        title="申请未通过", body=reason, link="/me/upgrade",
                        template_data={"identity": UpgradeTarget(application.target).label, "reason": reason})

