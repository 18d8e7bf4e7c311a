"""The rules of identity upgrades (身份升级) and how far a person is on them: which rule may be set (none that sells
an identity: a product, bundle or fee that unlocks one is a disguised entry fee, 入门费), the current rule of
each target (rules are versioned, never edited), the measure — the applicant's own paid purchases, or the goods
their outlet received through restock orders — and the 身份升级 page's progress. Applying and granting are in
``upgrades`` and ``upgrade_grants``."""
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from ..db import run, write_transaction
from ..models import (OPEN_APPLICATION, AdminUser, CountsAt, GrantMode, Identity, IdentityApplication, IdentityRuleVersion, Order,
                      OrderStatus, Outlet, RestockItem, RestockOrder, UpgradeMetric, UpgradeTarget, User)
from ..money import format_yuan
from . import DomainError
from .audit import record_audit
from .policy import Duty, require

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
    require(admin, Duty.MONEY, "只有财务或超级管理员可以修改身份升级规则。")
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

    @property
    def may_apply_now(self) -> bool:
        """Whether the page offers the application form: the rule is open to this identity and no application
        of theirs is waiting or in review."""
        pending = self.application is not None and self.application.status in OPEN_APPLICATION
        return self.can_apply and self.open and not pending

    @property
    def application_fields(self) -> frozenset[str]:
        """What the form asks (``ApplicationInput``'s fields): an outlet also gives its hours and position."""
        common = {"region_id", "shop_name", "address", "phone"}
        return frozenset(common | {"opening_hours", "latitude"} if self.target == UpgradeTarget.OUTLET else common)


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
