"""A believable demo data set: regions, a factory store, three outlets with stock, ~20 products with
pictures drawn locally, members in a referral tree, the first commission rule version and one admin."""
import hashlib
import random
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..fonts import FontMissing, find_cjk_font
from ..models import (
    AdminUser,
    Announcement,
    Article,
    ArticleKind,
    Banner,
    BannerTarget,
    Category,
    CommissionLine,
    CommissionRuleVersion,
    CountsAt,
    FactoryStore,
    GrantMode,
    Identity,
    IdentityRuleVersion,
    LocationKind,
    Order,
    Outlet,
    OutboxMessage,
    Product,
    ProductImage,
    ReferralBinding,
    Region,
    StockLevel,
    StockLocation,
    StockMovement,
    StockReason,
    TeamPath,
    UpgradeMetric,
    UpgradeTarget,
    User,
    Wallet,
)
from ..models.base import utcnow
from ..uploads import THUMBNAIL_SIDE
from ..wechat import WeChatSettings
from .accounts import create_admin, new_referral_code
from .orders import place_order
from .payments import apply_payment
from .redemption import redeem
from .withdrawals import WithdrawalRules, request_withdrawal

DEMO_ADMIN_USERNAME = "admin"
DEMO_ADMIN_PASSWORD = "dingqiao-demo"

CATEGORIES = ["洗衣护理", "厨房清洁", "个人护理", "家居清洁", "超值套装"]

# (category index, name, subtitle, member price in fen, colour)
PRODUCTS = [
    (0, "顶俏浓缩洗衣液 2kg", "低泡易漂 · 护色增艳", 3990, (84, 160, 255)),
    (0, "顶俏薰衣草洗衣液 3kg", "持久留香 · 家庭装", 5490, (150, 120, 220)),
    (0, "顶俏洗衣凝珠 52颗", "三合一 · 精准剂量", 4990, (60, 190, 200)),
    (0, "顶俏婴幼儿洗衣液 1kg", "植物配方 · 温和无刺激", 3590, (255, 180, 120)),
    (0, "顶俏衣物柔顺剂 2L", "蓬松柔软 · 防静电", 2990, (240, 140, 170)),
    (0, "顶俏除菌洗衣粉 2.5kg", "深层洁净 · 除菌率99%", 3290, (90, 140, 210)),
    (1, "顶俏洗洁精 1.5kg", "食品级 · 不伤手", 1590, (120, 200, 90)),
    (1, "顶俏厨房重油污净 500ml", "一喷即净 · 去油快", 1990, (250, 170, 60)),
    (1, "顶俏果蔬清洗剂 1kg", "去除农残 · 食品接触级", 2290, (100, 190, 120)),
    (1, "顶俏洗碗机专用粉 1kg", "强效去渍 · 光亮不留痕", 4590, (70, 170, 190)),
    (2, "顶俏氨基酸洗发水 750ml", "温和控油 · 蓬松", 4990, (200, 150, 100)),
    (2, "顶俏沐浴露 1L", "清爽保湿 · 樱花香", 3990, (250, 150, 180)),
    (2, "顶俏泡沫洗手液 300ml", "抑菌99.9% · 儿童适用", 1290, (130, 200, 230)),
    (2, "顶俏牙膏 3支装", "清新口气 · 护龈", 2990, (90, 200, 200)),
    (3, "顶俏地板清洁剂 2L", "实木可用 · 速干不留痕", 2790, (190, 150, 110)),
    (3, "顶俏洁厕液 2瓶装", "强效除垢 · 除臭", 1990, (90, 150, 240)),
    (3, "顶俏玻璃清洁剂 500ml", "无痕透亮 · 防雾", 1490, (120, 210, 240)),
    (3, "顶俏多功能消毒液 1L", "含氯配方 · 衣物家居通用", 2490, (230, 110, 110)),
    (4, "顶俏洗护全家福套装", "洗衣液+柔顺剂+洗洁精", 9990, (7, 193, 96)),
    (4, "顶俏新家开荒套装", "厨房+卫浴+地面 全屋清洁", 12990, (16, 174, 255)),
]

