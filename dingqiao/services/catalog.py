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

from ..db import row_as, rows_as, run, write_transaction
from ..models import (
    MONEY_REVIEWERS,
    AdminUser,
    Category,
    LocationKind,
    Outlet,
    Product,
    ProductImage,
    SiteStatus,
    StockLevel,
    StockLocation,
)
from ..money import format_yuan
from ..uploads import SavedImage
from . import DomainError, NotFound, cache_versions, NeedsHigherRole
from .audit import changed_fields, record_audit, snapshot
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
    most_at_one_outlet: int  # the most one outlet can hand over: a cart line or a buy-now is capped at it

    price_for = Product.price_for


@dataclass(frozen=True)
class ProductPage:
    products: list[ProductCard]
    available: dict[int, int]  # product id → units available at active outlets
    page: int
    has_more: bool


def _over_active_outlets(aggregate):
    """``aggregate`` (sum or max) of what active outlets can still hand over (on hand − reserved) of the product
    of the enclosing query, 0 when none has any. (A SUM is a numeric on Postgres: the cast keeps it an int.)"""
    return (
        select(cast(func.coalesce(aggregate(StockLevel.available), 0), BigInteger))
        .join(StockLocation, StockLocation.id == StockLevel.location_id)
        .join(Outlet, Outlet.location_id == StockLocation.id)
        .where(StockLevel.product_id == Product.id, StockLocation.kind == LocationKind.OUTLET,
               Outlet.status == SiteStatus.ACTIVE)
        .correlate(Product)
        .scalar_subquery()
    )


# Units members can still order, summed over active outlets (where pickup happens).
_AVAILABLE = _over_active_outlets(func.sum)
# The most units one active outlet can hand over (an order is picked up at one outlet, so this, not the sum,
# bounds what one order can hold).
_MOST_AT_ONE_OUTLET = _over_active_outlets(func.max)


def _first_image(column):
    """``column`` of the enclosing query's product's first picture (None without one)."""
    return (
        select(column).where(ProductImage.product_id == Product.id)
        .order_by(ProductImage.sort_order, ProductImage.id).limit(1)
        .correlate(Product).scalar_subquery()
    )


def _paged(query):
    return query.order_by(Product.sort_order, Product.id).offset(bindparam("offset")).limit(bindparam("limit"))


# A card's fields, each under its field's name (rows_as), and its available units.
_ON_SALE = select(
    Product.id, Product.category_id, Product.name, Product.subtitle, Product.member_price_fen,
    Product.outlet_price_fen, Product.factory_price_fen,
    _first_image(func.coalesce(ProductImage.thumb_path, ProductImage.path)).label("cover_thumb_path"),
    _AVAILABLE.label("available"),
).where(Product.is_on_sale.is_(True))
_PAGE = _paged(_ON_SALE)
_PAGE_OF_CATEGORY = _paged(_ON_SALE.where(Product.category_id == bindparam("category_id")))

