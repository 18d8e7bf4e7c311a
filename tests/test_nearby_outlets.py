"""附近门店 and 门店资料: nearest-first outlets from a widening search box (service and page, whole and fragment),
and the outlet owner's profile form: saved values, refused input that writes nothing, who may open it, the audit."""
import json
import math
import random
import re

import pytest
from sqlalchemy import event, func, select

from dingqiao.extensions import db
from dingqiao.models import AuditLog, Outlet, OutletStaff, SiteStatus, StockLocation, User
from dingqiao.services import NotFound
from dingqiao.services import cart as carts
from dingqiao.services.outlets import (
    OutletProfileError,
    OutletProfileInput,
    distance_m,
    nearby_outlets,
    parse_position,
    pickup_options,
    update_outlet_profile,
)
from tests.conftest import csrf_token, run_concurrently
from tests.factories import make_outlet, make_product, make_region, make_user
from tests.test_access import log_in

HX = {"HX-Request": "true"}
ORIGIN = (30.0, 120.0)
METRES_PER_DEGREE = math.pi * 6_371_000 / 180  # along a meridian, on the sphere distance_m uses


def offset(north_m: float, east_m: float, origin: tuple[float, float] = ORIGIN) -> tuple[float, float]:
    """The point ``north_m`` north and ``east_m`` east of ``origin``, in degrees."""
    lat = origin[0] + north_m / METRES_PER_DEGREE
    return lat, origin[1] + east_m / (METRES_PER_DEGREE * math.cos(math.radians(origin[0])))


def place(name: str, lat: float, lng: float, status: SiteStatus = SiteStatus.ACTIVE, region=None) -> int:
    """An outlet called ``name`` at (lat, lng) degrees; returns its id."""
    outlet = make_outlet(make_user(f"{name}店主"), region=region)
    outlet.name, outlet.status = name, status
    outlet.latitude_e6, outlet.longitude_e6 = round(lat * 1_000_000), round(lng * 1_000_000)
    db.session.commit()
    return outlet.id


def at(lat: float, lng: float) -> tuple[int, int]:
    return parse_position(str(lat), str(lng))


def listed_names(session, lat: float, lng: float, limit: int = 20) -> list[str]:
    return [n.outlet.name for n in nearby_outlets(session, at(lat, lng), limit)]


def profile_row(outlet_id: int) -> dict:
    outlet = db.session.get(Outlet, outlet_id, populate_existing=True)
    return {field: getattr(outlet, field) for field in
            ("name", "address", "phone", "opening_hours", "latitude_e6", "longitude_e6")}


# ---------------------------------------------------------------- the search, as a service

def test_outlets_come_nearest_first_with_their_real_distances(session):
    spots = {"北 445 米": (445, 0), "东 1.9 公里": (0, 1_900), "西南 3 公里": (-2_121, -2_121), "南 11 公里": (-11_000, 0),
             "东北 700 米": (495, 495), "西 42 公里": (0, -42_000)}
    for name, (north, east) in spots.items():
        place(name, *offset(north, east))
    found = nearby_outlets(session, at(*ORIGIN))
    expected = sorted(spots, key=lambda name: math.hypot(*spots[name]))
    assert [n.outlet.name for n in found] == expected
    for item in found:
        assert abs(item.distance_m - math.hypot(*spots[item.outlet.name])) <= 0.005 * item.distance_m + 2
    # Seen from elsewhere, the order is another one: the sort follows the position.
    assert listed_names(session, *offset(-11_000, 0))[:2] == ["南 11 公里", "西南 3 公里"]