REGIONS = [("HZXH", "杭州市西湖区"), ("HZBJ", "杭州市滨江区"), ("SHPD", "上海市浦东新区")]

# name, address, latitude, longitude (GCJ-02, micro-degrees), opening hours, phone
OUTLETS = [
    ("文三路邻里便利店", "杭州市西湖区文三路 259 号", 30279812, 120132145, "08:00-21:30", "0571-88001001"),
    ("古荡湾宝妈驿站", "杭州市西湖区古荡新村 12 幢底商", 30283402, 120118907, "09:00-20:00", "0571-88001002"),
    ("翠苑社区生活馆", "杭州市西湖区翠苑一区 37 号", 30290117, 120135566, "08:30-21:00", "0571-88001003"),
]

OUTLET_KEEPERS = ["文三路·黄姐", "古荡·宝妈小周", "翠苑·徐阿姨"]  # the owners of OUTLETS, in order

MEMBER_NAMES = ["王丽", "陈静", "刘洋", "张敏", "李娜", "赵磊", "孙悦", "周婷", "吴昊", "郑爽", "冯雪", "何佳"]


@dataclass(frozen=True)
class SeedSummary:
    created: bool
    users: int = 0
    products: int = 0
    outlets: int = 0
    images_with_text: bool = False


def has_demo_admin(session: Session) -> bool:
    """The demo's admin with its published password: demo data, never to be served as a shop."""
    admin = session.scalar(select(AdminUser).where(AdminUser.username == DEMO_ADMIN_USERNAME))
    return admin is not None and admin.check_password(DEMO_ADMIN_PASSWORD)


def seed_demo(session: Session, upload_folder: str, font_path: str | None = None) -> SeedSummary:
    """Create the demo data set once. A database that already has users is left as it is."""
    if session.scalar(select(func.count()).select_from(User)):
        return SeedSummary(created=False)
    try:
        font_file = find_cjk_font(font_path)
    except FontMissing:
        font_file = None
    with write_transaction(session):
        users = _seed_people(session)
        products = _seed_catalog(session, Path(upload_folder), font_file)
        outlets = _seed_network(session, users, products)
        session.add(
            CommissionRuleVersion(
                referral_depth=2, direct_bps=1000, team_bps=300, service_fee_bps=500, regional_bps=200,
                payout_cap_bps=3000, cooling_days=0, note="初始规则（演示）",
            )
        )
        _seed_content(session, products)
        session.add_all([
            IdentityRuleVersion(target=UpgradeTarget.OUTLET, metric=UpgradeMetric.GOODS_PURCHASES, threshold_fen=30_000,
                                counts_at=CountsAt.REDEEMED, grant_mode=GrantMode.AUTO, note="初始规则（演示）"),
            IdentityRuleVersion(target=UpgradeTarget.FACTORY, metric=UpgradeMetric.RESTOCK_VOLUME,
                                threshold_fen=500_000, counts_at=CountsAt.REDEEMED, grant_mode=GrantMode.REVIEW,
                                note="初始规则（演示）"),
        ])
    create_admin(session, DEMO_ADMIN_USERNAME, DEMO_ADMIN_PASSWORD)
    return SeedSummary(True, len(users), len(products), len(outlets), font_file is not None)


def _seed_content(session: Session, products: list[Product]) -> None:
    """A brand story, a banner pointing at it and one at a product, and an announcement (all editable in the
    admin's 内容 pages). The banners reuse the products' drawn pictures."""
    story = Article(kind=ArticleKind.BRAND, title="顶俏的故事：把工厂价带到社区门口", summary="从工厂到社区门店，少一层加价。",
                    body_html="<p>顶俏专注家庭洗护，工厂直供社区门店，会员就近自提。</p>"
                              "<h3>为什么更便宜</h3><ul><li>工厂店直供，区域独家</li><li>社区门店自提，省去物流</li></ul>",
                    is_published=True)
    session.add(story)
    session.flush()
    covers = {image.product_id: image.path for image in session.scalars(select(ProductImage))}
    session.add_all([
        Banner(title="品牌故事", image_path=covers[products[1].id], target_kind=BannerTarget.ARTICLE,
               target_id=story.id, sort_order=1),
        Banner(title=products[0].name, image_path=covers[products[0].id], target_kind=BannerTarget.PRODUCT,
               target_id=products[0].id, sort_order=2),
        Announcement(text="双 12 社区团购季：全场工厂价，门店自提更方便。", link="/articles/"),
    ])


