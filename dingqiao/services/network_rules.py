"""The network's exclusivity rules, read in one place (services/network.py writes under them; the pages that
offer a choice read them here): one platform warehouse, and one factory store per region — ``factory_stores_by_region``
is the one read of which region is held by whom, for the refusal (``refuse_taken_region``) and for the lists
of free regions alike. The unique ``region_id`` refuses anything that got past a check."""
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import FactoryStore, LocationKind, Region, RestockOrder, RestockStatus, SiteStatus, StockLocation
from . import Conflict, DomainError

IN_TRANSIT = (RestockStatus.SHIPPING, RestockStatus.SHIPPED)


class NetworkError(DomainError):
    pass


class RegionTaken(NetworkError, Conflict):
    pass


_PLATFORM = select(StockLocation).where(StockLocation.kind == LocationKind.PLATFORM).order_by(StockLocation.id).limit(1)


def platform_warehouse(session: Session) -> StockLocation | None:
    """The platform's own stock, which factory stores restock from (one at most: ``create_platform_warehouse``)."""
    return session.scalar(_PLATFORM)


def platform_location_id(session: Session) -> int | None:
    return session.scalar(_PLATFORM.with_only_columns(StockLocation.id))


def factory_stores_by_region(session: Session, region_ids=None) -> dict[int, FactoryStore]:
    """Region id → the factory store that holds it (each region has one at most), for every region or those
    named. A region missing here is free."""
    query = select(FactoryStore)
    if region_ids is not None:
        query = query.where(FactoryStore.region_id.in_(list(region_ids)))
    return {store.region_id: store for store in session.scalars(query)}


def supplying_factory_store(session: Session, region_id: int) -> FactoryStore | None:
    """The factory store a region's outlets restock from: the region's one, while it is open for business."""
    store = factory_stores_by_region(session, [region_id]).get(region_id)
    return store if store is not None and store.status == SiteStatus.ACTIVE else None


def taken_regions(session: Session) -> dict[int, str]:
    """Region id → its factory store's name: what a page offering regions marks as taken."""
    return {region_id: store.name for region_id, store in factory_stores_by_region(session).items()}


@dataclass(frozen=True)
class RegionChoice:
    id: int
    name: str
    taken_by: str | None  # the factory store that holds it, if one does


def region_choices(session: Session) -> list[RegionChoice]:
    """Every region by name, each with the factory store holding it: what a member applying to become a
    factory store picks from (a taken region is shown, not offered)."""
    taken = taken_regions(session)
    return [RegionChoice(region.id, region.name, taken.get(region.id))
            for region in session.scalars(select(Region).order_by(Region.name))]


def refuse_taken_region(session: Session, region: Region) -> None:
    holder = factory_stores_by_region(session, [region.id]).get(region.id)
    if holder is not None:
        raise RegionTaken(f"「{region.name}」已有工厂店（{holder.name}），每个区域只设一家工厂店。", field="region_id")


def open_restocks(session: Session, location_id: int) -> list[RestockOrder]:
    """Restock orders to ``location_id`` not yet received: pending, or shipping / shipped (in transit)."""
    return list(session.scalars(
        select(RestockOrder).where(RestockOrder.to_location_id == location_id,
                                   RestockOrder.status.in_((RestockStatus.PENDING, *IN_TRANSIT)))
        .order_by(RestockOrder.id)))
