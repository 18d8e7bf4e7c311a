"""The network built from the admin pages (issue 20, part 3): services/network.py without HTTP — one warehouse,
one factory store per region even when two are opened at once, one shop per owner, typed coordinates, moving an
outlet with its open restock orders, identities granted and revoked — and /admin/network/ as each admin role."""
import json
import re
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    AuditLog,
    FactoryStore,
    Identity,
    IdentityApplication,
    LocationKind,
    OutboxMessage,
    Outlet,
    Region,
    RestockOrder,
    RestockStatus,
    SiteStatus,
    StockLocation,
    User,
)
from dingqiao.services import DomainError, Forbidden, NotFound
from dingqiao.services.accounts import create_admin
from dingqiao.services.network import (
    NetworkError,
    RegionTaken,
    create_factory_store,
    create_outlet,
    create_platform_warehouse,
    create_region,
    grant_identity,
    move_outlet,
    revoke_identity,
    search_members,
)
from dingqiao.services.outlets import set_site_status
from dingqiao.services.restock import party_for_user, place_restock, ship_restock, supplier_location_id
from dingqiao.services.stock import adjust_stock
from tests.conftest import Unexpected, csrf_token, log_in_admin, run_concurrently
from tests.factories import make_product, make_user

HX = {"HX-Request": "true"}
SHOP = {"address": "杭州市西湖区文三路 259 号", "phone": "0571-88001001"}
POSITION = {"latitude": "30.279812", "longitude": "120.132145"}


@dataclass
class Team:
    operator: int
    finance: int
    superadmin: int


@pytest.fixture
def team(app) -> Team:
    with app.app_context():
        return Team(*(create_admin(db.session, f"net-{role.value}", "long-enough-password", role).id
                      for role in (AdminRole.OPERATOR, AdminRole.FINANCE, AdminRole.SUPERADMIN)))


def member(nickname: str, **fields) -> int:
    return make_user(nickname, **fields).id


def opened_outlet(region_id: int, owner_id: int, admin_id: int, name: str = "文三路邻里便利店") -> Outlet:
    return create_outlet(db.session, region_id=region_id, owner_user_id=owner_id, name=name,
                         opening_hours="08:00-21:30", admin_id=admin_id, **SHOP, **POSITION)


def opened_factory_store(region_id: int, owner_id: int, admin_id: int, name: str = "西湖工厂店") -> FactoryStore:
    return create_factory_store(db.session, region_id=region_id, owner_user_id=owner_id, name=name,
                                admin_id=admin_id, **SHOP)


def written() -> dict[str, int]:
    """How many rows the network's writes touch: compared before and after a refusal."""
    tables = (Region, FactoryStore, Outlet, StockLocation, AuditLog, OutboxMessage, RestockOrder)
    counts = {model.__tablename__: db.session.scalar(select(func.count()).select_from(model)) for model in tables}
    counts["non-members"] = db.session.scalar(select(func.count()).select_from(User)
                                              .where(User.identity != Identity.MEMBER))
    return counts


def audit(action: str) -> list[tuple[int | None, str, dict]]:
    rows = db.session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id))
    return [(row.actor_id, row.target_id, json.loads(row.detail)) for row in rows]


# ---------------------------------------------------------------- the warehouse and regions

def test_one_platform_warehouse_and_a_second_is_refused(app, team):
    with app.app_context():
        warehouse = create_platform_warehouse(db.session, name=" 平台  总仓 ", admin_id=team.operator)
        assert (warehouse.kind, warehouse.name) == (LocationKind.PLATFORM, "平台 总仓")
        before = written()
        with pytest.raises(NetworkError, match="平台仓库已存在（平台 总仓），只能设一个"):
            create_platform_warehouse(db.session, name="第二个仓", admin_id=team.operator)
        assert written() == before
        assert audit("platform_warehouse.create") == [(team.operator, str(warehouse.id), {"name": "平台 总仓"})]