def _seed_people(session: Session) -> dict[str, User]:
    people: dict[str, User] = {}

    def person(key: str, nickname: str, identity: Identity) -> User:
        # Made-up numbers (138 0000 xxxx): the demo's members have bought before, so checkout does not ask again.
        user = User(openid=f"demo-{key}", nickname=nickname, identity=identity, referral_code=new_referral_code(),
                    phone=f"1380000{len(people):04d}")
        session.add(user)
        people[key] = user
        return user

    person("factory", "西湖工厂店·林总", Identity.FACTORY)
    for index in range(len(OUTLETS)):
        person(f"outlet{index + 1}", OUTLET_KEEPERS[index], Identity.OUTLET)
    for index, name in enumerate(MEMBER_NAMES):
        person(f"member{index + 1}", name, Identity.MEMBER)
    session.flush()

    # A referral tree three levels deep: member1 → member2..4 → member5..10; member11/12 came via an outlet.
    uplines = {
        "member2": "member1", "member3": "member1", "member4": "member1",
        "member5": "member2", "member6": "member2", "member7": "member3",
        "member8": "member3", "member9": "member4", "member10": "member5",
        "member11": "outlet1", "member12": "outlet2",
    }
    # Joined over the last weeks, so the team board's "new members per week" chart has a shape.
    for index, (child, parent) in enumerate(uplines.items()):
        session.add(ReferralBinding(user_id=people[child].id, upline_id=people[parent].id, source="link",
                                    bound_at=utcnow() - timedelta(days=60 - index * 5)))
    for child in uplines:
        depth, ancestor = 1, uplines[child]
        while ancestor is not None:
            session.add(TeamPath(ancestor_id=people[ancestor].id, descendant_id=people[child].id, depth=depth))
            depth, ancestor = depth + 1, uplines.get(ancestor)
    return people


def _seed_catalog(session: Session, upload_folder: Path, font_file: str | None) -> list[Product]:
    categories = [Category(name=name, sort_order=index) for index, name in enumerate(CATEGORIES)]
    session.add_all(categories)
    session.flush()
    image_dir = upload_folder / "products"
    image_dir.mkdir(parents=True, exist_ok=True)
    products = []
    for index, (category_index, name, subtitle, price, colour) in enumerate(PRODUCTS):
        product = Product(
            category_id=categories[category_index].id,
            name=name,
            subtitle=subtitle,
            description=f"{name}\n{subtitle}\n\n顶俏家庭洗护，社区网点自提，买得放心，用得安心。",
            unit="件",
            member_price_fen=price,
            # Outlets buy at 80%, factory stores at 65% of the member price (floored to the fen).
            outlet_price_fen=price * 80 // 100,
            factory_price_fen=price * 65 // 100,
            sort_order=index,
        )
        session.add(product)
        session.flush()
        filename, thumb = f"products/demo-{product.id}.png", f"products/demo-{product.id}_t.png"
        _draw_product_image(image_dir.parent / filename, name, subtitle, colour, font_file,
                            thumb=image_dir.parent / thumb)
        session.add(ProductImage(product_id=product.id, path=filename, thumb_path=thumb, sort_order=0))
        products.append(product)
    return products


