"""Identity upgrades (身份升级): a member becomes an outlet, an outlet a factory store, by rules in the settings.

- A rule measures real goods only: the applicant's own paid purchases (refunds excluded), or the goods their
  outlet received through restock orders. A product, bundle or fee that unlocks an identity is a disguised
  entry fee (入门费); the settings refuse it. Earning the direct reward never depends on identity at all
  (``commissions.write_order_lines`` pays the buyer's upline whoever they are).
- The applicant files the shop's details (name, address, map position, region) once. If the rule holds the
  application is granted at once, or sent to admin review when the rule says so; if not yet, it waits and the
  purchase (at payment or at pickup, as the rule says) or the restock receipt that meets it grants it inside
  that same transaction — so identity, menu and price tier change with the payment that earned them.
- Granting opens the outlet or factory store through services/network.py, which keeps the network's rules (one
  factory store per region, checked under a lock and guaranteed by the unique region_id); a site it refuses
  refuses the application with its reason.
- Every change of identity and every decision is in the audit log; the person gets a message.

This module holds applying (the applicant's form, filing, withdrawing) and admins' decisions on applications in
review, and is where callers import every upgrade name from; the rules and the measure are in
``upgrade_rules``, granting by purchase or receipt in ``upgrade_grants``.
"""
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import (OPEN_APPLICATION, AdminUser, ApplicationStatus, GrantMode, IdentityApplication,
                      IdentityRuleVersion, Region, UpgradeTarget, User)
from ..models.base import utcnow
from . import DomainError, NotFound, submissions
from .audit import record_audit
from .network import RegionTaken, refuse_taken_region
from .outlets import clean_address, clean_name, clean_opening_hours, clean_phone, parse_position
from .upgrade_grants import (_IDENTITY, _advance, _decide, _grant,  # noqa: F401 - re-exported
                             _open_application, on_purchase_counted, on_restock_received)
from .upgrade_rules import (APPLIES_FROM, ENTRY_FEE_METRICS, MAX_THRESHOLD_FEN,  # noqa: F401 - re-exported
                            METRIC_FOR_TARGET, TARGET_IDENTITY, IdentityRuleInput, UpgradeError, UpgradeProgress,
                            _CURRENT_RULE, _PURCHASES, create_identity_rule, current_identity_rule, metric_value,
                            rule_summary, upgrade_progress, validate_identity_rule)
from .policy import Duty, require


@dataclass(frozen=True)
class ApplicationInput:
    target: str
    region_id: int | None
    shop_name: str
    address: str
    latitude: str = ""
    longitude: str = ""
    phone: str = ""
    opening_hours: str = ""


def _clean(form: ApplicationInput) -> dict:
    """The application's fields, checked; a Chinese message for the first one that is wrong."""
    if form.target not in set(UpgradeTarget):
        raise UpgradeError("请选择申请的身份。")
    target = UpgradeTarget(form.target)
    # The shop's details under the rules its owner's profile form keeps (services/outlets.py).
    name = _checked(clean_name, form.shop_name, "shop_name")
    address = _checked(clean_address, form.address, "address")
    if form.region_id is None:
        raise UpgradeError("请选择所在区域。", field="region_id")
    phone = _checked(clean_phone, form.phone, "phone")
    hours = _checked(clean_opening_hours, form.opening_hours, "opening_hours")
    position = parse_position(form.latitude, form.longitude) if (form.latitude or form.longitude) else None
    if (form.latitude or form.longitude) and position is None:
        raise UpgradeError("地图位置无效，请重新点击「使用我的位置」。", field="latitude")
    if target == UpgradeTarget.OUTLET and position is None:
        raise UpgradeError("请点击「使用我的位置」标出门店位置，附近的会员才能找到您。", field="latitude")
    return {"target": target, "region_id": form.region_id, "shop_name": name, "address": address,
            "latitude_e6": position[0] if position else None, "longitude_e6": position[1] if position else None,
            "phone": phone, "opening_hours": hours}


def _checked(rule: Callable[[str], str], raw: str, field: str) -> str:
    """``rule``'s result, or its refusal as this service's, about the application's ``field``."""
    try:
        return rule(raw)
    except DomainError as exc:
        raise UpgradeError(exc.message, field=field) from None


