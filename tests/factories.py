"""Small builders for test data. They write rows the way the demo seed does; business flows go through
services in the tests that exercise them."""
import itertools
from datetime import timedelta

from sqlalchemy import select

from dingqiao.extensions import db
from dingqiao.models import (
    Category,
    Identity,
    LocationKind,
    Order,
    OrderItem,
    Outlet,
    Product,
    Region,
    StockLevel,
    StockLocation,
    StockMovement,
    StockReason,
    User,
)
from dingqiao.models.base import utcnow
from dingqiao.services.accounts import new_referral_code

_seq = itertools.count(1)


def make_user(nickname: str = "", identity: Identity = Identity.MEMBER, **fields) -> User:
    n = next(_seq)
    user = User(
        openid=fields.pop("openid", f"openid-{n}"),
        nickname=nickname or f"用户{n}",
        identity=identity,
        referral_code=fields.pop("referral_code", new_referral_code()),
        phone=fields.pop("phone", f"139{n:08d}"),  # members who bought or withdrew gave one (tests/test_member_phone.py)
        **fields,
    )
    db.session.add(user)
    db.session.commit()
    return user


def make_region(name: str | None = None) -> Region:
    n = next(_seq)
    region = Region(code=f"R{n}", name=name or f"区域{n}")
    db.session.add(region)
    db.session.commit()
    return region


def make_outlet(owner: User, region: Region | None = None) -> Outlet:
    region = region or make_region()
    location = StockLocation(kind=LocationKind.OUTLET, name=f"网点{owner.id}")
    db.session.add(location)
    db.session.flush()
    outlet = Outlet(
        region_id=region.id, owner_user_id=owner.id, location_id=location.id, name=f"网点{owner.id}",
        address="测试路 1 号", latitude_e6=30_274_100, longitude_e6=120_155_100,
    )
    db.session.add(outlet)
    db.session.commit()
    return outlet


def make_product(member_price_fen: int = 3990, name: str = "测试洗衣液") -> Product:
    category = db.session.scalars(select(Category).limit(1)).first()
    if category is None:
        category = Category(name="洗衣护理")
        db.session.add(category)
        db.session.flush()
    product = Product(
        category_id=category.id, name=name, member_price_fen=member_price_fen,
        outlet_price_fen=member_price_fen * 80 // 100, factory_price_fen=member_price_fen * 65 // 100,
    )
    db.session.add(product)
    db.session.commit()
    return product


def make_order(user: User, outlet: Outlet, product: Product, quantity: int = 1) -> Order:
    n = next(_seq)
    price = product.price_for(user.identity)
    order = Order(
        order_no=f"T{n:012d}", user_id=user.id, outlet_id=outlet.id, price_identity=user.identity,
        total_fen=price * quantity, expires_at=utcnow() + timedelta(minutes=15),
    )
    db.session.add(order)
    db.session.flush()
    db.session.add(
        OrderItem(order_id=order.id, product_id=product.id, product_name=product.name, unit_price_fen=price,
                  quantity=quantity, subtotal_fen=price * quantity)
    )
    db.session.commit()
    return order


def stock(outlet: Outlet, product: Product, on_hand: int) -> StockLevel:
    level = StockLevel(location_id=outlet.location_id, product_id=product.id, on_hand=on_hand)
    db.session.add(level)
    if on_hand:
        db.session.add(StockMovement(location_id=outlet.location_id, product_id=product.id, on_hand_delta=on_hand,
                                     reason=StockReason.INITIAL))
    db.session.commit()
    return level


def team_paths_from_bindings(session) -> set[tuple[int, int, int]]:
    """The (ancestor, descendant, depth) rows the closure table must hold, walked from the bindings."""
    from dingqiao.models import ReferralBinding

    upline = {b.user_id: b.upline_id for b in session.scalars(select(ReferralBinding))}
    expected = set()
    for child in upline:
        depth, ancestor = 1, upline[child]
        while ancestor is not None:
            expected.add((ancestor, child, depth))
            depth, ancestor = depth + 1, upline.get(ancestor)
    return expected