def _seed_network(session: Session, people: dict[str, User], products: list[Product]) -> list[Outlet]:
    regions = [Region(code=code, name=name) for code, name in REGIONS]
    session.add_all(regions)
    warehouse = StockLocation(kind=LocationKind.PLATFORM, name="平台总仓")
    factory_location = StockLocation(kind=LocationKind.FACTORY, name="西湖工厂店")
    session.add_all([warehouse, factory_location])
    session.flush()
    session.add(
        FactoryStore(
            region_id=regions[0].id, owner_user_id=people["factory"].id, location_id=factory_location.id,
            name="顶俏西湖工厂店", address="杭州市西湖区三墩镇振华路 200 号", phone="0571-88000000",
        )
    )
    outlets = []
    for index, (name, address, lat, lng, hours, phone) in enumerate(OUTLETS):
        location = StockLocation(kind=LocationKind.OUTLET, name=name)
        session.add(location)
        session.flush()
        outlet = Outlet(
            region_id=regions[0].id, owner_user_id=people[f"outlet{index + 1}"].id, location_id=location.id,
            name=name, address=address, latitude_e6=lat, longitude_e6=lng, opening_hours=hours, phone=phone,
        )
        session.add(outlet)
        outlets.append((outlet, location))
    for product_index, product in enumerate(products):
        _initial_stock(session, warehouse.id, product.id, 500)
        _initial_stock(session, factory_location.id, product.id, 120)
        for outlet_index, (_outlet, location) in enumerate(outlets):
            # Some gaps, so "has the goods" differs between outlets.
            quantity = 0 if (product_index + outlet_index) % 7 == 0 else 10 + (product_index * 3 + outlet_index) % 15
            _initial_stock(session, location.id, product.id, quantity, threshold=5)
    session.flush()
    return [outlet for outlet, _ in outlets]


def _initial_stock(session: Session, location_id: int, product_id: int, quantity: int, threshold: int = 10) -> None:
    session.add(StockLevel(location_id=location_id, product_id=product_id, on_hand=quantity, low_stock_threshold=threshold))
    if quantity:
        session.add(
            StockMovement(
                location_id=location_id, product_id=product_id, on_hand_delta=quantity,
                reason=StockReason.INITIAL, note="演示数据初始库存",
            )
        )


