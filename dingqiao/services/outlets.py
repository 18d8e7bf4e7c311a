"""Choosing a pickup outlet: nearest first when we know where the member is, with stock for the cart."""
import math
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from ..models import Outlet, Region, SiteStatus, StockLevel

EARTH_RADIUS_M = 6_371_000
# The first search box around the member: about 50 km. Wider only when it holds no outlet at all.
SEARCH_BOX_E6 = 450_000


@dataclass(frozen=True)
class PickupOption:
    outlet: Outlet
    distance_m: int | None
    has_all_goods: bool


def distance_m(lat1_e6: int, lng1_e6: int, lat2_e6: int, lng2_e6: int) -> int:
    """Great-circle distance in metres (haversine) between two points in micro-degrees."""
    lat1, lng1, lat2, lng2 = (math.radians(v / 1_000_000) for v in (lat1_e6, lng1_e6, lat2_e6, lng2_e6))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    return int(2 * EARTH_RADIUS_M * math.asin(math.sqrt(h)))


def parse_position(latitude: str | None, longitude: str | None) -> tuple[int, int] | None:
    """Degrees as the browser or WeChat gives them → micro-degrees, or None when missing or nonsense."""
    try:
        lat, lng = float(latitude), float(longitude)
    except (TypeError, ValueError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lng <= 180) or math.isnan(lat) or math.isnan(lng):
        return None
    return round(lat * 1_000_000), round(lng * 1_000_000)


def pickup_options(session: Session, quantities: dict[int, int], position: tuple[int, int] | None = None,
                   limit: int = 20) -> list[PickupOption]:
    base = select(Outlet).where(Outlet.status == SiteStatus.ACTIVE).options(joinedload(Outlet.region))
    if position is None:
        outlets = list(session.scalars(base.join(Region).order_by(Region.name, Outlet.name).limit(limit)))
    else:
        lat, lng = position
        lng_box = int(SEARCH_BOX_E6 / max(0.2, math.cos(math.radians(lat / 1_000_000))))
        boxed = base.where(
            Outlet.latitude_e6.between(lat - SEARCH_BOX_E6, lat + SEARCH_BOX_E6),
            Outlet.longitude_e6.between(lng - lng_box, lng + lng_box),
        )
        outlets = list(session.scalars(boxed)) or list(session.scalars(base))
        outlets.sort(key=lambda o: distance_m(lat, lng, o.latitude_e6, o.longitude_e6))
        outlets = outlets[:limit]
    stocked = _outlets_with_goods(session, [o.location_id for o in outlets], quantities)
    return [
        PickupOption(
            outlet,
            distance_m(position[0], position[1], outlet.latitude_e6, outlet.longitude_e6) if position else None,
            outlet.location_id in stocked,
        )
        for outlet in outlets
    ]


def _outlets_with_goods(session: Session, location_ids: list[int], quantities: dict[int, int]) -> set[int]:
    if not location_ids or not quantities:
        return set(location_ids) if not quantities else set()
    enough: dict[int, int] = {}
    rows = session.execute(
        select(StockLevel.location_id, StockLevel.product_id, StockLevel.on_hand - StockLevel.reserved).where(
            StockLevel.location_id.in_(location_ids), StockLevel.product_id.in_(quantities)
        )
    )
    for location_id, product_id, available in rows:
        if available >= quantities[product_id]:
            enough[location_id] = enough.get(location_id, 0) + 1
    return {location_id for location_id, count in enough.items() if count == len(quantities)}