def test_two_warehouses_created_at_once_make_one(app, team):
    results = run_concurrently(
        app, lambda name: create_platform_warehouse(db.session, name=name, admin_id=team.operator),
        [("甲仓库",), ("乙仓库",)])
    assert not [r for r in results if isinstance(r, Unexpected)], results
    assert sorted(type(r).__name__ for r in results) == ["NetworkError", "StockLocation"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StockLocation)
                                 .where(StockLocation.kind == LocationKind.PLATFORM)) == 1


def test_a_region_is_created_audited_and_its_code_and_name_stay_unique(app, team):
    with app.app_context():
        region = create_region(db.session, code=" hzxh ", name="杭州市西湖区", admin_id=team.operator)
        assert (region.code, region.name) == ("HZXH", "杭州市西湖区")
        assert audit("region.create") == [(team.operator, str(region.id), {"code": "HZXH", "name": "杭州市西湖区"})]
        before = written()
        for code, name, message in (("HZXH", "别的区", "已被「杭州市西湖区」使用"), ("HZBJ", "杭州市西湖区", "已有名为"),
                                    ("杭州", "滨江区", "区域编号需为"), ("H", "滨江区", "区域编号需为"),
                                    ("HZBJ", "滨", "区域名称需为 2 到 32 个字")):
            with pytest.raises(NetworkError, match=message):
                create_region(db.session, code=code, name=name, admin_id=team.operator)
        assert written() == before


def test_only_an_admin_builds_the_network(app, team):
    with app.app_context():
        for admin_id in (None, 0, 999_999):
            with pytest.raises(Forbidden):
                create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=admin_id)
        assert written()["regions"] == 0


# ---------------------------------------------------------------- factory stores and outlets

def test_a_factory_store_holds_its_region_and_makes_its_owner_a_factory_store(app, team):
    with app.app_context():
        region = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator)
        owner_id, second_id = member("林总"), member("陈总")
        store = opened_factory_store(region.id, owner_id, team.operator)
        assert (store.region_id, store.location.kind, store.location.name) == (region.id, LocationKind.FACTORY,
                                                                               "西湖工厂店")
        assert db.session.get(User, owner_id).identity == Identity.FACTORY
        [(actor, target, detail)] = audit("factory_store.create")
        assert (actor, target, detail["owner_user_id"], detail["phone"]) == (team.operator, str(store.id), owner_id,
                                                                            "0571-88001001")
        assert audit("identity.upgrade") == [(team.operator, str(owner_id), {
            "from": "member", "to": "factory", "site": "factory_store", "site_id": store.id})]
        message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.user_id == owner_id))
        assert message.event == "identity_upgraded" and "西湖工厂店" in message.body
        before = written()
        with pytest.raises(RegionTaken, match="「杭州市西湖区」已有工厂店（西湖工厂店），每个区域只设一家工厂店"):
            opened_factory_store(region.id, second_id, team.operator, "第二家")
        assert written() == before
        assert db.session.get(User, second_id).identity == Identity.MEMBER


def test_two_factory_stores_opened_for_one_region_at_once_make_exactly_one(app, team):
    with app.app_context():
        region_id = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator).id
        owners = [member("甲"), member("乙")]
    results = run_concurrently(app, lambda owner_id, name: opened_factory_store(region_id, owner_id, team.operator,
                                                                                 name),
                               [(owners[0], "甲工厂店"), (owners[1], "乙工厂店")])
    assert not [r for r in results if isinstance(r, Unexpected)], results
    [refused] = [r for r in results if isinstance(r, RegionTaken)]
    assert "已有工厂店" in refused.message and "每个区域只设一家工厂店" in refused.message
    with app.app_context():
        [store] = db.session.scalars(select(FactoryStore).where(FactoryStore.region_id == region_id))
        assert db.session.scalar(select(func.count()).select_from(StockLocation)
                                 .where(StockLocation.kind == LocationKind.FACTORY)) == 1  # nothing half-written
        identities = {owner_id: db.session.get(User, owner_id).identity for owner_id in owners}
        assert identities == {store.owner_user_id: Identity.FACTORY,
                              next(o for o in owners if o != store.owner_user_id): Identity.MEMBER}
        assert len(audit("factory_store.create")) == 1


