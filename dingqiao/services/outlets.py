"""Outlets as members find them, nearest first when we know where the member is: the checkout's pickup list
(with stock for the cart) and 附近门店; and the owner's edits to what members see of an outlet."""
import math
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from ..db import write_transaction
from ..models import FactoryStore, Outlet, Region, SiteStatus, StockLevel
from . import DomainError, NotFound
from .audit import record_audit

EARTH_RADIUS_M = 6_371_000
# Search boxes around the member, tried in turn until one holds enough outlets: from a few streets of a city
# centre to a province or two, about three times wider each step (bench/nearby_outlets.py: fewer, wider steps
# make a city centre or a suburb rank thousands of outlets). Past the widest, every active outlet is ranked.
SEARCH_RADII_M = (2_000, 5_000, 15_000, 50_000, 150_000, 500_000)
PHONE_PATTERN = re.compile(r"^[0-9+\- ]{5,20}$")


@dataclass(frozen=True)
class NearbyOutlet:
    outlet: Outlet
    distance_m: int | None


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


# GCJ-02 exists for mainland China, where every outlet is: a typed position outside this box is a typo — latitude
# and longitude swapped, a zero, a WGS-84 position from abroad.
CHINA_LATITUDE_E6 = (3_800_000, 53_600_000)
CHINA_LONGITUDE_E6 = (73_400_000, 135_100_000)


def in_china(position: tuple[int, int]) -> bool:
    latitude_e6, longitude_e6 = position
    return (CHINA_LATITUDE_E6[0] <= latitude_e6 <= CHINA_LATITUDE_E6[1]
            and CHINA_LONGITUDE_E6[0] <= longitude_e6 <= CHINA_LONGITUDE_E6[1])


def parse_position(latitude: str | None, longitude: str | None) -> tuple[int, int] | None:
    """Degrees as the browser or WeChat gives them → micro-degrees, or None when missing or nonsense."""
    try:
        lat, lng = float(latitude), float(longitude)
    except (TypeError, ValueError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lng <= 180) or math.isnan(lat) or math.isnan(lng):
        return None
    return round(lat * 1_000_000), round(lng * 1_000_000)


def nearby_outlets(session: Session, position: tuple[int, int] | None, limit: int = 20) -> list[NearbyOutlet]:
    """The ``limit`` active outlets nearest to ``position`` (micro-degrees), nearest first by exact great-circle
    distance; without a position, by region then name."""
    listed = select(Outlet).where(Outlet.status == SiteStatus.ACTIVE).options(joinedload(Outlet.region))
    if position is None:
        outlets = session.scalars(listed.join(Region).order_by(Region.name, Outlet.name).limit(limit))
        return [NearbyOutlet(outlet, None) for outlet in outlets]
    nearest = _nearest_active(session, position, limit)
    loaded = {outlet.id: outlet for outlet in session.scalars(listed.where(Outlet.id.in_([i for _, i in nearest])))}
    return [NearbyOutlet(loaded[outlet_id], metres) for metres, outlet_id in nearest if outlet_id in loaded]


def pickup_options(session: Session, quantities: dict[int, int], position: tuple[int, int] | None = None,
                   limit: int = 20) -> list[PickupOption]:
    nearby = nearby_outlets(session, position, limit)
    stocked = _outlets_with_goods(session, [n.outlet.location_id for n in nearby], quantities)
    return [PickupOption(n.outlet, n.distance_m, n.outlet.location_id in stocked) for n in nearby]


