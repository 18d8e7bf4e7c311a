"""Restock orders up the chain, manual stock adjustments, and the stock invariant command."""
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    AdminUser,
    ApplicationStatus,
    FactoryStore,
    Identity,
    LocationKind,
    OutboxMessage,
    Outlet,
    RestockItem,
    RestockOrder,
    RestockStatus,
    StockLevel,
    StockLocation,
    StockMovement,
    StockReason,
    User,
)
from dingqiao.services import Forbidden, NotFound
from dingqiao.services.accounts import create_admin
from dingqiao.services.invariants import check_stock
from dingqiao.services.restock import (
    Party,
    RestockError,
    cancel_restock,
    party_for_user,
    place_restock,
    receive_restock,
    restock_for,
    ship_restock,
)
from dingqiao.services.stock import OutOfStock, StockError, adjust_stock, location_stock, set_low_stock_threshold
from dingqiao.services.upgrades import ApplicationInput, IdentityRuleInput, apply_for_identity, create_identity_rule
from tests.conftest import Unexpected, run_concurrently
from tests.factories import make_outlet, make_region, make_user
from tests.money_world import build_world


def level(location_id: int, product_id: int) -> tuple[int, int]:
    row = db.session.scalar(select(StockLevel).where(StockLevel.location_id == location_id,
                                                     StockLevel.product_id == product_id))
    db.session.refresh(row) if row else None
    return (row.on_hand, row.reserved) if row else (0, 0)


@pytest.fixture
def chain(app):
    """The money world plus goods at the factory store (40) and the platform warehouse (500)."""
    world = build_world(app)
    with app.app_context():
        factory = db.session.scalar(select(FactoryStore))
        platform = StockLocation(kind=LocationKind.PLATFORM, name="平台总仓")
        db.session.add(platform)
        db.session.commit()
        for location_id, units in ((factory.location_id, 40), (platform.id, 500)):
            adjust_stock(db.session, location_id=location_id, product_id=world.product_id, delta=units,
                         note="期初", actor_kind="system", actor_id=0)
        outlet_location = db.session.get(Outlet, world.outlet_id).location_id
        return world, factory.location_id, outlet_location, platform.id


def test_a_restock_round_trip_moves_exactly_the_shipped_quantities(app, chain):
    world, factory_loc, outlet_loc, _ = chain
    with app.app_context():
        order = place_restock(db.session, world.outlet_owner, {world.product_id: 10}, "周末备货")
        assert (order.status, order.from_location_id, order.to_location_id) == (RestockStatus.PENDING, factory_loc,
                                                                                outlet_loc)
        item = order.items[0]
        product_price = db.session.scalar(select(RestockItem.unit_price_fen))
        assert item.unit_price_fen == product_price == 8_000 and order.total_fen == 80_000  # the outlet price
        factory = party_for_user(db.session, world.factory_owner)
        ship_restock(db.session, factory, order.id, {world.product_id: 10})
        assert level(factory_loc, world.product_id) == (30, 0)
        assert level(outlet_loc, world.product_id) == (100, 0)  # in transit, not arrived
        assert db.session.get(RestockOrder, order.id).status == RestockStatus.SHIPPED
        receive_restock(db.session, world.outlet_owner, order.id)
        assert level(outlet_loc, world.product_id) == (110, 0)
        assert db.session.get(RestockOrder, order.id).status == RestockStatus.RECEIVED
        moves = db.session.execute(select(StockMovement.location_id, StockMovement.on_hand_delta, StockMovement.reason)
                                   .where(StockMovement.restock_order_id == order.id)
                                   .order_by(StockMovement.id)).all()
        assert moves == [(factory_loc, -10, StockReason.RESTOCK_OUT), (outlet_loc, 10, StockReason.RESTOCK_IN)]
        assert db.session.scalar(select(OutboxMessage.user_id).where(OutboxMessage.event == "restock_shipped")) == \
            world.outlet_owner
        with pytest.raises(RestockError, match="没有待收"):
            receive_restock(db.session, world.outlet_owner, order.id)
        assert check_stock(db.session) == []


