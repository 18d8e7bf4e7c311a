"""Browsing the catalog: listing with category, keyword and paging; what can still be bought.

The shop's pages read products as plain values (``ProductCard``, ``ProductDetail``), not ORM objects: they are
cheaper to load, and the shop may keep them a few seconds and share them between threads. Their statements
are built once, here, with bound parameters, so SQLAlchemy reuses the compiled form without building and
hashing them again; each is one query, its stock and cover picture as correlated subqueries. They run on the
session's connection, past the ORM's bookkeeping (half the cost): they see what is committed or flushed.
"""
from dataclasses import dataclass

from sqlalchemy import BigInteger, bindparam, cast, func, or_, select
from sqlalchemy.orm import Session

from ..db import run
from ..models import Category, LocationKind, Outlet, Product, ProductImage, SiteStatus, StockLevel, StockLocation
from ..money import format_yuan
from ..uploads import SavedImage
from . import DomainError, NotFound
from .withdrawals import parse_yuan

PAGE_SIZE = 10
MAX_PAGE = 1000
MAX_KEYWORD_LENGTH = 32


@dataclass(frozen=True)
class ProductCard:
    """A product as a list shows it."""

    id: int
    category_id: int
    name: str
    subtitle: str
    member_price_fen: int
    outlet_price_fen: int
    factory_price_fen: int
    cover_thumb_path: str | None

    price_for = Product.price_for  # the same rule over the same three prices


@dataclass(frozen=True)
class ProductDetail:
    """A product as its own page shows it, with the units members can still order."""

    id: int
    name: str
    subtitle: str
    description: str
    unit: str
    member_price_fen: int
    outlet_price_fen: int
    factory_price_fen: int
    cover_path: str | None
    available: int

    price_for = Product.price_for


@dataclass(frozen=True)
class ProductPage:
    products: list[ProductCard]
    available: dict[int, int]  # product id → units available at active outlets
    page: int
    has_more: bool


# Units members can still order, summed over active outlets (where pickup happens), for the product of the
# enclosing query. (A SUM is a numeric on Postgres: the cast keeps it an int.)
_AVAILABLE = (
    select(cast(func.coalesce(func.sum(StockLevel.on_hand - StockLevel.reserved), 0), BigInteger))
    .join(StockLocation, StockLocation.id == StockLevel.location_id)
    .join(Outlet, Outlet.location_id == StockLocation.id)
    .where(StockLevel.product_id == Product.id, StockLocation.kind == LocationKind.OUTLET,
           Outlet.status == SiteStatus.ACTIVE)
    .correlate(Product)
    .scalar_subquery()
)


def _first_image(column):
    """``column`` of the enclosing query's product's first picture (None without one)."""
    return (
        select(column).where(ProductImage.product_id == Product.id)
        .order_by(ProductImage.sort_order, ProductImage.id).limit(1)
        .correlate(Product).scalar_subquery()
    )


def _paged(query):
    return query.order_by(Product.sort_order, Product.id).offset(bindparam("offset")).limit(bindparam("limit"))


# A card's fields in ProductCard's order, then its available units.
_ON_SALE = select(
    Product.id, Product.category_id, Product.name, Product.subtitle, Product.member_price_fen,
    Product.outlet_price_fen, Product.factory_price_fen,
    _first_image(func.coalesce(ProductImage.thumb_path, ProductImage.path)), _AVAILABLE.label("available"),
).where(Product.is_on_sale.is_(True))
_PAGE = _paged(_ON_SALE)
_PAGE_OF_CATEGORY = _paged(_ON_SALE.where(Product.category_id == bindparam("category_id")))

# ProductDetail's fields in order, then whether it is on sale.
_DETAIL = select(
    Product.id, Product.name, Product.subtitle, Product.description, Product.unit, Product.member_price_fen,
    Product.outlet_price_fen, Product.factory_price_fen, _first_image(ProductImage.path), _AVAILABLE,
    Product.is_on_sale,
).where(Product.id == bindparam("product_id"))

_ACTIVE_CATEGORIES = select(Category).where(Category.is_active.is_(True)).order_by(Category.sort_order, Category.id)


def active_categories(session: Session) -> list[Category]:
    return list(session.scalars(_ACTIVE_CATEGORIES))


def clean_keyword(raw: str | None) -> str:
    return " ".join((raw or "").split())[:MAX_KEYWORD_LENGTH]


def clamp_page(page: int | None) -> int:
    """A page number from the outside, within 1 … MAX_PAGE."""
    return min(max(1, page or 1), MAX_PAGE)


