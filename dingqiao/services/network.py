"""The offline network: the platform warehouse, regions, factory stores and outlets, and the identities that go
with running them. The one home for opening a site — the admin's network pages, the first-run setup and an
approved identity application (services/upgrades.py) all open sites here, so each rule is kept in one place:

- One platform warehouse (restocks read the first one; a second would hold stock nobody ships from) and one
  factory store per region (read in services/network_rules.py): each is looked for under a lock writers of the same kind queue on (an advisory
  lock on Postgres, BEGIN IMMEDIATE on SQLite), and for the region the unique ``region_id`` refuses anything
  that got past it.
- A person runs one shop: an owner who already runs an outlet or a factory store is refused (an outlet
  growing into a factory store is an identity application, measured by its restock volume).
- Identity follows the sites. Opening a site grants its identity; granting or revoking one directly changes
  the member's price tier and menu, so it is finance's (or the superadmin's) with a reason. A revoke is refused
  while the member still runs an active site of that kind — the message names it: suspend it first, which
  stops orders and pickups there, so nobody is left with a shop the system no longer lets them run. A grant
  needs an active site of that kind (opening one grants it anyway).
- Moving an outlet: its supplier is its region's factory store, read at every restock, so it follows the
  region. Restock orders not yet shipped are cancelled with the move (nothing has left the old supplier's
  stock for them); the move is refused while one has shipped goods not yet received or is partly shipped.

Every write is one transaction with its audit rows; bad input raises ``NetworkError`` in Chinese, nothing
written. What the pages show is read in services/network_views.py.
"""
import re
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import serialize_writers, write_transaction
from ..models import (
    MONEY_REVIEWERS,
    OPEN_APPLICATION,
    AdminUser,
    FactoryStore,
    Identity,
    IdentityApplication,
    LocationKind,
    Outlet,
    Region,
    RestockOrder,
    RestockStatus,
    SiteStatus,
    StockLocation,
    User,
)
from ..models.base import utcnow
from . import Forbidden, NotFound
from .accounts import admin_reason
from .audit import record_audit
from .messages import enqueue_message
# The rules' reads and the pages' reads live beside this module; their names stay importable from here.
from .network_rules import (  # noqa: F401
    IN_TRANSIT,
    NetworkError,
    RegionTaken,
    factory_stores_by_region,
    open_restocks,
    platform_location_id,
    platform_warehouse,
    refuse_taken_region,
    taken_regions,
)
from .network_views import (  # noqa: F401
    MemberMatch,
    MovePreview,
    NetworkOverview,
    RegionRow,
    Shop,
    move_preview,
    network_overview,
    search_members,
)
from .outlets import OutletProfileInput, clean_profile, in_china, parse_position

FACTORY_REGION_LOCK_KEY = 5_021_002  # advisory-lock keys: factory-store openings, warehouse creation one at a time
PLATFORM_LOCK_KEY = 5_021_003
REGION_CODE = re.compile(r"[A-Z0-9-]{2,16}")
SITE_IDENTITIES = (Identity.OUTLET, Identity.FACTORY)
IDENTITY_NEEDS_FINANCE = "身份决定会员的价格档位和菜单，直接授予或撤销需财务或超级管理员操作。"


# ---------------------------------------------------------------- the warehouse and regions

def create_platform_warehouse(session: Session, *, name: str, admin_id: int) -> StockLocation:
    """The platform's own stock, which factory stores restock from. At most one."""
    name = _name(name, "仓库名称")
    with write_transaction(session):
        _acting_admin(session, admin_id)
        serialize_writers(session, PLATFORM_LOCK_KEY)
        existing = platform_warehouse(session)
        if existing is not None:
            raise NetworkError(f"平台仓库已存在（{existing.name}），只能设一个。")
        warehouse = StockLocation(kind=LocationKind.PLATFORM, name=name)
        session.add(warehouse)
        session.flush()
        record_audit(session, actor_kind="admin", actor_id=admin_id, action="platform_warehouse.create",
                     target_type="stock_location", target_id=warehouse.id, detail={"name": name})
    return warehouse


def create_region(session: Session, *, code: str, name: str, admin_id: int) -> Region:
    code = (code or "").strip().upper()
    if not REGION_CODE.fullmatch(code):
        raise NetworkError("区域编号需为 2 到 16 位字母、数字或 -，例如 HZXH。", field="code")
    name = _name(name, "区域名称")
    with write_transaction(session):
        _acting_admin(session, admin_id)
        taken = session.scalar(select(Region).where(or_(Region.code == code, Region.name == name)).limit(1))
        if taken is not None:
            raise NetworkError(f"区域编号 {code} 已被「{taken.name}」使用。" if taken.code == code
                               else f"已有名为「{name}」的区域。", field="code" if taken.code == code else "name")
        region = Region(code=code, name=name)
        _insert(session, region, NetworkError("区域编号或名称刚被占用，请换一个。"))
        record_audit(session, actor_kind="admin", actor_id=admin_id, action="region.create", target_type="region",
                     target_id=region.id, detail={"code": code, "name": name})
    return region