def _nearest_active(session: Session, position: tuple[int, int], limit: int) -> list[tuple[int, int]]:
    """(metres, outlet id) of the ``limit`` active outlets nearest to ``position``, nearest first.

    Only ids and coordinates are read, through the index on (latitude_e6, longitude_e6), from a box around the
    position that widens until it holds ``limit`` outlets. A box holds the circle drawn inside it, but its
    corners reach farther: when the last outlet kept lies beyond that circle, one just outside a side of the
    box could be nearer, so the box is drawn again around the circle through that outlet."""
    for radius in SEARCH_RADII_M:
        ranked = _ranked_within(session, position, radius)
        if len(ranked) >= limit:
            break
    else:
        return _ranked_within(session, position, None)[:limit]
    farthest_kept = ranked[limit - 1][0]
    if farthest_kept > radius:
        ranked = _ranked_within(session, position, farthest_kept + 1)  # +1: distance_m rounds down
    return ranked[:limit]


def _ranked_within(session: Session, position: tuple[int, int], radius_m: int | None) -> list[tuple[int, int]]:
    """Active outlets in the box holding the circle of ``radius_m`` around ``position`` (all of them for
    None), as (metres, id), nearest first."""
    lat, lng = position
    query = select(Outlet.id, Outlet.latitude_e6, Outlet.longitude_e6).where(Outlet.status == SiteStatus.ACTIVE)
    if radius_m is not None:
        query = query.where(*_box_around(position, radius_m))
    rows = session.execute(query)
    return sorted((distance_m(lat, lng, row_lat, row_lng), outlet_id) for outlet_id, row_lat, row_lng in rows)


def _box_around(position: tuple[int, int], radius_m: int) -> list:
    """Conditions on the micro-degree columns for the smallest latitude/longitude box that holds every point
    within ``radius_m`` of ``position``. The longitude half-width of a circle is asin(sin r / cos lat), not
    r / cos lat; a circle over a pole or across the 180° meridian keeps only the latitude band."""
    lat, lng = position
    angle = radius_m / EARTH_RADIUS_M
    lat_span = math.ceil(math.degrees(angle) * 1_000_000) + 1
    conditions = [Outlet.latitude_e6.between(lat - lat_span, lat + lat_span)]
    cos_lat = math.cos(math.radians(lat / 1_000_000))
    if angle < math.pi / 2 and math.sin(angle) < cos_lat:
        lng_span = math.ceil(math.degrees(math.asin(math.sin(angle) / cos_lat)) * 1_000_000) + 1
        if -180_000_000 <= lng - lng_span and lng + lng_span <= 180_000_000:
            conditions.append(Outlet.longitude_e6.between(lng - lng_span, lng + lng_span))
    return conditions


def _outlets_with_goods(session: Session, location_ids: list[int], quantities: dict[int, int]) -> set[int]:
    if not location_ids or not quantities:
        return set(location_ids) if not quantities else set()
    enough: dict[int, int] = {}
    rows = session.execute(
        select(StockLevel.location_id, StockLevel.product_id, StockLevel.available).where(
            StockLevel.location_id.in_(location_ids), StockLevel.product_id.in_(quantities)
        )
    )
    for location_id, product_id, available in rows:
        if available >= quantities[product_id]:
            enough[location_id] = enough.get(location_id, 0) + 1
    return {location_id for location_id, count in enough.items() if count == len(quantities)}


# ---------------------------------------------------------------- the owner's profile of the outlet

class OutletProfileError(DomainError):
    pass


@dataclass(frozen=True)
class OutletProfileInput:
    name: str
    address: str
    phone: str
    opening_hours: str = ""
    latitude: str = ""  # empty: keep the map position on file
    longitude: str = ""


def outlet_owned_by(session: Session, user_id: int) -> Outlet | None:
    return session.scalar(select(Outlet).where(Outlet.owner_user_id == user_id))


def factory_owned_by(session: Session, user_id: int) -> FactoryStore | None:
    return session.scalar(select(FactoryStore).where(FactoryStore.owner_user_id == user_id))


# One rule per field of the profile, each raising its Chinese message: clean_profile applies them all, and the
# owner's form (blueprints/outlet/forms.py) runs each on its own field to show the message next to it.

def clean_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not 2 <= len(name) <= 32:
        raise OutletProfileError("店名需为 2 到 32 个字。", field="name")
    return name


