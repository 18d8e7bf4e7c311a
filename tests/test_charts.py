"""Chart data: China-time buckets, the team board's trends and the wallet's earnings overview, and their JSON
endpoints."""
from datetime import date, datetime, timedelta

from sqlalchemy import select, update

from dingqiao.extensions import db
from dingqiao.models import BindingSource, CommissionLine, CommissionStatus, ReferralBinding
from dingqiao.models.base import utcnow
from dingqiao.services.periods import bucket_sums, days_between, last_months, last_weeks
from dingqiao.services.referrals import bind_upline
from dingqiao.services.team import team_trends
from dingqiao.services.wallet import earnings_overview
from tests.factories import make_user
from tests.money_world import build_world, buy, pay, pick_up
from tests.test_access import log_in


def test_months_cross_the_year_and_start_at_china_midnight():
    # 2026-12-31 17:00 UTC is already 2027-01-01 01:00 in China: the current month is January 2027.
    buckets = last_months(datetime(2026, 12, 31, 17, 0), 3)
    assert buckets.labels == ["2026-11", "2026-12", "2027-01"]
    assert buckets.edges[0] == datetime(2026, 10, 31, 16, 0)  # 2026-11-01 00:00 China time, in UTC
    assert buckets.edges[-1] == datetime(2027, 1, 31, 16, 0)


def test_weeks_start_on_china_monday():
    # Sunday 2026-11-29 17:00 UTC is Monday 2026-11-30 01:00 in China.
    buckets = last_weeks(datetime(2026, 11, 29, 17, 0), 2)
    assert buckets.labels == ["11-23", "11-30"]
    assert buckets.edges == [datetime(2026, 11, 22, 16), datetime(2026, 11, 29, 16), datetime(2026, 12, 6, 16)]


def test_a_day_range_is_clamped_and_may_be_given_backwards():
    assert days_between(date(2026, 11, 3), date(2026, 11, 1)).labels == ["11-01", "11-02", "11-03"]
    assert len(days_between(date(2025, 1, 1), date(2026, 11, 1)).labels) == 92


def test_bucket_sums_put_each_row_in_its_bucket_and_leave_out_the_rest(app):
    with app.app_context():
        users = [make_user() for _ in range(4)]
        now = datetime(2026, 11, 25, 4, 0)  # Wednesday, China time
        times = [now - timedelta(days=1), now - timedelta(days=8), now - timedelta(days=9), now - timedelta(days=60)]
        for user, moment in zip(users, times):
            db.session.execute(update(type(user)).where(type(user).id == user.id).values(created_at=moment))
        db.session.commit()
        User = type(users[0])
        counts = bucket_sums(db.session, last_weeks(now, 3), User.created_at, 1, User.id.in_([u.id for u in users]))
        assert counts == [0, 2, 1]


def test_team_trends_count_new_members_per_week_and_sales_per_month_within_the_depth(app):
    world = build_world(app)
    with app.app_context():
        deep = make_user("第三级").id
        bind_upline(db.session, deep, db.session.get(type(make_user()), world.buyer).referral_code, BindingSource.LINK)
        # The parent joined three weeks ago.
        db.session.execute(update(ReferralBinding).where(ReferralBinding.user_id == world.parent)
                           .values(bound_at=utcnow() - timedelta(weeks=3)))
        db.session.commit()
    pay(app, buy(app, world))
    with app.app_context():
        trends = team_trends(db.session, world.grandparent)
        joined = trends["new_members"]["series"][0]["data"]
        assert len(joined) == 12 and sum(joined) == 2  # parent + buyer; the third level is beyond depth 2
        assert joined[-1] == 1 and joined[-4] == 1
        sales = trends["sales"]
        assert sales["unit"] == "fen" and len(sales["labels"]) == 6 and sales["series"][0]["data"][-1] == 10_000


def test_the_earnings_overview_leaves_out_reversed_lines(app):
    world = build_world(app)
    first = buy(app, world)
    pay(app, first)
    pick_up(app, world, first)
    second = buy(app, world)
    pay(app, second)
    with app.app_context():  # the second order's lines reversed by a refund before pickup
        order_id = db.session.scalar(select(CommissionLine.order_id).order_by(CommissionLine.id.desc()).limit(1))
        db.session.execute(update(CommissionLine).where(CommissionLine.order_id == order_id)
                           .values(status=CommissionStatus.REVERSED))
        db.session.commit()
        overview = earnings_overview(db.session, world.parent)
        assert overview["by_kind"]["labels"][0] == "直推奖励"
        assert overview["by_kind"]["series"][0]["data"] == [1000, 0, 0, 0]
        month = {s["label"]: s["data"] for s in overview["by_month"]["series"]}
        assert month == {"直推奖励": [0, 0, 0, 0, 0, 1000]}
        outlet = earnings_overview(db.session, world.outlet_owner)
        assert outlet["by_kind"]["series"][0]["data"][2] == 500  # the service fee of the picked-up order


def test_the_chart_endpoints_answer_json_to_the_member_and_nothing_to_strangers(app, client):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    stranger = client.get("/wallet/earnings.json")
    assert stranger.status_code in (302, 401) and b"1000" not in stranger.data
    log_in(client, world.parent)
    wallet = client.get("/wallet/earnings.json")
    assert wallet.status_code == 200 and wallet.mimetype == "application/json"
    assert wallet.json["by_kind"]["series"][0]["data"][0] == 1000
    team = client.get("/me/team/trends.json")
    assert team.status_code == 200 and team.json["new_members"]["series"][0]["data"][-1] == 1
    assert 'data-chart-url="/me/team/trends.json"' in client.get("/me/team").get_data(as_text=True)
    assert 'data-chart-key="by_month"' in client.get("/wallet/").get_data(as_text=True)
