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
"""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import run, write_transaction
from ..models import (
    OPEN_APPLICATION,
    AdminRole,
    AdminUser,
    ApplicationStatus,
    CountsAt,
    GrantMode,
    Identity,
    IdentityApplication,
    IdentityRuleVersion,
    Order,
    OrderStatus,
    Outlet,
    Region,
    RestockItem,
    RestockOrder,
    UpgradeMetric,
    UpgradeTarget,
    User,
)
from ..models.base import utcnow
from ..money import format_yuan
from . import DomainError, Forbidden, NotFound, submissions
from .audit import record_audit
from .messages import enqueue_message, enqueue_once
from .network import NetworkError, RegionTaken, open_factory_store, open_outlet, refuse_taken_region
from .outlets import PHONE_PATTERN, parse_position

MAX_THRESHOLD_FEN = 100_000_000  # ¥1,000,000
# Conditions an operator might ask for that are entry fees in disguise. Named so the refusal can say why.
ENTRY_FEE_METRICS = {
    "product_purchase": "购买指定商品或礼包即开通",
    "fee": "缴纳加盟费、保证金或会员费即开通",
}
# Which measure fits which target: a member has no outlet to restock; a factory store is earned by supplying.
METRIC_FOR_TARGET = {UpgradeTarget.OUTLET: UpgradeMetric.GOODS_PURCHASES,
                     UpgradeTarget.FACTORY: UpgradeMetric.RESTOCK_VOLUME}
TARGET_IDENTITY = {UpgradeTarget.OUTLET: Identity.OUTLET, UpgradeTarget.FACTORY: Identity.FACTORY}
# Who may apply for what: the identity one holds before.
APPLIES_FROM = {UpgradeTarget.OUTLET: Identity.MEMBER, UpgradeTarget.FACTORY: Identity.OUTLET}


class UpgradeError(DomainError):
    pass


# ---------------------------------------------------------------- rules

@dataclass(frozen=True)
class IdentityRuleInput:
    target: str
    metric: str
    threshold_fen: int
    counts_at: str = CountsAt.REDEEMED
    grant_mode: str = GrantMode.AUTO
    note: str = ""


def validate_identity_rule(rule: IdentityRuleInput) -> None:
    """Refuse, with the reason in Chinese, any rule that would sell an identity or cannot be measured."""
    if rule.metric in ENTRY_FEE_METRICS:
        raise UpgradeError(f"「{ENTRY_FEE_METRICS[rule.metric]}」属于变相入门费（禁止传销条例第七条）：任何商品或费用都不能"
                           "换取身份或收益资格。请以累计实物消费或门店进货量为条件。")
    if rule.target not in set(UpgradeTarget):
        raise UpgradeError("只能为核销网点或工厂店设置升级规则；会员身份人人都有，无需开通。")
    if rule.metric not in set(UpgradeMetric):
        raise UpgradeError("未知的升级条件。")
    expected = METRIC_FOR_TARGET[UpgradeTarget(rule.target)]
    if rule.metric != expected:
        raise UpgradeError(f"{UpgradeTarget(rule.target).label}的升级条件应为「{expected.label}」。")
    if not 1 <= rule.threshold_fen <= MAX_THRESHOLD_FEN:
        raise UpgradeError(f"门槛金额需在 ¥0.01 到 {format_yuan(MAX_THRESHOLD_FEN)} 之间。")
    if rule.counts_at not in set(CountsAt):
        raise UpgradeError("请选择以支付还是以提货为准。")
    if rule.grant_mode not in set(GrantMode):
        raise UpgradeError("请选择开通方式。")


_CURRENT_RULE = (select(IdentityRuleVersion).where(IdentityRuleVersion.target == bindparam("target"))
                 .order_by(IdentityRuleVersion.id.desc()).limit(1))  # prebuilt: every payment and pickup asks


def current_identity_rule(session: Session, target: UpgradeTarget) -> IdentityRuleVersion | None:
    return session.execute(_CURRENT_RULE, {"target": target}).scalar()


def create_identity_rule(session: Session, admin: AdminUser, rule: IdentityRuleInput) -> IdentityRuleVersion:
    """Rules are never edited: a change is a new version (audited); applications are measured by the newest."""
    if admin.role not in (AdminRole.FINANCE, AdminRole.SUPERADMIN):
        raise Forbidden("只有财务或超级管理员可以修改身份升级规则。")
    validate_identity_rule(rule)
    with write_transaction(session):
        version = IdentityRuleVersion(**rule.__dict__, created_by_admin_id=admin.id)
        session.add(version)
        session.flush()
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="identity_rule.create",
                     target_type="identity_rule_version", target_id=version.id, detail=dict(rule.__dict__))
    return version


def rule_summary(rule: IdentityRuleVersion | None) -> str:
    """The rule in one sentence for the member, e.g. 累计购买实物商品满 ¥500.00（以提货为准），达标自动开通。"""
    if rule is None or rule.grant_mode == GrantMode.CLOSED:
        return "暂未开放申请。"
    basis = f"（{CountsAt(rule.counts_at).label}）" if rule.metric == UpgradeMetric.GOODS_PURCHASES else ""
    return (f"{UpgradeMetric(rule.metric).label}满 {format_yuan(rule.threshold_fen)}{basis}，"
            f"{GrantMode(rule.grant_mode).label}。")


# ---------------------------------------------------------------- measuring

_PURCHASES = select(func.coalesce(func.sum(Order.total_fen), 0)).where(
    Order.user_id == bindparam("user_id"), Order.status.in_(bindparam("states", expanding=True)))
_IDENTITY = select(User.identity).where(User.id == bindparam("user_id"))


def metric_value(session: Session, user_id: int, rule: IdentityRuleVersion) -> int:
    """How far the person is on the rule's measure, in fen. Indexed sums over their own orders or receipts."""
    if rule.metric == UpgradeMetric.GOODS_PURCHASES:
        states = ((OrderStatus.PAID, OrderStatus.COMPLETED) if rule.counts_at == CountsAt.PAID
                  else (OrderStatus.COMPLETED,))
        return int(run(session, _PURCHASES, {"user_id": user_id, "states": states}).scalar())
    location_id = session.scalar(select(Outlet.location_id).where(Outlet.owner_user_id == user_id))
    if location_id is None:
        return 0
    return int(session.scalar(
        select(func.coalesce(func.sum(RestockItem.received_quantity * RestockItem.unit_price_fen), 0))
        .join(RestockOrder, RestockOrder.id == RestockItem.restock_order_id)
        .where(RestockOrder.to_location_id == location_id)
    ))