def reads_of_outlets(work) -> tuple[object, list[str]]:
    """``work()``'s result and the SQL statements it sent that read the outlets table."""
    statements = []

    def remember(_conn, _cursor, statement, _parameters, _context, _executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        result = work()
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    return result, [s for s in statements if "FROM outlets" in s]


def only_the_box_was_read(reads: list[str]) -> bool:
    """Every read of outlets was a search box or the winners by id: no read of every outlet."""
    return any("outlets.latitude_e6 BETWEEN" in s for s in reads) and all(
        "BETWEEN" in s or "outlets.id IN" in s for s in reads)


def test_an_outlet_100_km_away_is_found_when_nothing_is_nearer(session):
    place("百公里", *offset(100_000, 0))
    place("八百公里", *offset(0, 800_000))
    # The box widens to 500 km, which holds the one asked for: found without reading every outlet.
    found, reads = reads_of_outlets(lambda: nearby_outlets(session, at(*ORIGIN), limit=1))
    assert [n.outlet.name for n in found] == ["百公里"] and abs(found[0].distance_m - 100_000) <= 2
    assert only_the_box_was_read(reads)
    # Fewer than asked for within the widest box: every active outlet is ranked, the far one too.
    found = nearby_outlets(session, at(*ORIGIN))
    assert [n.outlet.name for n in found] == ["百公里", "八百公里"]
    assert 795_000 < found[1].distance_m < 805_000


def test_only_the_nearest_twenty_and_the_search_stays_in_the_box_when_it_holds_them(session):
    for i in range(25):
        place(f"近{i:02d}", *offset(100 * (i + 1), 0))
    place("远处", *offset(300_000, 0))
    found, reads = reads_of_outlets(lambda: nearby_outlets(session, at(*ORIGIN)))
    assert [n.outlet.name for n in found] == [f"近{i:02d}" for i in range(20)]
    assert only_the_box_was_read(reads)


def test_an_outlet_just_outside_the_box_beats_one_in_its_corner(session):
    """The first box (5 km) holds two outlets, but the second lies in its corner (about 6.9 km), while one
    just past its east side is 5.3 km away: the nearest two are the first and that one."""
    place("一公里", *offset(1_000, 0))
    place("角落", *offset(4_900, 4_900))
    place("箱外", *offset(0, 5_300))
    assert listed_names(session, *ORIGIN, limit=2) == ["一公里", "箱外"]
    assert listed_names(session, *ORIGIN, limit=3) == ["一公里", "箱外", "角落"]


def test_the_box_is_wide_enough_in_longitude_for_the_latitude(session):
    """At 30° north a degree of longitude is 0.87 of one of latitude: the box must hold an outlet 4.5 km east,
    nearer than one 4.8 km north, though both are inside the first 5 km circle."""
    place("一公里", *offset(1_000, 0))
    place("北 4.8 公里", *offset(4_800, 0))
    place("东 4.5 公里", *offset(0, 4_500))
    assert listed_names(session, *ORIGIN, limit=2) == ["一公里", "东 4.5 公里"]


def test_the_box_search_finds_what_ranking_every_outlet_finds(session):
    """Random outlets, thick in a town and thin around it: from any position, the same twenty as sorting them all."""
    rng = random.Random(7)
    spots = [offset(rng.gauss(0, 3_000), rng.gauss(0, 3_000)) for _ in range(150)]
    spots += [offset(rng.uniform(-300_000, 300_000), rng.uniform(-300_000, 300_000)) for _ in range(60)]
    for i, (lat, lng) in enumerate(spots):
        place(f"随机{i}", lat, lng)
    everyone = [(o.id, o.latitude_e6, o.longitude_e6) for o in session.scalars(select(Outlet))]
    for _ in range(25):
        # Mostly in the town, sometimes far out: the cube draws the positions towards its centre.
        north, east = (rng.uniform(-200_000, 200_000) * rng.random() ** 3 for _ in range(2))
        here = at(*offset(north, east))
        expected = sorted((distance_m(*here, o_lat, o_lng), o_id) for o_id, o_lat, o_lng in everyone)[:20]
        assert [(n.distance_m, n.outlet.id) for n in nearby_outlets(session, here)] == expected


def test_suspended_and_pending_outlets_are_never_listed(session):
    place("营业中", *offset(2_000, 0))
    place("已暂停", *offset(100, 0), status=SiteStatus.SUSPENDED)
    place("待开通", *offset(200, 0), status=SiteStatus.PENDING)
    place("远处暂停", *offset(200_000, 0), status=SiteStatus.SUSPENDED)
    assert listed_names(session, *ORIGIN) == ["营业中"]
    assert listed_names(session, *ORIGIN, limit=1) == ["营业中"]  # the closed ones take no place in the ranking
    assert [n.outlet.name for n in nearby_outlets(session, None)] == ["营业中"]
    assert [o.outlet.name for o in pickup_options(session, {}, at(*ORIGIN))] == ["营业中"]


def test_without_a_position_outlets_go_by_region_then_name(session):
    east, west = make_region("区域A"), make_region("区域B")
    place("3号店", *offset(100, 0), region=west)
    place("2号店", *offset(50_000, 0), region=east)
    place("1号店", *offset(9_000, 0), region=west)
    found = nearby_outlets(session, None)
    assert [n.outlet.name for n in found] == ["2号店", "1号店", "3号店"]
    assert all(n.distance_m is None for n in found)
    assert listed_names(session, *ORIGIN) == ["3号店", "1号店", "2号店"]


# ---------------------------------------------------------------- the page

@pytest.fixture
def member(app, client):
    with app.app_context():
        user_id = make_user("附近会员").id
    log_in(client, user_id)
    return user_id


@pytest.fixture
def three_outlets(app):
    """Three outlets in two regions; from ORIGIN the nearest is the one that sorts last by region and name."""
    with app.app_context():
        first, second = make_region("区域A"), make_region("区域B")
        place("1号店", *offset(30_000, 0), region=first)
        place("2号店", *offset(0, 2_300), region=first)
        place("3号店", *offset(850.5, 0), region=second)
        db.session.execute(select(Outlet).where(Outlet.name == "3号店")).scalar_one().phone = "0571 8800 1001"
        db.session.commit()


def rows(body: str) -> list[tuple[str, str | None]]:
    """(name, distance text) per outlet in the list."""
    found = re.findall(r'<div class="weui-cell__bd">\s*<p>([^<]+?)\s*(?:<span class="dq-distance">([^<]+)</span>)?</p>',
                       body)
    return [(name, distance or None) for name, distance in found]


def test_the_page_lists_by_region_then_asks_the_browser_where_the_member_is(client, member, three_outlets):
    response = client.get("/nearby/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and body.startswith("<!doctype html>")
    assert rows(body) == [("1号店", None), ("2号店", None), ("3号店", None)]
    assert 'id="outlet-list"' in body and 'data-locate-url="/nearby/"' in body and "dq-locating" in body
    assert "data-located" not in body
    assert 'href="tel:057188001001"' in body and "0571 8800 1001" in body
    assert "hx-history=\"false\"" in body


def test_the_located_list_is_a_fragment_for_htmx_and_a_whole_page_otherwise(client, member, three_outlets):
    lat, lng = ORIGIN
    fragment = client.get(f"/nearby/?lat={lat}&lng={lng}", headers=HX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<div id="outlet-list"') and 'data-located="1"' in body
    assert "dq-locating" not in body
    assert rows(body) == [("3号店", "850 米"), ("2号店", "2.3 公里"), ("1号店", "30.0 公里")]
    assert "HX-Request" in fragment.headers["Vary"]

    page = client.get(f"/nearby/?lat={lat}&lng={lng}")
    assert page.get_data(as_text=True).startswith("<!doctype html>")
    assert rows(page.get_data(as_text=True)) == rows(body)
    boosted = client.get(f"/nearby/?lat={lat}&lng={lng}", headers={**HX, "HX-Boosted": "true"})
    assert "<html" in boosted.get_data(as_text=True)


@pytest.mark.parametrize("query", ["?lat=abc&lng=120", "?lat=91&lng=120", "?lat=nan&lng=nan", "?lat=30&lng=1e999",
                                   "?lat=1" + "0" * 400 + "&lng=120", "?lat=30", "?lat=&lng=", "?lat=30&lng=-181"])
def test_a_nonsense_position_gives_the_unsorted_list(client, member, three_outlets, query):
    response = client.get(f"/nearby/{query}", headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert rows(body) == [("1号店", None), ("2号店", None), ("3号店", None)]
    assert "dq-locating" in body and "data-located" not in body


def test_strangers_are_sent_to_log_in(client, three_outlets):
    page = client.get("/nearby/?lat=30&lng=120")
    assert page.status_code == 302 and page.headers["Location"].startswith("/auth/login?next=/nearby/")
    fragment = client.get("/nearby/?lat=30&lng=120", headers=HX)
    assert fragment.status_code == 401 and fragment.headers["HX-Redirect"].startswith("/auth/login")
    assert "1号店" not in page.get_data(as_text=True) + fragment.get_data(as_text=True)


def test_my_page_links_to_nearby_and_only_owners_see_the_profile_link(app, client, member, three_outlets):
    assert 'href="/nearby/"' in client.get("/me/").get_data(as_text=True)
    assert "/outlet/profile" not in client.get("/nearby/").get_data(as_text=True)
    with app.app_context():
        owner_id = db.session.scalar(select(Outlet.owner_user_id).where(Outlet.name == "2号店"))
    log_in(client, owner_id)
    assert 'href="/outlet/profile"' in client.get("/nearby/").get_data(as_text=True)


# ---------------------------------------------------------------- 门店资料

GOOD = {"name": "小周便利店", "address": "杭州市西湖区古荡新村 3 幢", "phone": "13800000000",
        "opening_hours": "08:00-21:00", "latitude": "", "longitude": ""}


@pytest.fixture
def owner(app, client):
    """A logged-in outlet owner; returns (user id, outlet id)."""
    with app.app_context():
        user_id = make_user("店主").id
        outlet_id = make_outlet(db.session.get(User, user_id)).id
    log_in(client, user_id)
    return user_id, outlet_id


def post_profile(client, headers=None, **changes):
    return client.post("/outlet/profile", data={**GOOD, **changes, "csrf_token": csrf_token(client)},
                       headers=headers or {})


def audit_rows() -> list[AuditLog]:
    return list(db.session.scalars(select(AuditLog).where(AuditLog.action == "outlet.profile_update")))


def test_the_owner_saves_the_profile_and_sees_the_saved_values(app, client, owner):
    _user_id, outlet_id = owner
    page = client.get("/outlet/profile").get_data(as_text=True)
    assert 'value="测试路 1 号"' in page and "使用我的位置" in page and "data-latitude" in page
    assert "30.27410, 120.15510" in page  # the position on file
    saved = post_profile(client, name="  小周   便利店 ", phone="0571-88001001", opening_hours="07:30-22:00")
    assert saved.status_code == 303 and saved.headers["Location"] == "/outlet/profile?saved=1"
    page = client.get(saved.headers["Location"]).get_data(as_text=True)
    for shown in ('value="小周 便利店"', f'value="{GOOD["address"]}"', 'value="0571-88001001"', 'value="07:30-22:00"',
                  "资料已保存"):
        assert shown in page
    with app.app_context():
        row = profile_row(outlet_id)
        assert row["name"] == "小周 便利店" and row["opening_hours"] == "07:30-22:00"
        assert (row["latitude_e6"], row["longitude_e6"]) == (30_274_100, 120_155_100)  # empty = kept
        assert db.session.get(StockLocation, db.session.get(Outlet, outlet_id).location_id).name == "小周 便利店"

    by_htmx = post_profile(client, headers={**HX, "X-CSRFToken": csrf_token(client)}, name="小周超市")
    assert by_htmx.status_code == 204 and by_htmx.headers["HX-Redirect"] == "/outlet/profile?saved=1"
    assert 'value="小周超市"' in client.get("/outlet/profile").get_data(as_text=True)


def test_the_position_comes_from_the_hidden_inputs_and_members_find_the_outlet_there(app, client, owner):
    _user_id, outlet_id = owner
    assert post_profile(client, latitude="31.2304", longitude="121.4737").status_code == 303
    with app.app_context():
        row = profile_row(outlet_id)
        assert (row["latitude_e6"], row["longitude_e6"]) == (31_230_400, 121_473_700)
        place("杭州另一家", 30.2741, 120.1551)
        assert listed_names(db.session, 31.23, 121.47) == [GOOD["name"], "杭州另一家"]


def test_the_checkout_shows_the_changed_details_at_once(app, client, owner):
    user_id, _outlet_id = owner
    with app.app_context():
        carts.add_to_member_cart(db.session, user_id, make_product().id, 1)
    post_profile(client, opening_hours="全天营业")
    checkout = client.get("/checkout/").get_data(as_text=True)
    assert GOOD["name"] in checkout and GOOD["address"] in checkout and "全天营业" in checkout


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "小"}, "店名需为 2 到 32 个字"),
    ({"name": "店" * 33}, "店名需为 2 到 32 个字"),
    ({"name": "   "}, "店名需为 2 到 32 个字"),
    ({"address": "西湖区"}, "详细地址"),
    ({"address": "址" * 121}, "详细地址"),
    ({"phone": "请打电话"}, "联系到门店的电话"),
    ({"phone": ""}, "联系到门店的电话"),
    ({"opening_hours": "时" * 33}, "营业时间最多 32 个字"),
    ({"latitude": "abc", "longitude": "120.1"}, "坐标无效"),
    ({"latitude": "91", "longitude": "120.1"}, "坐标无效"),
    ({"latitude": "nan", "longitude": "nan"}, "坐标无效"),
    ({"latitude": "30.2", "longitude": ""}, "坐标无效"),
    ({"latitude": "0", "longitude": "0"}, "坐标不在中国境内"),  # a zero, or a position from abroad
])
def test_bad_input_is_refused_in_chinese_and_nothing_is_written(app, client, owner, changes, message):
    _user_id, outlet_id = owner
    with app.app_context():
        before = profile_row(outlet_id)
    response = post_profile(client, **changes)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    fragment = post_profile(client, headers={**HX, "X-CSRFToken": csrf_token(client)}, **changes)
    assert fragment.status_code == 400 and fragment.headers["HX-Retarget"] == "#flash"
    assert message in fragment.get_data(as_text=True) and "<html" not in fragment.get_data(as_text=True)
    with app.app_context():
        assert profile_row(outlet_id) == before
        assert audit_rows() == []