def test_an_outlet_is_opened_at_its_typed_position_and_its_owner_becomes_an_outlet(app, team):
    with app.app_context():
        region = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator)
        owner_id = member("周姐")
        outlet = opened_outlet(region.id, owner_id, team.operator)
        assert (outlet.latitude_e6, outlet.longitude_e6, outlet.opening_hours) == (30_279_812, 120_132_145,
                                                                                  "08:00-21:30")
        assert (outlet.location.kind, outlet.status) == (LocationKind.OUTLET, SiteStatus.ACTIVE)
        assert db.session.get(User, owner_id).identity == Identity.OUTLET
        [(_, _, detail)] = audit("outlet.create")
        assert (detail["latitude_e6"], detail["region_id"]) == (30_279_812, region.id)


@pytest.mark.parametrize("latitude, longitude, message", [
    ("", "120.13", "请填写门店坐标"),
    ("30.27", " ", "请填写门店坐标"),
    ("abc", "120.13", "坐标无效"),
    ("nan", "120.13", "坐标无效"),
    ("30.27", "inf", "坐标无效"),
    ("91", "120.13", "坐标无效"),
    ("120.13", "30.27", "坐标无效"),  # swapped: 120 is no latitude
    ("30.27", "-120.13", "不在中国境内"),
    ("0", "0", "不在中国境内"),
])
def test_a_bad_position_is_refused_in_chinese_and_nothing_is_written(app, team, latitude, longitude, message):
    with app.app_context():
        region_id = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator).id
        owner_id = member("周姐")
        before = written()
        with pytest.raises(NetworkError, match=message):
            create_outlet(db.session, region_id=region_id, owner_user_id=owner_id, name="文三路店", opening_hours="",
                          latitude=latitude, longitude=longitude, admin_id=team.operator, **SHOP)
        assert written() == before


def test_a_person_runs_one_shop_and_must_be_an_active_member_without_an_open_application(app, team):
    with app.app_context():
        west = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator).id
        east = create_region(db.session, code="HZBJ", name="杭州市滨江区", admin_id=team.operator).id
        outlet_owner, factory_owner = member("周姐"), member("林总")
        opened_outlet(west, outlet_owner, team.operator)
        opened_factory_store(west, factory_owner, team.operator)
        disabled = member("停用", is_active=False)
        applicant = member("申请人")
        db.session.add(IdentityApplication(user_id=applicant, target="outlet", status="waiting", region_id=west,
                                           shop_name="小店", address="杭州市西湖区某路 1 号", phone="13800000000"))
        db.session.commit()
        before = written()
        refusals = [
            (lambda: opened_factory_store(east, outlet_owner, team.operator), "已经营核销网点「文三路邻里便利店」"),
            (lambda: opened_outlet(east, outlet_owner, team.operator, "第二家店"), "已经营核销网点"),
            (lambda: opened_outlet(east, factory_owner, team.operator), "已经营工厂店「西湖工厂店」"),
            (lambda: opened_outlet(east, disabled, team.operator), "账号已停用"),
            (lambda: opened_outlet(east, 999_999, team.operator), "找不到会员 999999"),
            (lambda: opened_outlet(east, applicant, team.operator), "身份申请正在处理中"),
            (lambda: opened_outlet(999_999, member("新人"), team.operator), "请选择区域"),
            (lambda: create_outlet(db.session, region_id=east, owner_user_id=applicant, name="店", address="杭州",
                                   phone="x", opening_hours="", admin_id=team.operator, **POSITION), "店名"),
        ]
        for attempt, message in refusals:
            with pytest.raises(DomainError, match=message):
                attempt()
        assert written() == before


# ---------------------------------------------------------------- identities

