"""The cart. A member's cart lives in the database; a visitor's is a {product id: quantity} mapping kept in
the session by the view, checked by the same rules here and merged into the member's cart at login."""
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from ..db import run, write_transaction
from ..models import CartItem, Identity, Outlet, Product, SiteStatus, StockLevel
from . import DomainError, NotFound
from .catalog import most_at_one_outlet

MAX_LINE_QUANTITY = 99
MAX_LINES = 30
AT_LEAST_ONE = "数量至少为 1 件。"
OUTLETS_SUGGESTED = 3  # outlets named for a product the member's outlets are short of


class CartError(DomainError):
    pass


@dataclass(frozen=True)
class CartLine:
    product: Product
    quantity: int
    unit_price_fen: int
    max_quantity: int = MAX_LINE_QUANTITY  # what the best outlet can hand over (line_cap)

    @property
    def subtotal_fen(self) -> int:
        return self.unit_price_fen * self.quantity

    @property
    def at_cap(self) -> bool:
        return self.quantity >= self.max_quantity


@dataclass(frozen=True)
class CartView:
    lines: list[CartLine]
    identity: Identity

    @property
    def total_fen(self) -> int:
        return sum(line.subtotal_fen for line in self.lines)

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)


def parse_quantity(raw) -> int:
    """A typed or stepped quantity: 0 … MAX_LINE_QUANTITY (0 removes a cart line; adding needs at least 1)."""
    text = str(raw if raw is not None else "").strip()
    # ASCII digits only: int() would also take "1_0", " ²" or "１０".
    if text[:1] == "-" and text[1:].isascii() and text[1:].isdigit():
        raise CartError(AT_LEAST_ONE)
    if not text.isascii() or not text.isdigit():
        raise CartError("请输入正确的数量。")
    if len(text) > 3 or int(text) > MAX_LINE_QUANTITY:
        raise CartError(f"每件商品的数量需在 1 到 {MAX_LINE_QUANTITY} 之间。")
    return int(text)


def line_cap(most_at_one_outlet: int) -> int:
    """What one line may hold: an order is picked up at one outlet, so at most what the best one can hand over."""
    return max(0, min(MAX_LINE_QUANTITY, most_at_one_outlet))


# Prebuilt (see db.run): every cart change and checkout runs these.
_ON_SALE = select(Product.is_on_sale).where(Product.id == bindparam("product_id"))
_LINES = select(CartItem.product_id, CartItem.quantity).where(CartItem.user_id == bindparam("user_id"))
_SET_LINE = (update(CartItem).where(CartItem.user_id == bindparam("owner"), CartItem.product_id == bindparam("product"))
             .values(quantity=bindparam("units")))
_ADD_LINE = insert(CartItem)
_PRICED = (select(Product).where(Product.id.in_(bindparam("ids", expanding=True)), Product.is_on_sale.is_(True))
           .options(selectinload(Product.images)))


def _require_on_sale(session: Session, product_id: int) -> None:
    if not run(session, _ON_SALE, {"product_id": product_id}).scalar():
        raise NotFound("商品不存在或已下架。")


def view_cart(session: Session, quantities: dict[int, int], identity: Identity) -> CartView:
    """Priced lines at the viewer's identity price. Products taken off sale drop out of the view."""
    if not quantities:
        return CartView([], identity)
    products = session.execute(_PRICED, {"ids": list(quantities)}).scalars()
    by_id = {p.id: p for p in products}
    most = most_at_one_outlet(session, by_id)
    lines = [
        CartLine(by_id[pid], qty, by_id[pid].price_for(identity), line_cap(most[pid]))
        for pid, qty in quantities.items() if pid in by_id
    ]
    return CartView(sorted(lines, key=lambda line: line.product.sort_order), identity)


def member_cart(session: Session, user_id: int) -> dict[int, int]:
    return dict(run(session, _LINES, {"user_id": user_id}).all())


