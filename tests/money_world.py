"""A small world for money tests, built through the real services: a region with a factory store, an
outlet, a referral chain, a ¥100 product, and a rule version (direct 10%, team 3%, service 5%, regional 2%)."""
from dataclasses import dataclass

from sqlalchemy import select

from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    FactoryStore,
    Identity,
    LocationKind,
    BindingSource,
    Order,
    StockLocation,
    User,
    Wallet,
)
from dingqiao.services.accounts import create_admin
from dingqiao.services.referrals import bind_upline
from dingqiao.services.commissions import RuleInput, create_rule_version
from dingqiao.services.invariants import check_money
from dingqiao.services.orders import place_order
from dingqiao.services.payments import handle_pay_notification
from dingqiao.services.redemption import redeem
from dingqiao.wechat import pay_gateway
from tests.factories import make_outlet, make_product, make_region, make_user, stock

WORKED_EXAMPLE_RULE = RuleInput(referral_depth=2, direct_bps=1000, team_bps=300, third_level_bps=0,
                                service_fee_bps=500, regional_bps=200, payout_cap_bps=3000)


@dataclass
class World:
    grandparent: int  # M1
    parent: int  # M2, M3's upline
    buyer: int  # M3
    outlet_owner: int
    factory_owner: int
    outlet_id: int
    product_id: int
    finance_id: int


def build_world(app, rule: RuleInput = WORKED_EXAMPLE_RULE, units: int = 100) -> World:
    with app.app_context():
        region = make_region("西湖区")
        grandparent, parent, buyer = make_user("一级"), make_user("二级"), make_user("王小明")
        for child, upline in ((parent, grandparent), (buyer, parent)):
            bind_upline(db.session, child.id, upline.referral_code, BindingSource.LINK)
        owner = make_user("店主", identity=Identity.OUTLET)
        factory = make_user("工厂店", identity=Identity.FACTORY)
        location = StockLocation(kind=LocationKind.FACTORY, name="工厂仓")
        db.session.add(location)
        db.session.flush()
        db.session.add(FactoryStore(region_id=region.id, owner_user_id=factory.id, location_id=location.id, name="工厂店"))
        db.session.commit()
        outlet = make_outlet(owner, region)
        product = make_product(10_000, name="¥100 套装")
        stock(outlet, product, units)
        finance = create_admin(db.session, "finance", "long-enough-pw", AdminRole.FINANCE)
        create_rule_version(db.session, finance, rule)
        return World(grandparent.id, parent.id, buyer.id, owner.id, factory.id, outlet.id, product.id, finance.id)


def buy(app, world: World, buyer_id: int | None = None, quantity: int = 1) -> str:
    with app.app_context():
        user = db.session.get(User, buyer_id or world.buyer)
        order = place_order(db.session, user, world.outlet_id, {world.product_id: quantity}, timeout_minutes=15,
                            from_cart=False)
        return order.order_no


def pay(app, order_no: str) -> None:
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        openid = db.session.get(User, order.user_id).openid
        gateway = pay_gateway(app.config)
        notify = gateway.signed_notification(out_trade_no=order_no, transaction_id=f"42{order.id:016d}",
                                             total_fee=order.total_fen, openid=openid)
        assert handle_pay_notification(db.session, gateway, notify)


def pick_up(app, world: World, order_no: str) -> None:
    with app.app_context():
        code = db.session.scalar(select(Order.pickup_code).where(Order.order_no == order_no))
        redeem(db.session, world.outlet_owner, code)


def balances(app, user_id: int) -> tuple[int, int]:
    """(available, frozen) in fen."""
    with app.app_context():
        wallet = db.session.scalar(select(Wallet).where(Wallet.user_id == user_id))
        return (wallet.available_fen, wallet.frozen_fen) if wallet else (0, 0)


def assert_money_consistent(app) -> None:
    with app.app_context():
        assert check_money(db.session) == []