def test_identities_are_granted_and_revoked_by_finance_with_a_reason_and_audited(app, team):
    with app.app_context():
        region = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator).id
        owner_id = member("周姐")
        outlet = opened_outlet(region, owner_id, team.operator)
        change = {"user_id": owner_id, "identity": "outlet", "reason": "违规经营"}
        with pytest.raises(Forbidden, match="财务或超级管理员"):
            revoke_identity(db.session, **change, admin_id=team.operator)
        with pytest.raises(DomainError, match="请填写撤销身份的原因"):
            revoke_identity(db.session, **{**change, "reason": "  "}, admin_id=team.finance)
        with pytest.raises(NetworkError, match="仍在经营核销网点「文三路邻里便利店」：请先暂停其营业"):
            revoke_identity(db.session, **change, admin_id=team.finance)
        assert db.session.get(User, owner_id).identity == Identity.OUTLET

        set_site_status(db.session, team.operator, "outlet", [outlet.id], SiteStatus.SUSPENDED)
        revoked = revoke_identity(db.session, **change, admin_id=team.finance)
        assert revoked.identity == Identity.MEMBER
        assert audit("identity.revoke") == [(team.finance, str(owner_id), {"from": "outlet", "to": "member",
                                                                           "reason": "违规经营"})]
        with pytest.raises(NetworkError, match="当前不是核销网点"):
            revoke_identity(db.session, **change, admin_id=team.finance)

        grant = {**change, "reason": "整改完成"}
        with pytest.raises(NetworkError, match="没有营业中的核销网点"):
            grant_identity(db.session, **grant, admin_id=team.superadmin)
        set_site_status(db.session, team.operator, "outlet", [outlet.id], SiteStatus.ACTIVE)
        with pytest.raises(Forbidden):
            grant_identity(db.session, **grant, admin_id=team.operator)
        with pytest.raises(NetworkError, match="请选择核销网点或工厂店身份"):
            grant_identity(db.session, **{**grant, "identity": "member"}, admin_id=team.superadmin)
        assert grant_identity(db.session, **grant, admin_id=team.superadmin).identity == Identity.OUTLET
        assert audit("identity.grant") == [(team.superadmin, str(owner_id), {"from": "member", "to": "outlet",
                                                                             "reason": "整改完成"})]
        with pytest.raises(NetworkError, match="已是核销网点"):
            grant_identity(db.session, **grant, admin_id=team.superadmin)


def test_revoking_a_factory_store_keeps_the_outlet_identity_its_owner_still_runs(app, team):
    """An outlet that grew into a factory store (an application) keeps its outlet: that identity remains."""
    with app.app_context():
        west = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator).id
        owner_id = member("周姐")
        opened_outlet(west, owner_id, team.operator)
        store = FactoryStore(region_id=west, owner_user_id=owner_id, name="周姐工厂店",
                             location=StockLocation(kind=LocationKind.FACTORY, name="周姐工厂店"))
        db.session.add(store)
        db.session.get(User, owner_id).identity = Identity.FACTORY
        db.session.commit()
        with pytest.raises(NetworkError, match="是工厂店：如需改为核销网点，请撤销工厂店身份"):
            grant_identity(db.session, user_id=owner_id, identity="outlet", reason="改档", admin_id=team.finance)
        set_site_status(db.session, team.operator, "factory_store", [store.id], SiteStatus.SUSPENDED)
        revoked = revoke_identity(db.session, user_id=owner_id, identity="factory", reason="区域调整",
                                  admin_id=team.finance)
        assert revoked.identity == Identity.OUTLET


# ---------------------------------------------------------------- moving an outlet

@dataclass
class Supply:
    west: int
    east: int
    outlet_id: int
    outlet_owner: int
    west_factory_owner: int
    east_factory_location: int
    product_id: int


