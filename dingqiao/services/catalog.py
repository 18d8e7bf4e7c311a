"""Browsing the catalog: listing with category, keyword and paging; what can still be bought."""
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from ..models import Category, LocationKind, Outlet, Product, ProductImage, SiteStatus, StockLevel, StockLocation
from ..money import format_yuan
from ..uploads import SavedImage
from . import DomainError, NotFound
from .withdrawals import parse_yuan

PAGE_SIZE = 10
MAX_PAGE = 1000
MAX_KEYWORD_LENGTH = 32


@dataclass(frozen=True)
class ProductPage:
    products: list[Product]
    available: dict[int, int]  # product id → units available at active outlets
    page: int
    has_more: bool


def active_categories(session: Session) -> list[Category]:
    return list(
        session.scalars(select(Category).where(Category.is_active.is_(True)).order_by(Category.sort_order, Category.id))
    )


def clean_keyword(raw: str | None) -> str:
    return " ".join((raw or "").split())[:MAX_KEYWORD_LENGTH]


def _like_pattern(keyword: str) -> str:
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_products(session: Session, *, category_id: int | None = None, keyword: str = "", page: int = 1) -> ProductPage:
    """One page of products on sale, newest sort order first. Chinese keywords match by substring on the name
    and subtitle (a LIKE that works the same on SQLite and Postgres; the catalog is small)."""
    page = min(max(1, page), MAX_PAGE)
    query = select(Product).where(Product.is_on_sale.is_(True)).options(selectinload(Product.images))
    if category_id:
        query = query.where(Product.category_id == category_id)
    for word in keyword.split():
        pattern = _like_pattern(word)
        query = query.where(or_(Product.name.ilike(pattern, escape="\\"), Product.subtitle.ilike(pattern, escape="\\")))
    rows = list(
        session.scalars(query.order_by(Product.sort_order, Product.id).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1))
    )
    products = rows[:PAGE_SIZE]
    return ProductPage(products, available_units(session, [p.id for p in products]), page, len(rows) > PAGE_SIZE)


def get_product(session: Session, product_id: int) -> Product:
    product = session.scalar(select(Product).where(Product.id == product_id).options(selectinload(Product.images)))
    if product is None or not product.is_on_sale:
        raise NotFound("商品不存在或已下架。")
    return product


def available_units(session: Session, product_ids: list[int]) -> dict[int, int]:
    """Units that members can still order, summed over active outlets (where pickup happens)."""
    if not product_ids:
        return {}
    rows = session.execute(
        select(StockLevel.product_id, func.sum(StockLevel.on_hand - StockLevel.reserved))
        .join(StockLocation, StockLocation.id == StockLevel.location_id)
        .join(Outlet, Outlet.location_id == StockLocation.id)
        .where(
            StockLevel.product_id.in_(product_ids),
            StockLocation.kind == LocationKind.OUTLET,
            Outlet.status == SiteStatus.ACTIVE,
        )
        .group_by(StockLevel.product_id)
    )
    found = {product_id: int(units or 0) for product_id, units in rows}
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
