"""Property-based test of the stock: random mixes of member orders (placed, paid, cancelled, picked up,
refunded), restock orders up the chain (placed, shipped in parts, received, cancelled) and manual adjustments,
driven through the real services on a fresh database per example. After every step `check_stock` (what
`flask check-stock` runs) finds nothing, no level is negative, and the goods in the whole network are
conserved: on hand + in transit = initial + adjustments − handed to buyers."""
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import (
    AdminUser,
    FactoryStore,
    LocationKind,
    Order,
    OrderStatus,
    Outlet,
    RestockItem,
    RestockOrder,
    StockLevel,
    StockLocation,
    StockMovement,
    StockReason,
    User,
)
from dingqiao.services import DomainError
from dingqiao.services.invariants import check_money, check_stock
from dingqiao.services.orders import cancel_order, place_order
from dingqiao.services.redemption import redeem
from dingqiao.services.refunds import approve_refund, request_refund
from dingqiao.services.restock import Party, cancel_restock, party_for_user, place_restock, receive_restock, ship_restock
from dingqiao.services.stock import adjust_stock
from dingqiao.wechat import pay_gateway
from tests.money_world import build_world, pay
from tests.test_money_properties import fresh_app, scratch_database  # noqa: F401  (fixture)

OPERATIONS = ("order", "pay", "cancel", "pick_up", "refund", "restock", "platform_restock", "ship", "receive",
              "cancel_restock", "adjust")


def operations():
    # Shipping and receiving need an order to act on: drawn more often, so examples reach them.
    weighted = OPERATIONS + ("ship", "receive", "ship", "receive", "restock", "pay", "pick_up")
    step = st.tuples(st.sampled_from(weighted), st.integers(0, 7), st.integers(1, 12))
    return st.lists(step, min_size=4, max_size=20)


def conserved(session) -> tuple[int, int]:
    """(on hand + in transit, initial + adjustments − handed over) over the whole network."""
    on_hand = session.scalar(select(func.coalesce(func.sum(StockLevel.on_hand), 0)))
    in_transit = session.scalar(select(func.coalesce(
        func.sum(RestockItem.shipped_quantity - RestockItem.received_quantity), 0)))
    sources = session.scalar(select(func.coalesce(func.sum(StockMovement.on_hand_delta), 0)).where(
        StockMovement.reason.in_([StockReason.INITIAL, StockReason.ADJUST, StockReason.REDEEM])))
    return on_hand + in_transit, sources


def step_action(app, world, session, name, order, restock, quantity, admin, platform_id, outlet_location, gateway):
    """The service call for one step, or None when the step has nothing to act on."""
    owner_of = (lambda r: world.outlet_owner if r.to_location_id == outlet_location else world.factory_owner)
    if name == "order":
        return lambda: place_order(session, session.get(User, world.buyer), world.outlet_id,
                                   {world.product_id: 1 + quantity % 3}, timeout_minutes=15, from_cart=False)
    if name == "platform_restock":
        return lambda: place_restock(session, world.factory_owner, {world.product_id: quantity})
    if name == "restock":
        return lambda: place_restock(session, world.outlet_owner, {world.product_id: quantity})
    if name == "adjust":
        return lambda: adjust_stock(session, location_id=outlet_location, product_id=world.product_id,
                                    delta=quantity - 6 or 1, note="盘点", actor_kind="user", actor_id=world.outlet_owner)
    if order is not None:
        if name == "pay" and order.status == OrderStatus.PENDING_PAYMENT:
            return lambda: pay(app, order.order_no)
        if name == "cancel":
            return lambda: cancel_order(session, order.user_id, order.order_no)
        if name == "pick_up" and order.pickup_code:
            return lambda: redeem(session, world.outlet_owner, order.pickup_code)
        if name == "refund":
            def refund():
                requested = request_refund(session, order.user_id, order.order_no, "不想要了")
                approve_refund(session, gateway, session.get(AdminUser, world.finance_id), requested.id)
            return refund
    if restock is not None:
        if name == "ship":
            supplier = admin if restock.from_location_id == platform_id else party_for_user(session, world.factory_owner)
            left = sum(item.quantity - item.shipped_quantity for item in restock.items)
            return lambda: ship_restock(session, supplier, restock.id, {world.product_id: min(quantity, max(left, 1))})
        if name == "receive":
            return lambda: receive_restock(session, owner_of(restock), restock.id)
        if name == "cancel_restock":
            return lambda: cancel_restock(session, party_for_user(session, owner_of(restock)), restock.id, "不要了")
    return None


def run(app, steps) -> int:
    """Run the steps, checking every invariant after each; returns how many steps were checked."""
    world = build_world(app, units=15)
    with app.app_context():
        factory = db.session.scalar(select(FactoryStore))
        platform = StockLocation(kind=LocationKind.PLATFORM, name="平台总仓")
        db.session.add(platform)
        db.session.commit()
        adjust_stock(db.session, location_id=factory.location_id, product_id=world.product_id, delta=20,
                     note="期初", actor_kind="system", actor_id=0)
        adjust_stock(db.session, location_id=platform.id, product_id=world.product_id, delta=50, note="期初",
                     actor_kind="system", actor_id=0)
        outlet_location = db.session.get(Outlet, world.outlet_id).location_id
        platform_id = platform.id
        admin = Party("admin", world.finance_id, None)
    gateway = pay_gateway(app.config)
    checked = 0
    for name, pick, quantity in steps:
        with app.app_context():
            session = db.session
            orders = session.scalars(select(Order).order_by(Order.id)).all()
            restocks = session.scalars(select(RestockOrder).order_by(RestockOrder.id)).all()
            order = orders[pick % len(orders)] if orders else None
            restock = restocks[pick % len(restocks)] if restocks else None
            try:
                action = step_action(app, world, session, name, order, restock, quantity, admin, platform_id,
                                     outlet_location, gateway)
                if action is not None:
                    action()
                    event(f"ran: {name}")
            except DomainError:
                session.rollback()  # refused: the invariants below show nothing was half-written
                event(f"refused: {name}")
        with app.app_context():
            assert check_stock(db.session) == [], (name, pick, quantity)
            assert check_money(db.session) == []
            assert db.session.scalar(select(func.min(StockLevel.on_hand - StockLevel.reserved))) >= 0
            total, sources = conserved(db.session)
            assert total == sources, (name, total, sources)
        checked += 1
    return checked


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=operations())
@example(steps=[("order", 0, 2), ("pay", 0, 1), ("restock", 0, 10), ("ship", 0, 4), ("receive", 0, 1),
                ("pick_up", 0, 1), ("ship", 0, 6), ("platform_restock", 0, 30), ("ship", 1, 12), ("receive", 1, 1),
                ("receive", 0, 1), ("order", 0, 1), ("pay", 1, 1), ("refund", 1, 1), ("adjust", 0, 3),
                ("restock", 0, 5), ("cancel_restock", 2, 1), ("ship", 0, 40)])
def test_stock_is_never_created_or_lost_whatever_happens(scratch_database, fake_wechat_server, steps):
    with fresh_app(fake_wechat_server, scratch_database) as app:
        assert run(app, steps) == len(steps)