# ---------------------------------------------------------------- opening sites

def create_factory_store(session: Session, *, region_id: int, owner_user_id: int, name: str, address: str,
                         phone: str, admin_id: int) -> FactoryStore:
    """Open a factory store for a member who runs no shop yet; they become a factory store (price tier, menu)."""
    details = _shop_details(name, address, phone)
    del details["opening_hours"]  # factory stores keep none: members pick up at outlets
    with write_transaction(session):
        _acting_admin(session, admin_id)
        region = _region(session, region_id)
        owner = _new_shop_owner(session, owner_user_id)
        before = owner.identity
        store = open_factory_store(session, region=region, owner=owner, **details)
        _record_opening(session, admin_id, "factory_store", store, owner, before, details)
    return store


def create_outlet(session: Session, *, region_id: int, owner_user_id: int, name: str, address: str, phone: str,
                  opening_hours: str, latitude: str, longitude: str, admin_id: int) -> Outlet:
    """Open an outlet for a member who runs no shop yet, at a position typed in GCJ-02 degrees (as 高德 or
    Tencent maps give it); they become an outlet. The owner may correct the position later from their phone."""
    details = _shop_details(name, address, phone, opening_hours)
    latitude_e6, longitude_e6 = typed_position(latitude, longitude)
    with write_transaction(session):
        _acting_admin(session, admin_id)
        region = _region(session, region_id)
        owner = _new_shop_owner(session, owner_user_id)
        before = owner.identity
        outlet = open_outlet(session, region=region, owner=owner, latitude_e6=latitude_e6,
                             longitude_e6=longitude_e6, **details)
        _record_opening(session, admin_id, "outlet", outlet, owner, before,
                        {**details, "latitude_e6": latitude_e6, "longitude_e6": longitude_e6})
    return outlet


def open_factory_store(session: Session, *, region: Region, owner: User, name: str, address: str,
                       phone: str) -> FactoryStore:
    """Inside the caller's write transaction: the store with its stock location, and its owner's identity.
    The region's exclusivity is decided here and only here; a taken region raises RegionTaken, nothing added."""
    serialize_writers(session, FACTORY_REGION_LOCK_KEY)
    refuse_taken_region(session, region)
    store = FactoryStore(region_id=region.id, owner_user_id=owner.id, name=name, address=address, phone=phone,
                         location=StockLocation(kind=LocationKind.FACTORY, name=name))
    _insert(session, store, RegionTaken(f"「{region.name}」已有工厂店，每个区域只设一家工厂店。", field="region_id"))
    owner.identity = Identity.FACTORY
    return store


def open_outlet(session: Session, *, region: Region, owner: User, name: str, address: str, phone: str,
                opening_hours: str, latitude_e6: int, longitude_e6: int) -> Outlet:
    """Inside the caller's write transaction: the outlet with its stock location, and its owner's identity.
    An owner who already has an outlet raises NetworkError, nothing added."""
    outlet = Outlet(region_id=region.id, owner_user_id=owner.id, name=name, address=address, phone=phone,
                    opening_hours=opening_hours, latitude_e6=latitude_e6, longitude_e6=longitude_e6,
                    location=StockLocation(kind=LocationKind.OUTLET, name=name))
    _insert(session, outlet, NetworkError("该会员已经营一家核销网点。"))
    owner.identity = Identity.OUTLET
    return outlet


def typed_position(latitude: str | None, longitude: str | None) -> tuple[int, int]:
    """A position typed by a person, in degrees → micro-degrees; refused when missing, not a number, or outside
    China (the usual typo: latitude and longitude swapped)."""
    if not (latitude or "").strip() or not (longitude or "").strip():
        raise NetworkError("请填写门店坐标：纬度和经度（GCJ-02，单位为度）。", field="latitude")
    position = parse_position(latitude, longitude)
    if position is None:
        raise NetworkError("坐标无效：纬度需为 -90 到 90、经度为 -180 到 180 之间的数字（单位为度，例如 30.274150）。",
                           field="latitude")
    if not in_china(position):
        raise NetworkError("坐标不在中国境内：请检查纬度和经度是否填反（杭州约为纬度 30.27、经度 120.15）。", field="latitude")
    return position


OWNER = "owner_user_id"  # the argument (and form field) naming a new shop's owner