def add_to_member_cart(session: Session, user_id: int, product_id: int, quantity: int, *,
                       check_stock: bool = False) -> int:
    """Add ``quantity`` to the line; returns the line's new quantity. With ``check_stock`` (the shop's pages)
    the line may not grow past what the best outlet can hand over."""
    if quantity < 1:
        raise CartError(AT_LEAST_ONE)
    try:
        with write_transaction(session):
            _require_on_sale(session, product_id)
            current = member_cart(session, user_id)
            new_quantity = current.get(product_id, 0) + quantity
            _check_limits(current, product_id, new_quantity)
            if check_stock:
                _check_stock(session, product_id, new_quantity, current.get(product_id, 0))
            _store_line(session, user_id, product_id, new_quantity, exists=product_id in current)
    except IntegrityError:
        session.rollback()
        raise CartError("操作太快了，请重试。") from None
    return new_quantity


def set_member_cart_quantity(session: Session, user_id: int, product_id: int, quantity: int, *,
                             check_stock: bool = False) -> None:
    """Set the line to ``quantity``; 0 removes it. With ``check_stock`` it may go down but not up past what
    the best outlet can hand over (stock may have fallen below a line since it was added)."""
    with write_transaction(session):
        if quantity == 0:
            session.execute(delete(CartItem).where(CartItem.user_id == user_id, CartItem.product_id == product_id))
            return
        _require_on_sale(session, product_id)
        current = member_cart(session, user_id)
        _check_limits(current, product_id, quantity)
        if check_stock:
            _check_stock(session, product_id, quantity, current.get(product_id, 0))
        _store_line(session, user_id, product_id, quantity, exists=product_id in current)


def add_to_guest_cart(session: Session, cart: dict[int, int], product_id: int, quantity: int, *,
                      check_stock: bool = False) -> dict[int, int]:
    """The same rules for a visitor's cart; returns the new mapping (the caller stores it in the session)."""
    if quantity < 1:
        raise CartError(AT_LEAST_ONE)
    _require_on_sale(session, product_id)
    new_quantity = cart.get(product_id, 0) + quantity
    _check_limits(cart, product_id, new_quantity)
    if check_stock:
        _check_stock(session, product_id, new_quantity, cart.get(product_id, 0))
    return {**cart, product_id: new_quantity}


def set_guest_cart_quantity(session: Session, cart: dict[int, int], product_id: int, quantity: int, *,
                            check_stock: bool = False) -> dict[int, int]:
    if quantity == 0:
        return {pid: qty for pid, qty in cart.items() if pid != product_id}
    _require_on_sale(session, product_id)
    _check_limits(cart, product_id, quantity)
    if check_stock:
        _check_stock(session, product_id, quantity, cart.get(product_id, 0))
    return {**cart, product_id: quantity}


def stepped_quantity(raw: str | None, step: str | None, cap: int) -> tuple[int, str]:
    """The product page's stepper: the typed quantity moved by ``step`` ("1" / "-1"), kept within 1 … ``cap``;
    with the reason when it was held back."""
    text = (raw or "1").strip()
    negative = text[:1] == "-"
    digits = text[1:] if negative else text
    if not digits.isascii() or not digits.isdigit():
        return 1, "请输入正确的数量。"
    quantity = (0 if negative else int(digits[:6])) + {"1": 1, "-1": -1}.get(step or "", 0)
    if cap >= 1 and quantity > cap:
        return cap, f"最多可购 {cap} 件"
    if quantity < 1:
        return 1, AT_LEAST_ONE.rstrip("。")
    return quantity, ""


def buy_now_line(session: Session, product_id: int, quantity: int) -> dict[int, int]:
    """立即购买: the one line a buy-now checkout orders, checked like a cart line; the cart is not touched."""
    if quantity < 1:
        raise CartError(AT_LEAST_ONE)
    _require_on_sale(session, product_id)
    _check_limits({}, product_id, quantity)
    _check_stock(session, product_id, quantity, 0)
    return {product_id: quantity}


def merge_guest_cart(session: Session, user_id: int, guest: dict[int, int]) -> None:
    """At login the visitor's lines join the member's cart; quantities add up to the line limit."""
    if not guest:
        return
    with write_transaction(session):
        current = member_cart(session, user_id)
        on_sale = set(session.scalars(select(Product.id).where(Product.id.in_(guest), Product.is_on_sale.is_(True))))
        for product_id, quantity in guest.items():
            if product_id not in on_sale or (product_id not in current and len(current) >= MAX_LINES):
                continue
            merged = min(MAX_LINE_QUANTITY, current.get(product_id, 0) + quantity)
            _store_line(session, user_id, product_id, merged, exists=product_id in current)
            current[product_id] = merged


