"""Benchmark: 附近门店 (`services.outlets.nearby_outlets`) over 10,000 outlets, on SQLite and on Postgres.

    .venv/bin/python bench/nearby_outlets.py [--outlets 10000] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

Builds a scratch database (a SQLite file under /tmp, and a scratch Postgres database when --postgres is given),
generates active outlets around eight cities of the Yangtze delta (about 400 km across; most outlets near a
city centre, some in the towns between), plus a few suspended ones, then times the nearest 20 from a dense city
centre, a suburb, the countryside between cities and a place far from every outlet (where every outlet is
ranked). Prints numbers; asserts nothing.
"""
import math
import random
import time

from scratch import on_each_database, scratch_app, timed
from sqlalchemy import insert

from dingqiao.extensions import db
from dingqiao.models import LocationKind, Outlet, Region, StockLocation, User
from dingqiao.models.base import utcnow
from dingqiao.services.outlets import nearby_outlets

BATCH = 5_000
# (name, latitude, longitude, share of the outlets); GCJ-02 degrees, roughly the city centres.
CITIES = [
    ("杭州", 30.2741, 120.1551, 0.22), ("上海", 31.2304, 121.4737, 0.26), ("苏州", 31.2989, 120.5853, 0.12),
    ("南京", 32.0603, 118.7969, 0.12), ("宁波", 29.8683, 121.5440, 0.08), ("无锡", 31.4912, 120.3119, 0.07),
    ("绍兴", 30.0023, 120.5810, 0.05), ("合肥", 31.8206, 117.2272, 0.08),
]
SPREAD = (29.5, 32.3, 117.0, 122.0)  # the towns between the cities: lat_min, lat_max, lng_min, lng_max
RURAL_SHARE = 0.08
CITY_SIGMA_M = 7_000
POSITIONS = [
    ("dense centre (杭州 武林广场)", 30.2720, 120.1630),
    ("suburb (杭州 余杭 25 km out)", 30.4180, 119.9600),
    ("countryside between cities (湖州 安吉)", 30.6380, 119.6800),
    ("far from every outlet (乌鲁木齐, ranks all)", 43.8256, 87.6168),
]


def outlet_positions(count: int, rng: random.Random) -> list[tuple[int, int]]:
    points = []
    for _ in range(count):
        if rng.random() < RURAL_SHARE:
            lat, lng = rng.uniform(SPREAD[0], SPREAD[1]), rng.uniform(SPREAD[2], SPREAD[3])
        else:
            _name, lat, lng, _share = rng.choices(CITIES, weights=[c[3] for c in CITIES])[0]
            north, east = rng.gauss(0, CITY_SIGMA_M), rng.gauss(0, CITY_SIGMA_M)
            lat += north / 111_195
            lng += east / (111_195 * math.cos(math.radians(lat)))
        points.append((round(lat * 1_000_000), round(lng * 1_000_000)))
    return points


def build(count: int) -> None:
    now = utcnow()
    rng = random.Random(20240601)
    regions = [{"id": i, "code": f"C{i}", "name": f"{name}市", "created_at": now}
               for i, (name, *_rest) in enumerate(CITIES, start=1)]
    db.session.execute(insert(Region), regions)
    suspended = count // 50
    total = count + suspended
    users = [{"id": i, "openid": f"bench-{i}", "nickname": f"店主{i}", "referral_code": f"N{i:07d}",
              "identity": "outlet", "is_active": True, "created_at": now} for i in range(1, total + 1)]
    locations = [{"id": i, "kind": LocationKind.OUTLET, "name": f"门店{i}"} for i in range(1, total + 1)]
    outlets = [{"id": i, "region_id": 1 + i % len(CITIES), "owner_user_id": i, "location_id": i, "name": f"门店{i}",
                "address": f"基准路 {i} 号", "latitude_e6": lat, "longitude_e6": lng, "phone": "0571-88000000",
                "opening_hours": "08:00-21:00", "status": "active" if i <= count else "suspended", "created_at": now}
               for i, (lat, lng) in enumerate(outlet_positions(total, rng), start=1)]
    for rows, model in ((users, User), (locations, StockLocation), (outlets, Outlet)):
        for start in range(0, len(rows), BATCH):
            db.session.execute(insert(model), rows[start:start + BATCH])
    db.session.commit()
    # A freshly bulk-loaded table has no planner statistics yet; production tables have them (autovacuum).
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()



def run(label: str, url: str, count: int) -> None:
    with scratch_app(url):
        started = time.perf_counter()
        build(count)
        print(f"{label}: generated {count:,} active outlets (+{count // 50:,} suspended) "
              f"in {time.perf_counter() - started:.1f} s")
        for what, lat, lng in POSITIONS:
            position = (round(lat * 1_000_000), round(lng * 1_000_000))
            found = nearby_outlets(db.session, position)
            median, worst = timed(lambda: nearby_outlets(db.session, position), runs=15)
            print(f"{label}: {what}: nearest {found[0].distance_m / 1000:.1f} km, "
                  f"20th {found[-1].distance_m / 1000:.1f} km; median {median:.1f} ms, max {worst:.1f} ms")


if __name__ == "__main__":
    on_each_database(run, "outlets", 10_000)