def _new_shop_owner(session: Session, user_id: int) -> User:
    """The member about to open a shop, their row locked (Postgres) so two openings for one person queue."""
    owner = _locked_member(session, user_id, field=OWNER)
    outlet, store = _shops_of(session, owner.id)
    if store is not None:
        raise NetworkError(f"该会员已经营工厂店「{store.name}」，一人只经营一家店。", field=OWNER)
    if outlet is not None:
        raise NetworkError(f"该会员已经营核销网点「{outlet.name}」，一人只经营一家店；网点升级为工厂店请走身份申请。",
                           field=OWNER)
    if session.scalar(select(IdentityApplication.id).where(IdentityApplication.user_id == owner.id,
                                                           IdentityApplication.status.in_(OPEN_APPLICATION))):
        raise NetworkError("该会员有一份身份申请正在处理中，请先在「身份申请」中处理它。", field=OWNER)
    return owner


def _record_opening(session: Session, admin_id: int, kind: str, site: Outlet | FactoryStore, owner: User,
                    before: str, values: dict) -> None:
    label = Identity(owner.identity).label
    record_audit(session, actor_kind="admin", actor_id=admin_id, action=f"{kind}.create", target_type=kind,
                 target_id=site.id, detail={"region_id": site.region_id, "owner_user_id": owner.id, **values})
    record_audit(session, actor_kind="admin", actor_id=admin_id, action="identity.upgrade", target_type="user",
                 target_id=owner.id, detail={"from": before, "to": owner.identity, "site": kind, "site_id": site.id})
    enqueue_message(session, user_id=owner.id, event="identity_upgraded", object_id=f"{kind}-{site.id}",
                    title=f"已开通{label}", body=f"「{site.name}」已开通，您现在享受{label}价格，菜单已更新。",
                    link="/me/", template_data={"identity": label, "shop": site.name})


# ---------------------------------------------------------------- identities

def grant_identity(session: Session, *, user_id: int, identity: str, reason: str, admin_id: int) -> User:
    """Give back the identity of a site the member runs (after it was revoked, or lost to a bad edit)."""
    wanted = _site_identity(identity)
    reason = admin_reason(reason, "请填写授予身份的原因。")
    with write_transaction(session):
        _acting_admin(session, admin_id, IDENTITY_NEEDS_FINANCE)
        member = _locked_member(session, user_id)
        if member.identity == wanted:
            raise NetworkError(f"该会员已是{wanted.label}。", field="user_id")
        if member.identity == Identity.FACTORY:
            raise NetworkError("该会员是工厂店：如需改为核销网点，请撤销工厂店身份。", field="user_id")
        outlet, store = _shops_of(session, member.id)
        site = store if wanted == Identity.FACTORY else outlet
        if site is None or site.status != SiteStatus.ACTIVE:
            raise NetworkError(f"该会员名下没有营业中的{wanted.label}：请先开设（开设即授予身份）或恢复其营业。",
                               field="user_id")
        _change_identity(session, admin_id, member, wanted, "identity.grant", reason)
    return member


def revoke_identity(session: Session, *, user_id: int, identity: str, reason: str, admin_id: int) -> User:
    """Take an identity away; the member keeps the one their other active site gives, else becomes a member.
    Refused while they still run an active site of that kind."""
    revoked = _site_identity(identity)
    reason = admin_reason(reason, "请填写撤销身份的原因。")
    with write_transaction(session):
        _acting_admin(session, admin_id, IDENTITY_NEEDS_FINANCE)
        member = _locked_member(session, user_id, active_only=False)
        if member.identity != revoked:
            raise NetworkError(f"该会员当前不是{revoked.label}，无需撤销。", field="user_id")
        outlet, store = _shops_of(session, member.id)
        site = store if revoked == Identity.FACTORY else outlet
        if site is not None and site.status == SiteStatus.ACTIVE:
            raise NetworkError(f"该会员仍在经营{revoked.label}「{site.name}」：请先暂停其营业（暂停后不能下单到此、"
                               "不能核销或进货），再撤销身份。", field="user_id")
        keeps = (Identity.OUTLET if revoked == Identity.FACTORY and outlet is not None
                 and outlet.status == SiteStatus.ACTIVE else Identity.MEMBER)
        _change_identity(session, admin_id, member, keeps, "identity.revoke", reason)
    return member


def _site_identity(identity: str) -> Identity:
    if identity not in SITE_IDENTITIES:
        raise NetworkError("请选择核销网点或工厂店身份（会员身份人人都有）。", field="identity")
    return Identity(identity)


def _change_identity(session: Session, admin_id: int, member: User, identity: Identity, action: str,
                     reason: str) -> None:
    record_audit(session, actor_kind="admin", actor_id=admin_id, action=action, target_type="user",
                 target_id=member.id, detail={"from": member.identity, "to": identity.value, "reason": reason})
    member.identity = identity


# ---------------------------------------------------------------- moving an outlet

@dataclass(frozen=True)
class OutletMoved:
    outlet: Outlet
    cancelled_restock_nos: list[str]


