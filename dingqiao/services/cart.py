"""The cart. A member's cart lives in the database; a visitor's is a {product id: quantity} mapping kept in
the session by the view, checked by the same rules here and merged into the member's cart at login."""
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from ..db import run, write_transaction
from ..models import CartItem, Identity, Product
from . import DomainError, NotFound

MAX_LINE_QUANTITY = 99
MAX_LINES = 30


class CartError(DomainError):
    pass


@dataclass(frozen=True)
class CartLine:
    product: Product
    quantity: int
    unit_price_fen: int

    @property
    def subtotal_fen(self) -> int:
        return self.unit_price_fen * self.quantity


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
    text = str(raw if raw is not None else "").strip()
    # ASCII digits only: int() would also take "1_0", " ²" or "１０".
    if not text.isascii() or not text.isdigit() or len(text) > 3:
        raise CartError("请输入正确的数量。")
    quantity = int(text)
    if quantity > MAX_LINE_QUANTITY:
        raise CartError(f"每件商品的数量需在 1 到 {MAX_LINE_QUANTITY} 之间。")
    return quantity


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
    lines = [
        CartLine(by_id[pid], qty, by_id[pid].price_for(identity)) for pid, qty in quantities.items() if pid in by_id
    ]
    return CartView(sorted(lines, key=lambda line: line.product.sort_order), identity)


def member_cart(session: Session, user_id: int) -> dict[int, int]:
    return dict(run(session, _LINES, {"user_id": user_id}).all())


def add_to_member_cart(session: Session, user_id: int, product_id: int, quantity: int) -> int:
    """Add ``quantity`` to the line; returns the line's new quantity."""
    if quantity < 1:
        raise CartError("请输入正确的数量。")
    try:
        with write_transaction(session):
            _require_on_sale(session, product_id)
            current = member_cart(session, user_id)
            new_quantity = current.get(product_id, 0) + quantity
            _check_limits(current, product_id, new_quantity)
            _store_line(session, user_id, product_id, new_quantity, exists=product_id in current)
    except IntegrityError:
        session.rollback()
        raise CartError("操作太快了，请重试。") from None
    return new_quantity


def set_member_cart_quantity(session: Session, user_id: int, product_id: int, quantity: int) -> None:
    """Set the line to ``quantity``; 0 removes it."""
    with write_transaction(session):
        if quantity == 0:
            session.execute(delete(CartItem).where(CartItem.user_id == user_id, CartItem.product_id == product_id))
            return
        _require_on_sale(session, product_id)
        current = member_cart(session, user_id)
        _check_limits(current, product_id, quantity)
        _store_line(session, user_id, product_id, quantity, exists=product_id in current)


def add_to_guest_cart(session: Session, cart: dict[int, int], product_id: int, quantity: int) -> dict[int, int]:
    """The same rules for a visitor's cart; returns the new mapping (the caller stores it in the session)."""
    if quantity < 1:
        raise CartError("请输入正确的数量。")
    _require_on_sale(session, product_id)
    new_quantity = cart.get(product_id, 0) + quantity
    _check_limits(cart, product_id, new_quantity)
    return {**cart, product_id: new_quantity}


def set_guest_cart_quantity(session: Session, cart: dict[int, int], product_id: int, quantity: int) -> dict[int, int]:
    if quantity == 0:
        return {pid: qty for pid, qty in cart.items() if pid != product_id}
    _require_on_sale(session, product_id)
    _check_limits(cart, product_id, quantity)
    return {**cart, product_id: quantity}


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


def _store_line(session: Session, user_id: int, product_id: int, quantity: int, *, exists: bool) -> None:
    if exists:
        run(session, _SET_LINE, {"owner": user_id, "product": product_id, "units": quantity})
    else:
        run(session, _ADD_LINE, {"user_id": user_id, "product_id": product_id, "quantity": quantity})