@pytest.fixture
def supply(app, team) -> Supply:
    """Two regions, each with its factory store (the west one stocked), and an outlet in the west."""
    with app.app_context():
        west = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator).id
        east = create_region(db.session, code="HZBJ", name="杭州市滨江区", admin_id=team.operator).id
        west_owner, east_owner, outlet_owner = member("林总"), member("陈总"), member("周姐")
        west_store = opened_factory_store(west, west_owner, team.operator)
        east_store = opened_factory_store(east, east_owner, team.operator, "滨江工厂店")
        outlet = opened_outlet(west, outlet_owner, team.operator)
        product = make_product(10_000)
        for store, units in ((west_store, 50), (east_store, 5)):  # the east one, for the moved outlet's next order
            adjust_stock(db.session, location_id=store.location_id, product_id=product.id, delta=units, note="期初",
                         actor_kind="system", actor_id=0)
        return Supply(west, east, outlet.id, outlet_owner, west_owner, east_store.location_id, product.id)


def test_moving_an_outlet_cancels_its_unshipped_restocks_and_its_supplier_follows_the_region(app, team, supply):
    with app.app_context():
        first = place_restock(db.session, supply.outlet_owner, {supply.product_id: 5}).restock_no
        second = place_restock(db.session, supply.outlet_owner, {supply.product_id: 2}).restock_no
        moved = move_outlet(db.session, outlet_id=supply.outlet_id, region_id=supply.east, admin_id=team.operator)
        assert moved.cancelled_restock_nos == [first, second]
        outlet = db.session.get(Outlet, supply.outlet_id)
        assert outlet.region_id == supply.east
        assert supplier_location_id(db.session, outlet.location_id) == (supply.east_factory_location, "outlet")
        statuses = {order.restock_no: (order.status, order.cancel_reason)
                    for order in db.session.scalars(select(RestockOrder))}
        assert statuses == {no: (RestockStatus.CANCELLED, "网点划转到「杭州市滨江区」") for no in (first, second)}
        assert [(actor, target) for actor, target, _ in audit("restock.cancel")] == [(team.operator, first),
                                                                                     (team.operator, second)]
        assert audit("outlet.move") == [(team.operator, str(outlet.id), {
            "region_id": [supply.west, supply.east], "cancelled_restocks": [first, second]})]
        again = place_restock(db.session, supply.outlet_owner, {supply.product_id: 1})
        assert again.from_location_id == supply.east_factory_location
        with pytest.raises(NetworkError, match="已在「杭州市滨江区」"):
            move_outlet(db.session, outlet_id=supply.outlet_id, region_id=supply.east, admin_id=team.operator)


def test_an_outlet_with_goods_on_the_way_is_not_moved(app, team, supply):
    with app.app_context():
        pending = place_restock(db.session, supply.outlet_owner, {supply.product_id: 1})
        shipping = place_restock(db.session, supply.outlet_owner, {supply.product_id: 10})
        ship_restock(db.session, party_for_user(db.session, supply.west_factory_owner), shipping.id,
                     {supply.product_id: 4})
        before = written()
        with pytest.raises(NetworkError, match=f"进货单 {shipping.restock_no} 已发货或部分发货"):
            move_outlet(db.session, outlet_id=supply.outlet_id, region_id=supply.east, admin_id=team.operator)
        assert written() == before
        assert db.session.get(Outlet, supply.outlet_id).region_id == supply.west
        assert db.session.get(RestockOrder, pending.id).status == RestockStatus.PENDING
        with pytest.raises(NotFound):
            move_outlet(db.session, outlet_id=999_999, region_id=supply.east, admin_id=team.operator)


# ---------------------------------------------------------------- finding an owner

def test_members_are_found_by_id_phone_nickname_or_referral_code(app, team):
    with app.app_context():
        wang = make_user("王丽", phone="13912345678")
        make_user("李娜", phone="13700000000")
        region = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator).id
        opened_outlet(region, wang.id, team.operator)
        for query in (str(wang.id), "139123", "王", wang.referral_code.lower()):
            matches = search_members(db.session, query)
            assert [m.member.id for m in matches] == [wang.id], query
        assert search_members(db.session, "王")[0].shop == "文三路邻里便利店"
        assert search_members(db.session, "%") == [] and search_members(db.session, "  ") == []


# ---------------------------------------------------------------- the pages

def post(client, path: str, **data):
    return client.post(path, data={"csrf_token": csrf_token(client), **data})