def move_outlet(session: Session, *, outlet_id: int, region_id: int, admin_id: int) -> OutletMoved:
    """Put an outlet in another region; from now on it restocks from that region's factory store, and that store
    earns the region's share of its orders (orders already paid keep their commission lines)."""
    with write_transaction(session):
        _acting_admin(session, admin_id)
        outlet = session.scalar(select(Outlet).where(Outlet.id == outlet_id).with_for_update()
                                .execution_options(populate_existing=True))
        if outlet is None:
            raise NotFound("网点不存在。")
        region = _region(session, region_id)
        if region.id == outlet.region_id:
            raise NetworkError(f"「{outlet.name}」已在「{region.name}」。", field="region_id")
        orders = open_restocks(session, outlet.location_id)
        if under_way := [order.restock_no for order in orders if order.status in IN_TRANSIT]:
            raise NetworkError(f"进货单 {'、'.join(under_way)} 已发货或部分发货：请待网点确认收货（部分发货的请供货方"
                               "发完）后再划转。")
        reason = f"网点划转到「{region.name}」"
        cancelled = [_cancel_unshipped(session, admin_id, order, reason) for order in orders]
        record_audit(session, actor_kind="admin", actor_id=admin_id, action="outlet.move", target_type="outlet",
                     target_id=outlet.id, detail={"region_id": [outlet.region_id, region.id],
                                                  "cancelled_restocks": cancelled})
        outlet.region_id = region.id
    return OutletMoved(outlet, cancelled)


def _cancel_unshipped(session: Session, admin_id: int, order: RestockOrder, reason: str) -> str:
    """The admin's cancel of a restock order nothing has shipped for. ``restock.cancel_restock`` acts for one
    side of the order; an admin moving an outlet is neither, so the same conditional update is made here, audited
    under the same action. Nothing was reserved for an unshipped order, so no stock moves."""
    cancelled = session.execute(
        update(RestockOrder).where(RestockOrder.id == order.id, RestockOrder.status == RestockStatus.PENDING)
        .values(status=RestockStatus.CANCELLED, cancel_reason=reason, updated_at=utcnow())
    ).rowcount
    if not cancelled:  # the supplier shipped since it was read (Postgres): the whole move is undone
        raise NetworkError(f"进货单 {order.restock_no} 刚开始发货，请待收货后再划转。")
    record_audit(session, actor_kind="admin", actor_id=admin_id, action="restock.cancel", target_type="restock_order",
                 target_id=order.restock_no, detail={"reason": reason})
    return order.restock_no


# ---------------------------------------------------------------- helpers

def _acting_admin(session: Session, admin_id: int, refusal: str = "") -> AdminUser:
    """The admin making the change; with ``refusal``, it must be finance or the superadmin."""
    admin = session.get(AdminUser, admin_id) if admin_id else None
    if admin is None or not admin.is_active:
        raise Forbidden("请以管理员身份登录后操作。")
    if refusal and admin.role not in MONEY_REVIEWERS:
        raise Forbidden(refusal)
    return admin


def _locked_member(session: Session, user_id: int, *, active_only: bool = True, field: str = "user_id") -> User:
    """The member's row, locked on Postgres: identity is read and then written, and must not change between."""
    member = session.scalar(select(User).where(User.id == user_id).with_for_update()
                            .execution_options(populate_existing=True)) if user_id else None
    if member is None:
        raise NetworkError(f"找不到会员 {user_id}：店主需先用微信登录一次商城。", field=field)
    if active_only and not member.is_active:
        raise NetworkError("该会员账号已停用。", field=field)
    return member


def _shops_of(session: Session, user_id: int) -> tuple[Outlet | None, FactoryStore | None]:
    return (session.scalar(select(Outlet).where(Outlet.owner_user_id == user_id)),
            session.scalar(select(FactoryStore).where(FactoryStore.owner_user_id == user_id)))


def _region(session: Session, region_id: int | None) -> Region:
    region = session.get(Region, region_id) if region_id else None
    if region is None:
        raise NetworkError("请选择区域。", field="region_id")
    return region


def _name(raw: str | None, what: str) -> str:
    name = " ".join((raw or "").split())
    if not 2 <= len(name) <= 32:
        raise NetworkError(f"{what}需为 2 到 32 个字。", field="name")
    return name


def _shop_details(name: str | None, address: str | None, phone: str | None, opening_hours: str | None = "") -> dict:
    """Name, address, phone and hours under the rules the owner's own profile form keeps (services/outlets.py)."""
    return clean_profile(OutletProfileInput(name=name or "", address=address or "", phone=phone or "",
                                             opening_hours=opening_hours or ""))


def _insert(session: Session, row, refusal: NetworkError) -> None:
    """Add ``row`` (and what it carries) in a savepoint: a unique key that says no undoes only this and raises
    ``refusal``, leaving the caller's transaction usable."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise refusal from None
