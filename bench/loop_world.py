"""The world the whole-loop benchmarks trade in, built through the real services and test factories.

A ¥100 product stocked at many outlets spread over a few regions (each with a factory store, so every order
pays a regional fee), members who came in by a share link two levels under a root member (so every order
pays a direct and a team fee), the worked-example commission rule and the demo's identity-upgrade rule (so
every pickup also measures the buyer's purchases). Each outlet has its own owner: the redemption rate limit
(``REDEEM_RATE_PER_USER`` / ``_PER_OUTLET``, per worker in memory) counts per owner and per outlet, so the
HTTP loop spreads its pickups over the outlets instead of raising the limit.
"""
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dingqiao.extensions import db  # noqa: E402
from dingqiao.models import (  # noqa: E402
    AdminRole,
    BindingSource,
    CountsAt,
    FactoryStore,
    GrantMode,
    Identity,
    IdentityRuleVersion,
    LocationKind,
    StockLocation,
    UpgradeMetric,
    UpgradeTarget,
)
from dingqiao.services.accounts import create_admin  # noqa: E402
from dingqiao.services.commissions import create_rule_version  # noqa: E402
from dingqiao.services.referrals import bind_upline  # noqa: E402
from tests.factories import make_outlet, make_product, make_region, make_user, stock  # noqa: E402
from tests.money_world import WORKED_EXAMPLE_RULE  # noqa: E402

PRICE_FEN = 10_000
REGIONS = 4
SHARERS = 8
UNITS_PER_OUTLET = 1_000_000


@dataclass(frozen=True)
class Outlet:
    id: int
    owner_id: int


@dataclass(frozen=True)
class Buyer:
    id: int
    openid: str


@dataclass(frozen=True)
class LoopWorld:
    product_id: int
    outlets: list[Outlet]
    buyers: list[Buyer]


def build_loop_world(app, *, buyers: int, outlets: int) -> LoopWorld:
    with app.app_context():
        product = make_product(PRICE_FEN, name="¥100 套装")
        regions = []
        for number in range(REGIONS):
            region = make_region(f"区域{number}")
            factory = make_user(f"工厂店{number}", identity=Identity.FACTORY)
            location = StockLocation(kind=LocationKind.FACTORY, name=f"工厂仓{number}")
            db.session.add(location)
            db.session.flush()
            db.session.add(FactoryStore(region_id=region.id, owner_user_id=factory.id, location_id=location.id,
                                        name=f"工厂店{number}"))
            db.session.commit()
            regions.append(region)
        shops = []
        for number in range(outlets):
            owner = make_user(f"店主{number}", identity=Identity.OUTLET)
            outlet = make_outlet(owner, regions[number % REGIONS])
            stock(outlet, product, UNITS_PER_OUTLET)
            shops.append(Outlet(outlet.id, owner.id))
        root = make_user("团长")
        sharers = [make_user(f"分享者{n}") for n in range(SHARERS)]
        for sharer in sharers:
            bind_upline(db.session, sharer.id, root.referral_code, BindingSource.LINK)
        members = [make_user(f"顾客{n}") for n in range(buyers)]
        for number, member in enumerate(members):
            bind_upline(db.session, member.id, sharers[number % SHARERS].referral_code, BindingSource.LINK)
        finance = create_admin(db.session, "finance", "long-enough-pw", AdminRole.FINANCE)
        create_rule_version(db.session, finance, WORKED_EXAMPLE_RULE)
        db.session.add(IdentityRuleVersion(target=UpgradeTarget.OUTLET, metric=UpgradeMetric.GOODS_PURCHASES,
                                           threshold_fen=30_000, counts_at=CountsAt.REDEEMED,
                                           grant_mode=GrantMode.AUTO))
        db.session.commit()
        return LoopWorld(product.id, shops, [Buyer(member.id, member.openid) for member in members])
