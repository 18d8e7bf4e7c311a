"""Benchmark: the team board (我的团队) for a member with a team of 100,000, on SQLite and on Postgres.

    .venv/bin/python bench/team_board.py [--members 100000] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

Builds a scratch database (a SQLite file under /tmp, and a scratch Postgres database when --postgres is given),
generates a root member with 300 direct members and the rest at level 2, one paid order per member, then times
`services.team.team_board` and the chart data `services.team.team_trends` for the root (the worst case) and
for a direct member. Prints numbers; asserts nothing.
"""
import time
from datetime import timedelta

from scratch import on_each_database, scratch_app, timed
from sqlalchemy import insert

from dingqiao.extensions import db
from dingqiao.models import (
    LocationKind,
    Order,
    Outlet,
    ReferralBinding,
    Region,
    StockLocation,
    TeamPath,
    User,
)
from dingqiao.models.base import utcnow
from dingqiao.services.team import team_board, team_trends

DIRECT = 300
BATCH = 5_000


def build(members: int) -> None:
    now = utcnow()
    db.session.add(Region(code="B1", name="基准区域"))
    db.session.add(StockLocation(kind=LocationKind.OUTLET, name="基准网点"))
    db.session.flush()
    users = [{"id": i, "openid": f"bench-{i}", "nickname": f"会员{i}", "referral_code": f"B{i:07d}",
              "identity": "member", "is_active": True, "created_at": now} for i in range(1, members + 2)]
    for start in range(0, len(users), BATCH):
        db.session.execute(insert(User), users[start:start + BATCH])
    db.session.add(Outlet(region_id=1, owner_user_id=1, location_id=1, name="基准网点", address="-",
                          latitude_e6=30_000_000, longitude_e6=120_000_000))
    db.session.flush()
    bindings, paths, orders = [], [], []
    for i in range(2, members + 2):
        parent = 1 if i <= DIRECT + 1 else 2 + (i % DIRECT)
        bindings.append({"user_id": i, "upline_id": parent, "source": "link",
                         "bound_at": now - timedelta(minutes=i % 20_000)})
        paths.append({"ancestor_id": parent, "descendant_id": i, "depth": 1})
        if parent != 1:
            paths.append({"ancestor_id": 1, "descendant_id": i, "depth": 2})
        orders.append({"order_no": f"DQB{i:012d}", "user_id": i, "outlet_id": 1, "status": "paid",
                       "price_identity": "member", "total_fen": 3990, "created_at": now, "expires_at": now,
                       "paid_at": now - timedelta(days=i % 60), "after_sales_open": False, "cancel_reason": ""})
    for rows, model in ((bindings, ReferralBinding), (paths, TeamPath), (orders, Order)):
        for start in range(0, len(rows), BATCH):
            db.session.execute(insert(model), rows[start:start + BATCH])
    db.session.commit()
    # A freshly bulk-loaded table has no planner statistics yet; production tables have them (autovacuum).
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()



def run(label: str, url: str, members: int) -> None:
    with scratch_app(url):
        started = time.perf_counter()
        build(members)
        print(f"{label}: generated {members:,} members, {members:,} paid orders in {time.perf_counter() - started:.1f} s")
        for user_id, who in ((1, "the root"), (2, "a direct member")):
            size = team_board(db.session, user_id).size
            for work, what in ((team_board, "team board"), (team_trends, "team charts JSON (12 weeks + 6 months)")):
                median, worst = timed(lambda: work(db.session, user_id))
                print(f"{label}: {what} of {who} (team {size:,}): median {median:.1f} ms, max {worst:.1f} ms")


if __name__ == "__main__":
    on_each_database(run, "members", 100_000)