def test_only_the_owner_opens_or_posts_the_profile(app, client, owner):
    _owner_id, outlet_id = owner
    with app.app_context():
        before = profile_row(outlet_id)
        stranger_id = make_user("别人").id
        staff = make_user("核销员")
        db.session.add(OutletStaff(outlet_id=outlet_id, user_id=staff.id))
        db.session.commit()
        staff_id = staff.id
        other_owner_id = make_user("别家店主").id
        other_outlet_id = make_outlet(db.session.get(User, other_owner_id)).id
    for user_id in (stranger_id, staff_id):
        log_in(client, user_id)
        assert client.get("/outlet/profile").status_code == 404
        assert post_profile(client, name="被改的店名").status_code == 404
    # Another owner's form edits their own outlet, never this one.
    log_in(client, other_owner_id)
    assert post_profile(client, name="别家新名").status_code == 303
    client.post("/auth/logout", data={"csrf_token": csrf_token(client)})
    visitor = client.get("/outlet/profile")
    assert visitor.status_code == 302 and visitor.headers["Location"].startswith("/auth/login")
    posted = client.post("/outlet/profile", data={**GOOD, "csrf_token": csrf_token(client)})
    assert posted.status_code == 302 and posted.headers["Location"].startswith("/auth/login")
    with app.app_context():
        assert profile_row(outlet_id) == before
        assert profile_row(other_outlet_id)["name"] == "别家新名"
        assert [row.actor_id for row in audit_rows()] == [other_owner_id]
        with pytest.raises(NotFound):
            update_outlet_profile(db.session, staff_id, OutletProfileInput(**GOOD))