def apply_for_identity(session: Session, user_id: int, form: ApplicationInput,
                       now: datetime | None = None) -> IdentityApplication:
    """File an application. Granted at once when the rule holds (or sent to review, as the rule says);
    otherwise it waits for the purchase or receipt that meets the rule."""
    values = _clean(form)
    target = values["target"]
    with write_transaction(session):
        user = session.get(User, user_id)
        if user is None or not user.is_active:
            raise NotFound("账号不存在。")
        if user.identity == TARGET_IDENTITY[target]:
            raise UpgradeError(f"您已是{target.label}。")
        if user.identity != APPLIES_FROM[target]:
            raise UpgradeError(f"{target.label}需由{APPLIES_FROM[target].label}申请。")
        rule = current_identity_rule(session, target)
        if rule is None or rule.grant_mode == GrantMode.CLOSED:
            raise UpgradeError(f"暂未开放{target.label}申请。")
        region = session.get(Region, values["region_id"])
        if region is None:
            raise UpgradeError("请选择所在区域。", field="region_id")
        if target == UpgradeTarget.FACTORY:
            _refuse_taken_region(session, region)
        if _open_application(session, user_id) is not None:
            raise UpgradeError("您已有一份申请在处理中，请等待结果或先撤回。")
        application = IdentityApplication(user_id=user_id, status=ApplicationStatus.WAITING, created_at=now or utcnow(),
                                          **values)
        session.add(application)
        try:
            session.flush()
        except IntegrityError:  # a second open application (double submit on Postgres): the unique index said no
            raise UpgradeError("您已有一份申请在处理中，请等待结果或先撤回。") from None
        record_audit(session, actor_kind="user", actor_id=user_id, action="identity_application.create",
                     target_type="identity_application", target_id=application.id,
                     detail={"target": target.value, "region_id": region.id, "shop_name": values["shop_name"]})
        _advance(session, application, rule, now or utcnow())
    return application


def withdraw_application(session: Session, user_id: int, application_id: int) -> None:
    with write_transaction(session):
        changed = session.execute(
            update(IdentityApplication)
            .where(IdentityApplication.id == application_id, IdentityApplication.user_id == user_id,
                   IdentityApplication.status.in_(OPEN_APPLICATION))
            .values(status=ApplicationStatus.WITHDRAWN, decided_at=utcnow())
        ).rowcount
        if not changed:
            raise NotFound("没有可以撤回的申请。")
        record_audit(session, actor_kind="user", actor_id=user_id, action="identity_application.withdraw",
                     target_type="identity_application", target_id=application_id)


def _refuse_taken_region(session: Session, region: Region) -> None:
    """Said when applying, so nobody waits for a region that is gone; the grant decides (network.open_factory_store)."""
    try:
        refuse_taken_region(session, region)
    except RegionTaken as taken:
        raise UpgradeError(taken.message, field="region_id") from None



# ---------------------------------------------------------------- admin decisions

def _reviewer(admin: AdminUser) -> None:
    require(admin, Duty.APPLICATIONS)


def approve_application(session: Session, admin: AdminUser, application_id: int, *,
                        submission_key: str | None = None) -> IdentityApplication:
    """Grant an application in review. Refused with the reason when the region has been taken meanwhile. A repeat
    of the same form (``submission_key``) answers with the application as the first run left it."""
    _reviewer(admin)
    with write_transaction(session):
        if submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="application.approve", target=application_id) is not None:
            return session.get(IdentityApplication, application_id)
        submissions.remember(session, submission_key, application_id)
        application = session.get(IdentityApplication, application_id)
        if application is None:
            raise NotFound("申请不存在。")
        if application.status != ApplicationStatus.REVIEW:
            raise UpgradeError("只有待审核的申请可以通过。")
        user = session.get(User, application.user_id)
        if user.identity != APPLIES_FROM[UpgradeTarget(application.target)]:
            raise UpgradeError("申请人的身份已变化，不能按此申请开通。")
        rule = session.get(IdentityRuleVersion, application.rule_version_id) if application.rule_version_id else None
        _grant(session, application, rule, admin_id=admin.id, now=utcnow())
    return application


def reject_application(session: Session, admin: AdminUser, application_id: int, reason: str, *,
                       submission_key: str | None = None) -> IdentityApplication:
    _reviewer(admin)
    reason = " ".join((reason or "").split())[:200]
    if not reason:
        raise UpgradeError("请填写不通过的原因，申请人会看到它。", field="reason")
    with write_transaction(session):
        if submissions.claim(session, submission_key, actor=f"admin:{admin.id}", action="application.reject", target=application_id) is not None:
            return session.get(IdentityApplication, application_id)
        submissions.remember(session, submission_key, application_id)
        application = session.get(IdentityApplication, application_id)
        if application is None:
            raise NotFound("申请不存在。")
        if application.status not in OPEN_APPLICATION:
            raise UpgradeError("该申请已处理。")
        _decide(session, application, ApplicationStatus.REFUSED, admin.id, utcnow(), reason)
    return application