def test_shipping_more_than_on_hand_or_than_ordered_is_refused_and_changes_nothing(app, chain):
    world, factory_loc, _, _ = chain
    with app.app_context():
        # Ordered while the factory store had 60; 20 broke before shipping, so 40 are left to ship from.
        adjust_stock(db.session, location_id=factory_loc, product_id=world.product_id, delta=20, note="到货",
                     actor_kind="system", actor_id=0)
        order = place_restock(db.session, world.outlet_owner, {world.product_id: 60})
        adjust_stock(db.session, location_id=factory_loc, product_id=world.product_id, delta=-20, note="破损",
                     actor_kind="system", actor_id=0)
        factory = party_for_user(db.session, world.factory_owner)
        with pytest.raises(OutOfStock, match="可发库存只有 40 件"):
            ship_restock(db.session, factory, order.id, {world.product_id: 50})
        with pytest.raises(RestockError, match="只剩 60 件未发"):
            ship_restock(db.session, factory, order.id, {world.product_id: 61})
        with pytest.raises(RestockError, match="发货数量"):
            ship_restock(db.session, factory, order.id, {world.product_id: 0})
        assert level(factory_loc, world.product_id) == (40, 0)
        assert db.session.scalar(select(RestockItem.shipped_quantity)) == 0
        assert db.session.get(RestockOrder, order.id).status == RestockStatus.PENDING
        assert check_stock(db.session) == []


def test_a_partial_shipment_leaves_the_rest_open_and_cancel_is_only_before_shipping(app, chain):
    world, factory_loc, outlet_loc, _ = chain
    with app.app_context():
        order = place_restock(db.session, world.outlet_owner, {world.product_id: 10})
        factory = party_for_user(db.session, world.factory_owner)
        ship_restock(db.session, factory, order.id, {world.product_id: 4})
        assert db.session.get(RestockOrder, order.id).status == RestockStatus.SHIPPING
        with pytest.raises(RestockError, match="不能取消"):
            cancel_restock(db.session, party_for_user(db.session, world.outlet_owner), order.id)
        receive_restock(db.session, world.outlet_owner, order.id)
        assert level(outlet_loc, world.product_id) == (104, 0)
        assert db.session.get(RestockOrder, order.id).status == RestockStatus.SHIPPING  # 6 still to ship
        ship_restock(db.session, factory, order.id, {world.product_id: 6})
        assert db.session.get(RestockOrder, order.id).status == RestockStatus.SHIPPED
        receive_restock(db.session, world.outlet_owner, order.id)
        assert db.session.get(RestockOrder, order.id).status == RestockStatus.RECEIVED
        assert level(outlet_loc, world.product_id) == (110, 0) and level(factory_loc, world.product_id) == (30, 0)

        second = place_restock(db.session, world.outlet_owner, {world.product_id: 3})
        cancel_restock(db.session, factory, second.id, "缺货")
        cancelled = db.session.get(RestockOrder, second.id)
        assert (cancelled.status, cancelled.cancel_reason) == (RestockStatus.CANCELLED, "缺货")
        with pytest.raises(RestockError, match="已取消"):
            ship_restock(db.session, factory, second.id, {world.product_id: 3})
        assert check_stock(db.session) == []


def test_only_the_parties_see_and_only_the_supplier_ships(app, chain):
    world, _, _, _ = chain
    with app.app_context():
        order = place_restock(db.session, world.outlet_owner, {world.product_id: 2})
        buyer = party_for_user(db.session, world.outlet_owner)
        with pytest.raises(Forbidden):
            ship_restock(db.session, buyer, order.id, {world.product_id: 2})
        stranger_owner = make_user("别家店主", identity=Identity.OUTLET)
        make_outlet(stranger_owner, db.session.get(Outlet, world.outlet_id).region)
        stranger = party_for_user(db.session, stranger_owner.id)
        for attempt in (lambda: restock_for(db.session, stranger, order.id),
                        lambda: ship_restock(db.session, stranger, order.id, {world.product_id: 2}),
                        lambda: cancel_restock(db.session, stranger, order.id),
                        lambda: receive_restock(db.session, stranger_owner.id, order.id)):
            with pytest.raises(NotFound):
                attempt()
        with pytest.raises(Forbidden):
            party_for_user(db.session, world.buyer)  # a plain member runs no location
        lonely = make_user("无工厂店区域店主", identity=Identity.OUTLET)
        make_outlet(lonely, make_region("偏远区"))
        with pytest.raises(RestockError, match="暂无工厂店"):
            place_restock(db.session, lonely.id, {world.product_id: 1})
        for bad in ({}, {world.product_id: 0}, {world.product_id: 10_000}, {999_999: 1}):
            with pytest.raises(RestockError):
                place_restock(db.session, world.outlet_owner, bad)


def test_a_factory_store_restocks_from_the_platform_shipped_by_an_admin(app, chain):
    world, factory_loc, _, platform_loc = chain
    with app.app_context():
        order = place_restock(db.session, world.factory_owner, {world.product_id: 100})
        assert order.from_location_id == platform_loc and order.items[0].unit_price_fen == 6_500  # factory price
        admin = create_admin(db.session, "ops-restock", "long-enough-pw", AdminRole.OPERATOR)
        ship_restock(db.session, Party("admin", admin.id, None), order.id, {world.product_id: 100})
        receive_restock(db.session, world.factory_owner, order.id)
        assert level(platform_loc, world.product_id) == (400, 0) and level(factory_loc, world.product_id) == (140, 0)
        outlet_order = place_restock(db.session, world.outlet_owner, {world.product_id: 1})
        with pytest.raises(NotFound):  # the platform side ships only the platform's orders
            ship_restock(db.session, Party("admin", admin.id, None), outlet_order.id, {world.product_id: 1})
        assert check_stock(db.session) == []