def _draw_product_image(path: Path, name: str, subtitle: str, colour: tuple[int, int, int], font_file: str | None,
                        *, thumb: Path):
    """A clean 600×600 product shot: a soft background, a bottle silhouette, the name when a CJK font exists; and
    at ``thumb`` the lists' small copy, as uploads make one."""
    size = 600
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    light = tuple(255 - (255 - c) // 6 for c in colour)
    for y in range(size):
        mix = y / size
        draw.line([(0, y), (size, y)], fill=tuple(int(light[i] * (1 - mix) + 255 * mix) for i in range(3)))
    # Bottle: cap, neck, body with a label.
    seed = int(hashlib.sha1(name.encode()).hexdigest()[:4], 16)
    body_w = 200 + seed % 60
    left = (size - body_w) // 2
    draw.rounded_rectangle([size // 2 - 34, 88, size // 2 + 34, 140], radius=10, fill=tuple(c * 3 // 4 for c in colour))
    draw.rectangle([size // 2 - 26, 136, size // 2 + 26, 170], fill=colour)
    draw.rounded_rectangle([left, 164, left + body_w, 470], radius=48, fill=colour)
    draw.rounded_rectangle([left + 22, 250, left + body_w - 22, 380], radius=14, fill=(255, 255, 255))
    if font_file:
        brand = ImageFont.truetype(font_file, 40)
        title = ImageFont.truetype(font_file, 34)
        small = ImageFont.truetype(font_file, 24)
        draw.text((size // 2, 292), "顶俏", font=brand, fill=colour, anchor="mm")
        draw.text((size // 2, 342), "DINGQIAO", font=small, fill=(120, 120, 120), anchor="mm")
        draw.text((size // 2, 518), name, font=title, fill=(40, 40, 40), anchor="mm")
        draw.text((size // 2, 562), subtitle, font=small, fill=(110, 110, 110), anchor="mm")
    image.save(path, "PNG", optimize=True)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    image.save(thumb, "PNG", optimize=True)


HISTORY_DAYS = 24  # how far back the demo's sales go: the admin dashboard's 30-day chart gets a shape


def seed_demo_history(session: Session) -> int:
    """A few weeks of trade on top of ``seed_demo``, made by the real services: members order at the outlets,
    pay (the payment is applied as a verified WeChat notification would be), and most pick up — so
    commissions are written and settled — then one member asks to withdraw. Only the dates are moved back
    afterwards, to spread the orders over the last weeks. Returns how many orders were made."""
    demo_merchant = WeChatSettings(app_id="demo-history", app_secret="", mch_id="demo-history")
    members = list(session.scalars(select(User).where(User.identity == Identity.MEMBER).order_by(User.id)))
    outlets = list(session.scalars(select(Outlet).order_by(Outlet.id)))
    orders = []
    for index in range(HISTORY_DAYS * 2):
        buyer, outlet = members[index % len(members)], outlets[index % len(outlets)]
        stocked = session.scalars(
            select(StockLevel.product_id).where(StockLevel.location_id == outlet.location_id,
                                                StockLevel.available > 2).order_by(StockLevel.product_id)
        ).all()
        product_id = stocked[(index * 7) % len(stocked)]
        order = place_order(session, buyer, outlet.id, {product_id: 1 + index % 2}, timeout_minutes=15, from_cart=False)
        apply_payment(session, demo_merchant, out_trade_no=order.order_no, transaction_id=f"demo{order.id:020d}",
                      total_fee=order.total_fen, mch_id="demo-history", appid="demo-history", raw={"demo": True})
        if index % 4:
            redeem(session, outlet.owner_user_id, session.scalar(select(Order.pickup_code).where(Order.id == order.id)))
        orders.append(order.id)
    with write_transaction(session):
        for index, person in enumerate(session.scalars(select(User).order_by(User.id))):
            person.created_at -= timedelta(days=60 - index * 2)  # joined over the weeks before buying
        days_back = random.Random(2026).choices(range(HISTORY_DAYS), k=len(orders))  # busier and quieter days
        for index, order_id in enumerate(orders):
            back = timedelta(days=days_back[index], hours=index % 5, minutes=7 + index * 17 % 50)
            # picked up a few hours to two days after paying, never later than now
            picked_up_after = min(timedelta(hours=2 + index * 7 % 46, minutes=index * 23 % 60), back / 2)
            order = session.get(Order, order_id)
            for column in ("created_at", "paid_at"):
                setattr(order, column, getattr(order, column) - back)
            if order.redeemed_at is not None:
                order.redeemed_at -= back - picked_up_after
            for line in session.scalars(select(CommissionLine).where(CommissionLine.order_id == order_id)):
                line.created_at -= back
                if line.settled_at is not None:
                    line.settled_at -= back - picked_up_after
            _date_order_messages(session, order)
        _date_other_messages(session)
    earner = session.scalar(select(Wallet).where(Wallet.available_fen >= 500).order_by(Wallet.available_fen.desc()))
    if earner is not None:
        half_in_whole_yuan = earner.available_fen // 2 // 100 * 100
        request_withdrawal(session, earner.user_id, half_in_whole_yuan, WithdrawalRules())
    return len(orders)


# The messages each event wrote, by deduplication key (services/settlement.py, services/commissions.py): they
# carry the time of their event, so the message centre reads like the weeks it tells about.
_PAID_EVENTS = ("order_paid", "commission_frozen")
_PICKUP_EVENTS = ("order_redeemed", "commission_settled")


def _date_order_messages(session: Session, order: Order) -> None:
    for message in session.scalars(select(OutboxMessage).where(or_(
            OutboxMessage.dedup_key.in_([f"{event}:{order.id}" for event in (*_PAID_EVENTS, *_PICKUP_EVENTS)]),
            *(OutboxMessage.dedup_key.startswith(f"{event}:{order.id}:") for event in (*_PAID_EVENTS, *_PICKUP_EVENTS))))):
        when = order.paid_at if message.event in _PAID_EVENTS else order.redeemed_at
        message.created_at = when


def _date_other_messages(session: Session) -> None:
    """Messages about no one order (可申请成为核销网点): dated with the member's last message before them."""
    dated = _PAID_EVENTS + _PICKUP_EVENTS
    for message in session.scalars(select(OutboxMessage).where(OutboxMessage.event.not_in(dated))):
        latest = session.scalar(select(func.max(OutboxMessage.created_at)).where(
            OutboxMessage.user_id == message.user_id, OutboxMessage.event.in_(dated),
            OutboxMessage.id < message.id))
        if latest is not None:
            message.created_at = latest + timedelta(minutes=1)