def test_each_save_is_audited_with_the_changed_fields_only(app, client, owner):
    user_id, outlet_id = owner
    post_profile(client, address="测试路 1 号", latitude="30.2741", longitude="120.1551")  # address, position kept
    with app.app_context():
        (row,) = audit_rows()
        assert (row.actor_kind, row.actor_id, row.target_type, row.target_id) == ("user", user_id, "outlet",
                                                                                 str(outlet_id))
        assert json.loads(row.detail) == {"name": [f"网点{user_id}", GOOD["name"]],
                                          "phone": ["", GOOD["phone"]], "opening_hours": ["", GOOD["opening_hours"]]}
    post_profile(client, address="测试路 1 号")  # the same again: nothing to record
    with app.app_context():
        assert len(audit_rows()) == 1


def test_the_service_refuses_bad_input_and_writes_nothing(session, owner):
    user_id, outlet_id = owner
    with pytest.raises(OutletProfileError, match="店名"):
        update_outlet_profile(session, user_id, OutletProfileInput(name="x", address="杭州市西湖区", phone="13800000000"))
    assert session.scalar(select(func.count()).select_from(AuditLog)) == 0
    assert session.get(Outlet, outlet_id).name != "x"


def test_concurrent_saves_are_audited_one_after_another(app, owner):
    """Four saves at once: each audit row's old name is the name the save before it wrote, so the log tells the
    whole story (the outlet row is locked on Postgres while a save reads it)."""
    user_id, outlet_id = owner
    names = [f"同时保存{i}" for i in range(4)]

    def save(name: str):
        return update_outlet_profile(db.session, user_id, OutletProfileInput(**{**GOOD, "name": name})).id

    results = run_concurrently(app, save, [(name,) for name in names])
    assert results == [outlet_id] * 4
    with app.app_context():
        details = [json.loads(row.detail) for row in sorted(audit_rows(), key=lambda row: row.id)]
        assert [d["name"][0] for d in details] == [f"网点{user_id}"] + [d["name"][1] for d in details[:-1]]
        assert sorted(d["name"][1] for d in details) == names
        assert profile_row(outlet_id)["name"] == details[-1]["name"][1]
        assert "phone" in details[0] and all("phone" not in d for d in details[1:])