def test_two_shipments_of_one_order_at_once_ship_it_once(app, chain):
    world, factory_loc, _, _ = chain
    with app.app_context():
        order_id = place_restock(db.session, world.outlet_owner, {world.product_id: 30}).id
    results = run_concurrently(
        app, lambda: ship_restock(db.session, party_for_user(db.session, world.factory_owner), order_id,
                                  {world.product_id: 30}), [()] * 4)
    assert not [r for r in results if isinstance(r, Unexpected)], results
    assert sum(isinstance(r, RestockOrder) for r in results) == 1
    with app.app_context():
        assert level(factory_loc, world.product_id) == (10, 0)
        assert check_stock(db.session) == []


def test_received_restock_volume_grants_a_waiting_factory_application(app, chain):
    world, _, _, _ = chain
    with app.app_context():
        finance = db.session.get(AdminUser, world.finance_id)
        create_identity_rule(db.session, finance, IdentityRuleInput(target="factory", metric="restock_volume",
                                                                   threshold_fen=80_000))
        free = make_region("滨江区")
        application = apply_for_identity(db.session, world.outlet_owner, ApplicationInput(
            target="factory", region_id=free.id, shop_name="滨江工厂店", address="杭州市滨江区江南大道 1 号",
            phone="0571-1234567"))
        assert application.status == ApplicationStatus.WAITING
        order = place_restock(db.session, world.outlet_owner, {world.product_id: 10})  # 10 × ¥80 = ¥800
        ship_restock(db.session, party_for_user(db.session, world.factory_owner), order.id, {world.product_id: 10})
        assert db.session.get(User, world.outlet_owner).identity == Identity.OUTLET  # shipped, not received
        receive_restock(db.session, world.outlet_owner, order.id)
        assert db.session.get(User, world.outlet_owner).identity == Identity.FACTORY
        assert db.session.scalar(select(FactoryStore).where(FactoryStore.region_id == free.id)).name == "滨江工厂店"


def test_adjustments_need_a_note_never_cut_into_reservations_and_are_audited(app, chain):
    from tests.money_world import buy

    world, _, outlet_loc, _ = chain
    buy(app, world, quantity=3)  # reserves 3 of the outlet's 100
    with app.app_context():
        with pytest.raises(StockError, match="原因"):
            adjust_stock(db.session, location_id=outlet_loc, product_id=world.product_id, delta=-1, note=" ",
                         actor_kind="user", actor_id=world.outlet_owner)
        with pytest.raises(StockError, match="预留"):
            adjust_stock(db.session, location_id=outlet_loc, product_id=world.product_id, delta=-98, note="盘点",
                         actor_kind="user", actor_id=world.outlet_owner)
        adjust_stock(db.session, location_id=outlet_loc, product_id=world.product_id, delta=-97, note="破损",
                     actor_kind="user", actor_id=world.outlet_owner)
        assert level(outlet_loc, world.product_id) == (3, 3)
        set_low_stock_threshold(db.session, location_id=outlet_loc, product_id=world.product_id, threshold=5)
        row = next(r for r in location_stock(db.session, outlet_loc) if r.product.id == world.product_id)
        assert (row.available, row.low) == (0, True)
        with pytest.raises(StockError):
            set_low_stock_threshold(db.session, location_id=outlet_loc, product_id=world.product_id, threshold=-1)
        from dingqiao.models import AuditLog
        assert db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "stock.adjust")) == 3
        assert check_stock(db.session) == []


def test_check_stock_names_a_tampered_level_and_a_tampered_restock_line(app, chain):
    world, factory_loc, _, _ = chain
    runner = CliRunner()
    with app.app_context():
        assert "Stock invariants hold" in runner.invoke(app.cli, ["check-stock"]).output
        order = place_restock(db.session, world.outlet_owner, {world.product_id: 5})
        ship_restock(db.session, party_for_user(db.session, world.factory_owner), order.id, {world.product_id: 5})
        db.session.execute(update(StockLevel).where(StockLevel.location_id == factory_loc).values(on_hand=999))
        db.session.execute(update(RestockItem).values(received_quantity=5))
        db.session.commit()
        problems = check_stock(db.session)
        assert any(f"location {factory_loc}" in p and "999" in p for p in problems)
        assert any(order.restock_no in p for p in problems)
        result = runner.invoke(app.cli, ["check-stock"])
        assert result.exit_code == 1