def alert(response) -> str:
    return " ".join(re.findall(r'role="alert">([^<]*)<', response.get_data(as_text=True)))


def test_an_operator_builds_the_network_from_the_pages(app, client, team):
    with app.app_context():
        factory_owner, outlet_owner = member("林总"), member("周姐")
    log_in_admin(client, team.operator)
    assert "还没有区域" in client.get("/admin/network/").get_data(as_text=True)
    steps = [("/admin/network/warehouse", {"name": "平台总仓"}, "已设立平台仓库「平台总仓」"),
             ("/admin/network/regions", {"code": "HZXH", "name": "杭州市西湖区"}, "已新建区域「杭州市西湖区」"),
             ("/admin/network/factory-stores", {"region_id": "1", "owner_user_id": str(factory_owner),
                                                "name": "西湖工厂店", **SHOP}, "已开设工厂店「西湖工厂店」"),
             ("/admin/network/outlets", {"region_id": "1", "owner_user_id": str(outlet_owner), "name": "文三路店",
                                         "opening_hours": "08:00-21:00", **SHOP, **POSITION}, "已开设核销网点「文三路店」")]
    for path, data, notice in steps:
        answer = post(client, path, **data)
        assert answer.status_code == 303 and answer.headers["Location"] == "/admin/network/#network", path
        assert notice in client.get("/admin/network/").get_data(as_text=True)
    page = client.get("/admin/network/").get_data(as_text=True)
    assert "平台总仓" in page and "西湖工厂店" in page and "文三路店" in page and "30.279812, 120.132145" in page
    assert "/identity/revoke" not in page and "财务或超级管理员" in page  # an operator is told why there is no form
    with app.app_context():
        assert [actor for actor, _, _ in audit("outlet.create")] == [team.operator]
        assert db.session.get(User, outlet_owner).identity == Identity.OUTLET


@pytest.mark.parametrize("path, data, message, typed", [
    ("/admin/network/regions", {"code": "西湖", "name": "杭州市西湖区"}, "区域编号需为", 'value="杭州市西湖区"'),
    ("/admin/network/outlets", {"region_id": "1", "owner_user_id": "OWNER", "name": "文三路店", **SHOP,
                                "latitude": "120.13", "longitude": "30.27"}, "坐标无效", 'value="120.13"'),
    ("/admin/network/outlets", {"region_id": "1", "owner_user_id": "王丽", "name": "文三路店", **SHOP, **POSITION},
     "请填写店主的会员 ID", 'value="王丽"'),
    ("/admin/network/outlets", {"region_id": "x", "owner_user_id": "OWNER", "name": "文三路店", **SHOP, **POSITION},
     "请选择区域", 'value="文三路店"'),
    ("/admin/network/factory-stores", {"region_id": "1", "owner_user_id": "OWNER", "name": "西", **SHOP},
     "店名需为 2 到 32 个字", 'value="0571-88001001"'),
    ("/admin/network/warehouse", {"name": "仓"}, "仓库名称需为", 'value="仓"'),
])
def test_bad_input_on_the_pages_is_refused_in_chinese_refilled_and_writes_nothing(app, client, team, path, data,
                                                                                  message, typed):
    with app.app_context():
        create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator)
        owner_id = member("王丽")
        before = written()
    log_in_admin(client, team.operator)
    answer = post(client, path, **{key: str(owner_id) if value == "OWNER" else value for key, value in data.items()})
    assert answer.status_code == 400 and message in alert(answer), alert(answer)
    assert typed in answer.get_data(as_text=True)
    # Said right after the field it is about (the form's own check or the service's), not above the form.
    field = next(name for start, name in NEXT_TO.items() if message.startswith(start))
    html = answer.get_data(as_text=True)
    assert re.search(rf'name="{field}"[^>]*>(?:[^<]*<option[^>]*>[^<]*</option>)*\s*(?:</select>)?'
                     rf'<span class="dq-field-error"[^>]*>{message}', html), field
    assert "dq-toast--error" not in html
    with app.app_context():
        assert written() == before