def clean_address(raw: str) -> str:
    address = " ".join(raw.split())
    if not 5 <= len(address) <= 120:
        raise OutletProfileError("请填写详细地址（5 到 120 个字）。", field="address")
    return address


def clean_phone(raw: str) -> str:
    phone = raw.strip()
    if not PHONE_PATTERN.match(phone):
        raise OutletProfileError("请填写可以联系到门店的电话。", field="phone")
    return phone


def clean_opening_hours(raw: str) -> str:
    hours = " ".join(raw.split())
    if len(hours) > 32:
        raise OutletProfileError("营业时间最多 32 个字。", field="opening_hours")
    return hours


def clean_typed_position(latitude: str, longitude: str) -> tuple[int, int] | None:
    """A typed position in micro-degrees, or None when both are empty (keep the one on file)."""
    if not (latitude.strip() or longitude.strip()):
        return None
    position = parse_position(latitude, longitude)
    if position is None:
        raise OutletProfileError("坐标无效：请点「使用我的位置」，或填写纬度和经度（GCJ-02，单位为度）。", field="latitude")
    if not in_china(position):
        raise OutletProfileError("坐标不在中国境内：请检查纬度和经度是否填反（杭州约为纬度 30.27、经度 120.15）。", field="latitude")
    return position


def clean_profile(form: OutletProfileInput) -> dict:
    """The profile's fields, checked; a Chinese message for the first one that is wrong."""
    values = {"name": clean_name(form.name), "address": clean_address(form.address), "phone": clean_phone(form.phone),
              "opening_hours": clean_opening_hours(form.opening_hours)}
    position = clean_typed_position(form.latitude, form.longitude)
    if position is not None:
        values["latitude_e6"], values["longitude_e6"] = position
    return values


def update_outlet_profile(session: Session, owner_user_id: int, form: OutletProfileInput) -> Outlet:
    """Save what the owner changed and audit it, old and new value per field. Nothing changed, nothing written."""
    values = clean_profile(form)
    with write_transaction(session):
        # Locked on Postgres, so the audit's old values are the ones this update replaces.
        outlet = session.scalar(
            select(Outlet).where(Outlet.owner_user_id == owner_user_id)
            .with_for_update().execution_options(populate_existing=True)
        )
        if outlet is None:
            raise NotFound("您名下没有门店。")
        changed = {field: [getattr(outlet, field), value] for field, value in values.items()
                   if getattr(outlet, field) != value}
        if not changed:
            return outlet
        for field, (_before, after) in changed.items():
            setattr(outlet, field, after)
        if "name" in changed:
            outlet.location.name = outlet.name  # the stock location carries the outlet's name (restock pages)
        record_audit(session, actor_kind="user", actor_id=owner_user_id, action="outlet.profile_update",
                     target_type="outlet", target_id=outlet.id, detail=changed)
    return outlet


# ---------------------------------------------------------------- the admin's side: suspend and reopen

SITE_MODELS = {"outlet": Outlet, "factory_store": FactoryStore}


def set_site_status(session: Session, admin_id: int, kind: str, site_ids: list[int], status: str) -> int:
    """Suspend or reopen outlets or factory stores, each audited. A suspended outlet takes no new orders and
    redeems nothing; a suspended factory store takes no restock orders and earns no regional commission.
    Returns how many changed (those already in that status are left alone)."""
    if status not in (SiteStatus.ACTIVE, SiteStatus.SUSPENDED):
        raise DomainError("只能暂停或恢复营业。")
    model = SITE_MODELS[kind]
    changed = 0
    with write_transaction(session):
        for site in session.scalars(select(model).where(model.id.in_(site_ids)).order_by(model.id).with_for_update()):
            if site.status == status:
                continue
            record_audit(session, actor_kind="admin", actor_id=admin_id, action=f"{kind}.status",
                         target_type=kind, target_id=site.id, detail={"status": [site.status, status]})
            site.status = status
            changed += 1
    return changed
