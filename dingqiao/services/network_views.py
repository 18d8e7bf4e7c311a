"""What the network pages show (the admin's 网络 page, the first-run wizard, moving an outlet, picking a
shop's owner): reads only; the writes and their rules are services/network.py's."""
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import case, or_, select
from sqlalchemy.orm import Session

from ..models import FactoryStore, Outlet, Region, RestockOrder, RestockStatus, StockLocation, User
from . import NotFound
from .network_rules import IN_TRANSIT, factory_stores_by_region, open_restocks, platform_warehouse


@dataclass(frozen=True)
class Shop:
    site: Outlet | FactoryStore
    owner: User


@dataclass(frozen=True)
class RegionRow:
    region: Region
    factory_store: Shop | None
    outlets: list[Shop]


@dataclass(frozen=True)
class NetworkOverview:
    warehouse: StockLocation | None
    regions: list[RegionRow]

    @property
    def regions_without_factory_store(self) -> list[Region]:
        return [row.region for row in self.regions if row.factory_store is None]


def network_overview(session: Session) -> NetworkOverview:
    """Every region with its factory store and outlets (and their owners), and the platform warehouse."""
    held = factory_stores_by_region(session)
    owners = {user.id: user for user in session.scalars(
        select(User).where(User.id.in_([store.owner_user_id for store in held.values()])))}
    stores = {region_id: Shop(store, owners[store.owner_user_id]) for region_id, store in held.items()}
    outlets: dict[int, list[Shop]] = defaultdict(list)
    for outlet, owner in session.execute(select(Outlet, User).join(User, User.id == Outlet.owner_user_id)
                                         .order_by(Outlet.name, Outlet.id)):
        outlets[outlet.region_id].append(Shop(outlet, owner))
    regions = session.scalars(select(Region).order_by(Region.code))
    return NetworkOverview(
        warehouse=platform_warehouse(session),
        regions=[RegionRow(region, stores.get(region.id), outlets[region.id]) for region in regions],
    )


@dataclass(frozen=True)
class MovePreview:
    outlet: Outlet
    supplier: FactoryStore | None  # the factory store of its region now
    to_cancel: list[RestockOrder]  # not shipped yet: cancelled by the move
    in_transit: list[RestockOrder]  # shipped, not all received: the move waits for them
    regions: list[RegionRow]


def move_preview(session: Session, outlet_id: int) -> MovePreview:
    """What moving an outlet would do, for the page that asks where to."""
    outlet = session.get(Outlet, outlet_id)
    if outlet is None:
        raise NotFound("网点不存在。")
    orders = open_restocks(session, outlet.location_id)
    overview = network_overview(session)
    return MovePreview(
        outlet=outlet,
        supplier=factory_stores_by_region(session, [outlet.region_id]).get(outlet.region_id),
        to_cancel=[order for order in orders if order.status == RestockStatus.PENDING],
        in_transit=[order for order in orders if order.status in IN_TRANSIT],
        regions=overview.regions,
    )


@dataclass(frozen=True)
class MemberMatch:
    member: User
    shop: str  # the outlet or factory store they run, "" for none


def search_members(session: Session, query: str, limit: int = 10) -> list[MemberMatch]:
    """Members by id, phone number (its start), referral code or nickname (any part), newest first after an exact
    id — to pick a shop's owner. A member exists once they have logged in through WeChat."""
    query = " ".join((query or "").split())[:64]
    if not query:
        return []
    conditions = [User.nickname.icontains(query, autoescape=True), User.referral_code == query.upper()]
    exact_id_first = []
    if query.isascii() and query.isdigit() and len(query) <= 18:
        conditions.append(User.id == int(query))
        exact_id_first.append(case((User.id == int(query), 0), else_=1))
        if len(query) >= 3:  # "1" is an id; as the start of a phone number it would be every member
            conditions.append(User.phone.startswith(query, autoescape=True))
    members = list(session.scalars(select(User).where(or_(*conditions))
                                   .order_by(*exact_id_first, User.id.desc()).limit(limit)))
    ids = [member.id for member in members]
    shops = dict(session.execute(select(Outlet.owner_user_id, Outlet.name).where(Outlet.owner_user_id.in_(ids))).all())
    shops.update(session.execute(select(FactoryStore.owner_user_id, FactoryStore.name)
                                 .where(FactoryStore.owner_user_id.in_(ids))).all())
    return [MemberMatch(member, shops.get(member.id, "")) for member in members]