# ProductDetail's fields, each under its field's name (row_as), and whether it is on sale.
_DETAIL = select(
    Product.id, Product.name, Product.subtitle, Product.description, Product.unit, Product.member_price_fen,
    Product.outlet_price_fen, Product.factory_price_fen, _first_image(ProductImage.path).label("cover_path"),
    _AVAILABLE.label("available"), _MOST_AT_ONE_OUTLET.label("most_at_one_outlet"), Product.is_on_sale,
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
    return ProductPage(rows_as(ProductCard, shown), {row.id: row.available for row in shown},
                       page, len(rows) > PAGE_SIZE)


def get_product(session: Session, product_id: int) -> ProductDetail:
    row = run(session, _DETAIL, {"product_id": product_id}).first()
    if row is None or not row.is_on_sale:
        raise NotFound("商品不存在或已下架。")
    return row_as(ProductDetail, row)


def available_units(session: Session, product_ids: list[int]) -> dict[int, int]:
    """Units that members can still order, summed over active outlets (where pickup happens)."""
    if not product_ids:
        return {}
    found = dict(session.execute(select(Product.id, _AVAILABLE).where(Product.id.in_(product_ids))).all())
    return {product_id: found.get(product_id, 0) for product_id in product_ids}


def most_at_one_outlet(session: Session, product_ids) -> dict[int, int]:
    """Per product, the most units one active outlet can hand over (0 where none has any)."""
    product_ids = list(product_ids)
    if not product_ids:
        return {}
    found = dict(session.execute(select(Product.id, _MOST_AT_ONE_OUTLET).where(Product.id.in_(product_ids))).all())
    return {product_id: found.get(product_id, 0) for product_id in product_ids}


# ---------------------------------------------------------------- the admin's side of the catalog

MAX_PRICE_FEN = 100_000_000  # ¥1,000,000: far above any wash-care product, low enough to catch a slipped key
MAX_PRODUCT_IMAGES = 9


class CatalogError(DomainError):
    pass


class PriceChangeNeedsFinance(CatalogError, NeedsHigherRole):
    """A change of what money comes in that only finance (or the superadmin) may make."""


@dataclass(frozen=True)
class TierPrices:
    """A product's three prices, each field named as the product's column it sets (read and written by name)."""

    member_price_fen: int
    outlet_price_fen: int
    factory_price_fen: int


PRICE_COLUMNS = ("member_price_fen", "outlet_price_fen", "factory_price_fen")
PRICE_LABELS = ("会员价", "网点价", "工厂店价")  # PRICE_COLUMNS' labels, in the same order


def parse_tier_prices(member: str | None, outlet: str | None, factory: str | None) -> TierPrices:
    """The three identity prices from what the admin typed in yuan. A factory store buys at or below an
    outlet and an outlet at or below a member — otherwise the upgrade would make goods dearer."""
    prices = []
    for label, raw in zip(PRICE_LABELS, (member, outlet, factory)):
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
    return TierPrices(member_price_fen=member_fen, outlet_price_fen=outlet_fen, factory_price_fen=factory_fen)


def change_bps(old_fen: int, new_fen: int) -> int:
    """How far a price moves, in basis points of the old one, rounded up (a move of 20.01 % is more than 20 %)."""
    return -(-abs(new_fen - old_fen) * 10_000 // old_fen)


def set_product_terms(session: Session, admin: AdminUser, product: Product, prices: TierPrices, *, on_sale: bool,
                      is_new: bool, operator_max_bps: int) -> None:
    """What a product sells at and whether it is on sale, as an admin sets them: the one place that decides
    who may, for the product form and the bulk on/off-sale actions alike. Joins the caller's write transaction.

    An operator may move each price by at most ``operator_max_bps`` of the current price, either way. A product
    an operator creates starts off sale and waits for finance: its prices were never checked against anything,
    and stock of it can be booked in by an operator, so it could otherwise be sold at any price. Until finance
    (or the superadmin) puts it on sale, the operator may still correct its prices freely — nobody can buy it.
    Refused with PriceChangeNeedsFinance, nothing written."""
    # No flush before the prices are set: a new product's row cannot be written without them.
    with write_transaction(session), session.no_autoflush:
        reviewer = admin.role in MONEY_REVIEWERS
        if is_new:
            product.price_review_pending = not reviewer
        else:
            # The prices the change is measured against, held until commit so two edits cannot add up unseen.
            session.refresh(product, [*PRICE_COLUMNS, "price_review_pending"], with_for_update=True)
            if not reviewer and not product.price_review_pending:
                too_far = [label for label, column in zip(PRICE_LABELS, PRICE_COLUMNS)
                           if change_bps(getattr(product, column), getattr(prices, column)) > operator_max_bps]
                if too_far:
                    raise PriceChangeNeedsFinance(f"{'、'.join(too_far)}调整超过 {operator_max_bps / 100:g}%"
                                                  "（与现价相比），需财务或超级管理员修改。")
            if on_sale and product.price_review_pending and not reviewer:
                raise PriceChangeNeedsFinance(_awaiting_review([product.name]))
        if on_sale and reviewer:
            product.price_review_pending = False
        for column in PRICE_COLUMNS:
            setattr(product, column, getattr(prices, column))
        product.is_on_sale = on_sale and not product.price_review_pending
        # Every product save comes through here (the product form and bulk on/off sale): the shop's cached
        # lists, product pages and banners are left behind in every worker when this commits.
        cache_versions.bump(session, cache_versions.CATALOG)


def set_products_on_sale(session: Session, admin: AdminUser, product_ids: list[int], on_sale: bool) -> int:
    """Put products on or off sale in bulk: each through ``set_product_terms`` at its current prices, so the
    same rule holds, and audited as an edit of that product. One refusal refuses the whole batch, nothing
    written. Returns how many changed."""
    changed = 0
    with write_transaction(session):
        for product in session.scalars(select(Product).where(Product.id.in_(product_ids)).order_by(Product.id)):
            before = snapshot(product)
            current = TierPrices(**{column: getattr(product, column) for column in PRICE_COLUMNS})
            set_product_terms(session, admin, product, current, on_sale=on_sale, is_new=False, operator_max_bps=0)
            changes = changed_fields(before, snapshot(product))
            if changes:
                record_audit(session, actor_kind="admin", actor_id=admin.id, action="products.update",
                             target_type="products", target_id=product.id, detail={"changes": changes})
                changed += 1
    return changed


def _awaiting_review(names: list[str]) -> str:
    return f"{'、'.join(f'「{name}」' for name in names)}需财务核价后才能上架（运营新建的商品由财务或超级管理员上架）。"


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