def _like_pattern(keyword: str) -> str:
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_products(session: Session, *, category_id: int | None = None, keyword: str = "", page: int = 1) -> ProductPage:
    """One page of products on sale, newest sort order first. Chinese keywords match by substring on the name
    and subtitle (a LIKE that works the same on SQLite and Postgres; the catalog is small)."""
    page = clamp_page(page)
    params = {"offset": (page - 1) * PAGE_SIZE, "limit": PAGE_SIZE + 1}
    if keyword:  # a statement of its own: one LIKE pair per word
        query = _ON_SALE.where(Product.category_id == category_id) if category_id else _ON_SALE
        for word in keyword.split():
            pattern = _like_pattern(word)
            query = query.where(or_(Product.name.ilike(pattern, escape="\\"),
                                    Product.subtitle.ilike(pattern, escape="\\")))
        query = _paged(query)
    elif category_id:
        query, params["category_id"] = _PAGE_OF_CATEGORY, category_id
    else:
        query = _PAGE
    rows = run(session, query, params).all()
    shown = rows[:PAGE_SIZE]
    return ProductPage([ProductCard(*row[:-1]) for row in shown], {row.id: row.available for row in shown},
                       page, len(rows) > PAGE_SIZE)


def get_product(session: Session, product_id: int) -> ProductDetail:
    row = run(session, _DETAIL, {"product_id": product_id}).first()
    if row is None or not row.is_on_sale:
        raise NotFound("商品不存在或已下架。")
    return ProductDetail(*row[:-1])


def available_units(session: Session, product_ids: list[int]) -> dict[int, int]:
    """Units that members can still order, summed over active outlets (where pickup happens)."""
    if not product_ids:
        return {}
    found = dict(session.execute(select(Product.id, _AVAILABLE).where(Product.id.in_(product_ids))).all())
    return {product_id: found.get(product_id, 0) for product_id in product_ids}


# ---------------------------------------------------------------- the admin's side of the catalog

MAX_PRICE_FEN = 100_000_000  # ¥1,000,000: far above any wash-care product, low enough to catch a slipped key
MAX_PRODUCT_IMAGES = 9


class CatalogError(DomainError):
    pass


@dataclass(frozen=True)
class TierPrices:
    member_fen: int
    outlet_fen: int
    factory_fen: int


def parse_tier_prices(member: str | None, outlet: str | None, factory: str | None) -> TierPrices:
    """The three identity prices from what the admin typed in yuan. A factory store buys at or below an
    outlet and an outlet at or below a member — otherwise the upgrade would make goods dearer."""
    prices = []
    for label, raw in (("会员价", member), ("网点价", outlet), ("工厂店价", factory)):
        try:
            fen = parse_yuan(raw)
        except DomainError:
            raise CatalogError(f"{label}：请输入正确的金额（元，最多两位小数）。") from None
        if not 0 < fen <= MAX_PRICE_FEN:
            raise CatalogError(f"{label}需大于 0 且不超过 {format_yuan(MAX_PRICE_FEN)}。")
        prices.append(fen)
    member_fen, outlet_fen, factory_fen = prices
    if not factory_fen <= outlet_fen <= member_fen:
        raise CatalogError("价格需满足：工厂店价 ≤ 网点价 ≤ 会员价。")
    return TierPrices(member_fen, outlet_fen, factory_fen)


def attach_images(session: Session, product: Product, saved: list[SavedImage]) -> None:
    """Add stored uploads (with their thumbnails) after the product's existing pictures."""
    if len(product.images) + len(saved) > MAX_PRODUCT_IMAGES:
        raise CatalogError(f"每个商品最多 {MAX_PRODUCT_IMAGES} 张图片。")
    next_order = max((image.sort_order for image in product.images), default=-1) + 1
    for offset, image in enumerate(saved):
        product.images.append(ProductImage(path=image.path, thumb_path=image.thumb_path,
                                           sort_order=next_order + offset))
    session.flush()


def detach_images(session: Session, product: Product, image_ids: set[int]) -> list[str]:
    """Remove the chosen pictures of this product (others' ids are ignored); returns the files to delete once
    the transaction has committed."""
    doomed = [image for image in product.images if image.id in image_ids]
    paths = []
    for image in doomed:
        paths += [image.path, *([image.thumb_path] if image.thumb_path else [])]
        product.images.remove(image)
        session.delete(image)
    session.flush()
    return paths