NEXT_TO = {"区域编号需为": "code", "坐标无效": "latitude", "请填写店主的会员 ID": "owner_user_id", "请选择区域": "region_id",
           "店名需为": "name", "仓库名称需为": "name"}


def test_an_operator_cannot_grant_or_revoke_an_identity_and_finance_can(app, client, team):
    with app.app_context():
        region = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator).id
        owner_id = member("周姐")
        outlet_id = opened_outlet(region, owner_id, team.operator).id
        set_site_status(db.session, team.operator, "outlet", [outlet_id], SiteStatus.SUSPENDED)
        before = written()
    change = {"user_id": str(owner_id), "identity": "outlet", "reason": "暂停整改"}
    log_in_admin(client, team.operator)
    for path in ("/admin/network/identity/revoke", "/admin/network/identity/grant"):
        assert post(client, path, **change).status_code == 403
    with app.app_context():
        assert written() == before
    log_in_admin(client, team.finance)
    assert "/admin/network/identity/revoke" in client.get("/admin/network/").get_data(as_text=True)
    refused = post(client, "/admin/network/identity/revoke", **{**change, "reason": ""})
    assert refused.status_code == 400 and "请填写撤销身份的原因" in alert(refused)
    done = post(client, "/admin/network/identity/revoke", **change)
    assert done.status_code == 303
    assert "已撤销，周姐 现为会员" in client.get("/admin/network/").get_data(as_text=True)
    refused = post(client, "/admin/network/identity/grant", **{**change, "reason": "整改完成"})
    assert refused.status_code == 400 and "没有营业中的核销网点" in alert(refused)
    assert "整改完成</textarea>" in refused.get_data(as_text=True)
    with app.app_context():
        assert [(actor, detail["reason"]) for actor, _, detail in audit("identity.revoke")] == [(team.finance,
                                                                                                 "暂停整改")]


def test_the_move_page_says_what_happens_to_open_restocks_and_moves(app, client, team, supply):
    with app.app_context():
        pending = place_restock(db.session, supply.outlet_owner, {supply.product_id: 3}).restock_no
    log_in_admin(client, team.superadmin)
    page = client.get(f"/admin/network/outlets/{supply.outlet_id}/move").get_data(as_text=True)
    assert "将随划转取消的进货单" in page and pending in page and "滨江工厂店" in page
    refused = post(client, f"/admin/network/outlets/{supply.outlet_id}/move", region_id="")
    assert refused.status_code == 400 and "请选择要划入的区域" in alert(refused)
    assert client.get("/admin/network/outlets/999999/move").status_code == 404
    moved = post(client, f"/admin/network/outlets/{supply.outlet_id}/move", region_id=str(supply.east))
    assert moved.status_code == 303
    assert f"并取消未发货的进货单 {pending}" in client.get("/admin/network/").get_data(as_text=True)


def test_the_owner_picker_suggests_members_as_a_fragment_and_as_a_page(app, client, team):
    with app.app_context():
        wang = make_user("王丽", phone="13912345678").id
    log_in_admin(client, team.operator)
    fragment = client.get("/admin/network/members?owner_user_id=1391", headers=HX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<datalist id="member-options">') and "<html" not in fragment
    assert f'<option value="{wang}">王丽 · 13912345678 · 会员</option>' in fragment
    page = client.get("/admin/network/members?q=王丽").get_data(as_text=True)
    assert "<html" in page and f"/admin/members/{wang}" in page


def test_the_data_tables_no_longer_create_regions_nor_move_outlets(app, client, team):
    log_in_admin(client, team.operator)
    assert client.get("/admin/data/regions/new/").status_code == 302
    with app.app_context():
        region = create_region(db.session, code="HZXH", name="杭州市西湖区", admin_id=team.operator).id
        outlet_id = opened_outlet(region, member("周姐"), team.operator).id
    form = client.get(f"/admin/data/outlets/edit/?id={outlet_id}").get_data(as_text=True)
    assert 'name="name"' in form and 'name="region"' not in form
