"""开店向导: the first run of a production install.

A start that finds no admin issues a one-time setup link (``issue_setup_token``; only its SHA-256 is kept). The
link is the only way to the first admin from the web: ``claim_setup`` consumes it with one conditional UPDATE, so
two people opening it at once cannot both become superadmin. The wizard then walks the superadmin through what a
shop needs before its first sale — its name, the platform warehouse, a region with its factory store and outlets,
the commission rule (no sale without one: ``orders.NOT_OPEN_YET``) and the identity rules — and ``setup_progress``
says which steps are done, read from the data itself so the wizard can be left and resumed.
"""
import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from ..db import insert_or_ignore, write_transaction
from ..models import (
    AdminRole,
    AdminUser,
    FactoryStore,
    Outlet,
    Region,
    ShopSettings,
    UpgradeTarget,
    User,
)
from ..models.base import utcnow
from . import DomainError, NotFound
from .accounts import create_admin
from .audit import record_audit
from .commissions import RuleInput, rule_published
from .logins import LoginClient, open_login_session
from .network import platform_location_id
from .upgrades import IdentityRuleInput, create_identity_rule, current_identity_rule, validate_identity_rule

SETUP_LINK_TTL = timedelta(hours=24)
MAX_SHOP_NAME = 16
DEFAULT_SHOP_NAME = "顶俏"

# What the wizard proposes; the superadmin may change every value within the guard rails before publishing.
# 10% to the direct upline, 5% one level further, 5% to the outlet that hands the goods over, 3% to the region's
# factory store: 23% in all under a 30% cap, with 7 days of cooling (the after-sales window) before it settles.
PROPOSED_COMMISSION_RULE = RuleInput(referral_depth=2, direct_bps=1000, team_bps=500, third_level_bps=0,
                                     service_fee_bps=500, regional_bps=300, payout_cap_bps=3000, cooling_days=7,
                                     note="开店向导建议值")
# An outlet is earned by ¥299 of goods picked up, a factory store by ¥20,000 of goods received as an outlet; both
# reviewed by a person, since an identity hands out a shop's address and stock.
PROPOSED_IDENTITY_RULES = (
    IdentityRuleInput(target="outlet", metric="goods_purchases", threshold_fen=29_900, counts_at="redeemed",
                      grant_mode="review", note="开店向导建议值"),
    IdentityRuleInput(target="factory", metric="restock_volume", threshold_fen=2_000_000, counts_at="redeemed",
                      grant_mode="review", note="开店向导建议值"),
)


class SetupError(DomainError):
    pass