@dataclass(frozen=True)
class UpgradeProgress:
    target: UpgradeTarget
    rule: IdentityRuleVersion | None
    value_fen: int
    can_apply: bool  # the person holds the identity this target is applied for from
    application: IdentityApplication | None  # the newest one for this target

    @property
    def threshold_fen(self) -> int:
        return self.rule.threshold_fen if self.rule else 0

    @property
    def met(self) -> bool:
        return self.rule is not None and self.value_fen >= self.rule.threshold_fen

    @property
    def missing_fen(self) -> int:
        return max(0, self.threshold_fen - self.value_fen)

    @property
    def percent(self) -> int:
        return min(100, self.value_fen * 100 // self.threshold_fen) if self.threshold_fen else 0

    @property
    def open(self) -> bool:
        return self.rule is not None and self.rule.grant_mode != GrantMode.CLOSED

    @property
    def summary(self) -> str:
        return rule_summary(self.rule)


def upgrade_progress(session: Session, user: User) -> list[UpgradeProgress]:
    """For the 身份升级 page: each target's rule, how far the person is, and their latest application."""
    result = []
    for target in UpgradeTarget:
        rule = current_identity_rule(session, target)
        application = session.scalar(
            select(IdentityApplication).where(IdentityApplication.user_id == user.id,
                                              IdentityApplication.target == target)
            .order_by(IdentityApplication.id.desc()).limit(1)
        )
        result.append(UpgradeProgress(
            target, rule, metric_value(session, user.id, rule) if rule else 0,
            user.identity == APPLIES_FROM[target], application,
        ))
    return result


# ---------------------------------------------------------------- applying

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
    name = " ".join(form.shop_name.split())
    address = " ".join(form.address.split())
    if not 2 <= len(name) <= 32:
        raise UpgradeError("店名需为 2 到 32 个字。")
    if not 5 <= len(address) <= 120:
        raise UpgradeError("请填写详细地址（5 到 120 个字）。")
    if form.region_id is None:
        raise UpgradeError("请选择所在区域。")
    phone = form.phone.strip()
    if not PHONE_PATTERN.match(phone):
        raise UpgradeError("请填写可以联系到门店的电话。")
    hours = " ".join(form.opening_hours.split())
    if len(hours) > 32:
        raise UpgradeError("营业时间最多 32 个字。")
    position = parse_position(form.latitude, form.longitude) if (form.latitude or form.longitude) else None
    if (form.latitude or form.longitude) and position is None:
        raise UpgradeError("地图位置无效，请重新点击「使用我的位置」。")
    if target == UpgradeTarget.OUTLET and position is None:
        raise UpgradeError("请点击「使用我的位置」标出门店位置，附近的会员才能找到您。")
    return {"target": target, "region_id": form.region_id, "shop_name": name, "address": address,
            "latitude_e6": position[0] if position else None, "longitude_e6": position[1] if position else None,
            "phone": phone, "opening_hours": hours}


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
            raise UpgradeError("请选择所在区域。")
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


def _open_application(session: Session, user_id: int) -> IdentityApplication | None:
    return session.scalar(select(IdentityApplication).where(
        IdentityApplication.user_id == user_id, IdentityApplication.status.in_(OPEN_APPLICATION)))


def _refuse_taken_region(session: Session, region: Region) -> None:
    """Said when applying, so nobody waits for a region that is gone; the grant decides (network.open_factory_store)."""
    try:
        refuse_taken_region(session, region)
    except RegionTaken as taken:
        raise UpgradeError(taken.message) from None


# ---------------------------------------------------------------- moving on

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


# ---------------------------------------------------------------- admin decisions

def _reviewer(admin: AdminUser) -> None:
    if admin.role not in (AdminRole.OPERATOR, AdminRole.SUPERADMIN):
        raise Forbidden("只有运营或超级管理员可以审核身份申请。")


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
        raise UpgradeError("请填写不通过的原因，申请人会看到它。")
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