def _check_limits(cart: dict[int, int], product_id: int, quantity: int) -> None:
    if quantity > MAX_LINE_QUANTITY:
        raise CartError(f"每件商品最多购买 {MAX_LINE_QUANTITY} 件。")
    if product_id not in cart and len(cart) >= MAX_LINES:
        raise CartError(f"购物车最多放 {MAX_LINES} 种商品。")


def _check_stock(session: Session, product_id: int, quantity: int, current: int) -> None:
    """A line may shrink, but not grow past what the best outlet can hand over."""
    if quantity <= current:
        return
    cap = line_cap(most_at_one_outlet(session, [product_id])[product_id])
    if quantity <= cap:
        return
    name = session.scalar(select(Product.name).where(Product.id == product_id))
    if cap == 0:
        raise CartError(f"{name}已售罄，门店补货中。")
    already = f"（购物车已有 {current} 件）" if current else ""
    raise CartError(f"{name}最多可购 {cap} 件{already}。")


# ---------------------------------------------------------------- stock at checkout

@dataclass(frozen=True)
class Shortage:
    """A product that not every listed outlet can hand over in the quantity ordered."""

    product_id: int
    name: str
    quantity: int
    most_at_one_outlet: int
    outlets: list[tuple[str, int]]  # (name, units available) of active outlets that have enough, most first

    @property
    def nowhere(self) -> bool:
        return self.most_at_one_outlet < self.quantity


@dataclass(frozen=True)
class PickupStock:
    missing: dict[int, list[str]]  # outlet id → names of the products it is short of
    shortages: list[Shortage]


def pickup_stock(session: Session, quantities: dict[int, int], outlets: list[Outlet]) -> PickupStock:
    """What the listed pickup outlets are short of, and for each product some of them lack, the outlets that
    do have it (so the member can change outlet, or lower a quantity that no outlet has)."""
    if not quantities:
        return PickupStock({}, [])
    names = dict(session.execute(select(Product.id, Product.name).where(Product.id.in_(quantities))).all())
    levels = {(location_id, product_id): available for location_id, product_id, available in session.execute(
        select(StockLevel.location_id, StockLevel.product_id, StockLevel.available)
        .where(StockLevel.location_id.in_([o.location_id for o in outlets]), StockLevel.product_id.in_(quantities)))}
    missing = {}
    short_products = set()
    for outlet in outlets:
        lacking = [pid for pid in sorted(quantities) if levels.get((outlet.location_id, pid), 0) < quantities[pid]]
        if lacking:
            missing[outlet.id] = [names.get(pid, "") for pid in lacking]
            short_products.update(lacking)
    if not outlets:
        short_products = set(quantities)
    most = most_at_one_outlet(session, short_products)
    shortages = []
    for product_id in sorted(short_products):
        having = session.execute(
            select(Outlet.name, StockLevel.available)
            .join(StockLevel, StockLevel.location_id == Outlet.location_id)
            .where(Outlet.status == SiteStatus.ACTIVE, StockLevel.product_id == product_id,
                   StockLevel.available >= quantities[product_id])
            .order_by(StockLevel.available.desc(), Outlet.id).limit(OUTLETS_SUGGESTED)
        ).all()
        shortages.append(Shortage(product_id, names.get(product_id, ""), quantities[product_id], most[product_id],
                                  [(name, units) for name, units in having]))
    return PickupStock(missing, shortages)


def no_pickup_message(session: Session, quantities: dict[int, int]) -> str:
    """Why the member may have had no outlet to choose: each product no outlet has in that quantity, named."""
    short = [s for s in pickup_stock(session, quantities, []).shortages if s.nowhere]
    if not short:
        return "请选择自提门店。"
    return "；".join(f"{s.name}单店最多可提 {s.most_at_one_outlet} 件" if s.most_at_one_outlet
                    else f"{s.name}暂时缺货" for s in short) + "，请减少数量后再提交。"


def _store_line(session: Session, user_id: int, product_id: int, quantity: int, *, exists: bool) -> None:
    if exists:
        run(session, _SET_LINE, {"owner": user_id, "product": product_id, "units": quantity})
    else:
        run(session, _ADD_LINE, {"user_id": user_id, "product_id": product_id, "quantity": quantity})