class SetupLinkInvalid(NotFound):
    """The link is unknown, used, expired, or the shop already has an admin."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ensure_settings_row(session: Session) -> None:
    """The single settings row, inserted once whoever gets there first (two workers starting together)."""
    insert_or_ignore(session, ShopSettings, {"id": 1, "name": DEFAULT_SHOP_NAME, "updated_at": utcnow()}, "id")


def shop_settings(session: Session) -> ShopSettings | None:
    return session.get(ShopSettings, 1)


def shop_name(session: Session) -> str:
    name = session.scalar(select(ShopSettings.name).where(ShopSettings.id == 1))
    return name or DEFAULT_SHOP_NAME


def has_admin(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(AdminUser.id.is_not(None)))))


def issue_setup_token(session: Session, now: datetime | None = None) -> str | None:
    """A fresh setup token when the shop has no admin yet (None otherwise); any earlier link stops working."""
    now = now or utcnow()
    with write_transaction(session):
        if has_admin(session):
            return None
        _ensure_settings_row(session)
        token = secrets.token_urlsafe(32)
        session.execute(update(ShopSettings).where(ShopSettings.id == 1)
                        .values(setup_token_hash=_hash(token), setup_token_expires_at=now + SETUP_LINK_TTL))
    return token


def setup_link_valid(session: Session, token: str, now: datetime | None = None) -> bool:
    now = now or utcnow()
    row = shop_settings(session)
    return (row is not None and row.setup_token_hash is not None and secrets.compare_digest(row.setup_token_hash,
            _hash(token)) and row.setup_token_expires_at is not None and row.setup_token_expires_at > now
            and not has_admin(session))


def claim_setup(session: Session, token: str, *, username: str, password: str, password_again: str,
                shop: str, lifetime: timedelta, client: LoginClient, now: datetime | None = None) -> AdminUser:
    """The first superadmin, logged in (a login session of ``lifetime``), and the shop's name, in one transaction
    that also uses up the link."""
    now = now or utcnow()
    name = _clean_shop_name(shop)
    if password != password_again:
        raise SetupError("两次输入的密码不一致。")
    with write_transaction(session):
        if has_admin(session):
            raise SetupLinkInvalid("本店已有管理员，初始化链接已失效。请到 /admin/login 登录。")
        used = session.execute(
            update(ShopSettings)
            .where(ShopSettings.id == 1, ShopSettings.setup_token_hash == _hash(token),
                   ShopSettings.setup_token_expires_at > now)
            .values(setup_token_hash=None, setup_token_expires_at=None, name=name, updated_at=now)
        ).rowcount
        if used != 1:
            raise SetupLinkInvalid("初始化链接无效或已过期。请重新启动服务（或运行 dingqiao setup-link）获取新链接。")
        admin = create_admin(session, username, password, AdminRole.SUPERADMIN)
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="setup.claim", target_type="shop",
                     target_id=1, detail={"username": admin.username, "shop_name": name})
        open_login_session(session, admin, lifetime, client)
    return admin


def _clean_shop_name(raw: str) -> str:
    name = " ".join((raw or "").split())
    if not name:
        raise SetupError("请填写店铺名称。")
    if len(name) > MAX_SHOP_NAME:
        raise SetupError(f"店铺名称最多 {MAX_SHOP_NAME} 个字。")
    return name


def rename_shop(session: Session, admin: AdminUser, raw: str) -> str:
    if admin.role != AdminRole.SUPERADMIN:
        raise SetupError("只有超级管理员可以修改店铺名称。")
    name = _clean_shop_name(raw)
    with write_transaction(session):
        _ensure_settings_row(session)
        before = shop_name(session)
        session.execute(update(ShopSettings).where(ShopSettings.id == 1).values(name=name, updated_at=utcnow()))
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="shop.rename", target_type="shop",
                     target_id=1, detail={"name": [before, name]})
    return name


@dataclass(frozen=True)
class SetupProgress:
    shop_name: str
    warehouse: bool
    regions: int
    factory_stores: int
    outlets: int
    members: int
    commission_rule: bool
    identity_rules: bool
    finished_at: datetime | None

    @property
    def open_for_business(self) -> bool:
        """Members can buy: a rule is published and someone can hand the goods over."""
        return self.commission_rule and self.outlets > 0

    @property
    def missing(self) -> list[str]:
        """What the wizard still needs before it can be finished."""
        return [label for done, label in ((self.warehouse, "平台仓库"), (self.regions, "区域"),
                                          (self.commission_rule, "佣金规则"), (self.identity_rules, "身份规则"))
                if not done]

    @property
    def ready_to_finish(self) -> bool:
        return not self.missing


def setup_progress(session: Session) -> SetupProgress:
    def count(model) -> int:
        return session.scalar(select(func.count()).select_from(model)) or 0

    row = shop_settings(session)
    return SetupProgress(
        shop_name=row.name if row else DEFAULT_SHOP_NAME,
        warehouse=platform_location_id(session) is not None,
        regions=count(Region), factory_stores=count(FactoryStore), outlets=count(Outlet), members=count(User),
        commission_rule=rule_published(session),
        identity_rules=all(current_identity_rule(session, target) is not None for target in UpgradeTarget),
        finished_at=row.setup_finished_at if row else None,
    )


def finish_setup(session: Session, admin: AdminUser, now: datetime | None = None) -> None:
    if missing := setup_progress(session).missing:
        raise SetupError(f"还差：{'、'.join(missing)}。")
    with write_transaction(session):
        _ensure_settings_row(session)
        session.execute(update(ShopSettings).where(ShopSettings.id == 1, ShopSettings.setup_finished_at.is_(None))
                        .values(setup_finished_at=now or utcnow()))
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="setup.finish", target_type="shop",
                     target_id=1, detail={})


def publish_identity_rules(session: Session, admin: AdminUser, thresholds_fen: dict[str, int],
                           grant_mode: str) -> None:
    """Both identity rules at once, from the proposals with the superadmin's thresholds: both or neither."""
    rules = [replace(proposed, threshold_fen=thresholds_fen[proposed.target], grant_mode=grant_mode,
                     note="开店向导发布") for proposed in PROPOSED_IDENTITY_RULES]
    for rule in rules:
        validate_identity_rule(rule)
    with write_transaction(session):
        for rule in rules:
            create_identity_rule(session, admin, rule)


def recent_members(session: Session, limit: int = 50) -> list[User]:
    """Members who may own a site — those who logged in (owners open the shop in WeChat once) and run none yet —
    newest first."""
    owners = select(Outlet.owner_user_id).union(select(FactoryStore.owner_user_id))
    return list(session.scalars(select(User).where(User.is_active.is_(True), User.id.not_in(owners))
                                .order_by(User.id.desc()).limit(limit)))
