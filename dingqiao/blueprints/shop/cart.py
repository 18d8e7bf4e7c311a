"""Cart and checkout. Visitors may fill a cart (kept in the session); checkout needs a member.

立即购买 checks out one product without touching the cart: its line (``buy`` = product id, ``qty``) travels in
the checkout page's address, the outlet list's request and the order form."""
from urllib.parse import parse_qsl, urlsplit

from flask import Blueprint, current_app, redirect, request, session, url_for
from werkzeug.datastructures import MultiDict

from ...extensions import db, htmx
from ...services import cart as carts
from ...services.accounts import set_member_phone
from ...services.orders import place_order
from ...services.outlets import parse_position, pickup_options
from ...web import parse_id, redirect_after_post, render_page
from ..common import current_member, require_member
from .routes import viewer_identity

bp = Blueprint("cart", __name__)

GUEST_CART_KEY = "cart"


def guest_cart() -> dict[int, int]:
    return {int(pid): int(qty) for pid, qty in session.get(GUEST_CART_KEY, {}).items()}


def _keep_guest_cart(cart: dict[int, int]) -> None:
    session[GUEST_CART_KEY] = {str(pid): qty for pid, qty in cart.items()}  # session keys must be strings


def cart_quantities() -> dict[int, int]:
    member = current_member()
    return carts.member_cart(db.session, member.id) if member else guest_cart()


def _product_id() -> int:
    product_id = parse_id(request.form.get("product_id"))
    if product_id is None:
        raise carts.CartError("请选择商品。")
    return product_id


@bp.get("/cart/")
def index():
    view = carts.view_cart(db.session, cart_quantities(), viewer_identity())
    return render_page("cart/index.html", block="cart_body", cart=view)


@bp.post("/cart/items")
def add():
    product_id, quantity = _product_id(), carts.parse_quantity(request.form.get("quantity", "1"))
    if request.form.get("then") == "checkout":  # 立即购买: this product only, the cart stays as it is
        carts.buy_now_line(db.session, product_id, quantity)
        return redirect_after_post(url_for("cart.checkout", buy=product_id, qty=quantity), 302)
    member = current_member()
    if member:
        carts.add_to_member_cart(db.session, member.id, product_id, quantity, check_stock=True)
    else:
        _keep_guest_cart(carts.add_to_guest_cart(db.session, guest_cart(), product_id, quantity, check_stock=True))
    if htmx:
        count = sum(cart_quantities().values())
        return render_page("cart/_added.html", count=count)
    return redirect(url_for("cart.index"))


@bp.post("/cart/items/<int:product_id>")
def update(product_id: int):
    quantity = carts.parse_quantity(request.form.get("quantity", "0"))
    member = current_member()
    if member:
        carts.set_member_cart_quantity(db.session, member.id, product_id, quantity, check_stock=True)
    else:
        _keep_guest_cart(carts.set_guest_cart_quantity(db.session, guest_cart(), product_id, quantity,
                                                       check_stock=True))
    view = carts.view_cart(db.session, cart_quantities(), viewer_identity())
    if htmx:
        return render_page("cart/index.html", block="cart_body", cart=view)
    return redirect(url_for("cart.index"))


@bp.get("/checkout/")
def checkout():
    if (guard := require_member()) is not None:
        return guard
    buy = _buy_now(request.args)
    view = carts.view_cart(db.session, buy or cart_quantities(), viewer_identity())
    if not view.lines:
        return redirect(url_for("shop.product", product_id=next(iter(buy))) if buy else url_for("cart.index"))
    return render_page("cart/checkout.html", cart=view, buy=buy, located=False,
                       needs_phone=not current_member().phone, **_pickup(view))


@bp.get("/checkout/outlets")
def outlets():
    """The outlet list, nearest first once the page knows where the member is (browser or WeChat)."""
    if (guard := require_member()) is not None:
        return guard
    buy = _buy_now(request.args if "buy" in request.args else _page_args())
    view = carts.view_cart(db.session, buy or cart_quantities(), viewer_identity())
    position = parse_position(request.args.get("lat"), request.args.get("lng"))
    return render_page("cart/checkout.html", block="outlet_list", cart=view, buy=buy,
                       located=position is not None, needs_phone=False, **_pickup(view, position))


@bp.post("/checkout/")
def place():
    if (guard := require_member()) is not None:
        return guard
    buy = _buy_now(request.form, placing=True)
    outlet_id = parse_id(request.form.get("outlet_id"))
    # The lines the member saw: a product taken off sale since is left in the cart, not ordered.
    shown = carts.view_cart(db.session, buy or cart_quantities(), viewer_identity())
    quantities = {line.product.id: line.quantity for line in shown.lines}
    if outlet_id is None:
        raise carts.CartError(carts.no_pickup_message(db.session, quantities))
    if not current_member().phone or request.form.get("phone"):  # asked once, at the first checkout
        set_member_phone(db.session, current_member().id, request.form.get("phone"))
    order = place_order(db.session, current_member(), outlet_id, quantities,
                        timeout_minutes=current_app.config["ORDER_PAYMENT_TIMEOUT_MINUTES"], from_cart=buy is None,
                        submission_key=request.form.get("submission_key"))
    return redirect_after_post(url_for("orders.detail", order_no=order.order_no), 302)


def _buy_now(values, *, placing: bool = False) -> dict[int, int] | None:
    """The 立即购买 line of a checkout (``buy``, ``qty``), or None for the cart's checkout. When ``placing``, the
    line is checked like a cart line (on sale, within the line limit and what one outlet has): an address typed
    by hand cannot order past the cap the product page shows."""
    if values.get("buy") is None:
        return None
    product_id, quantity = parse_id(values.get("buy")), carts.parse_quantity(values.get("qty", "1"))
    if product_id is None:
        raise carts.CartError("请选择商品。")
    if placing:
        return carts.buy_now_line(db.session, product_id, quantity)
    if quantity < 1:
        raise carts.CartError(carts.AT_LEAST_ONE)
    return {product_id: quantity}


def _page_args() -> MultiDict:
    """The query of the page an htmx request came from: the outlet list is asked for by app.js with only the
    position, so a buy-now page's line is read from its own address."""
    return MultiDict(parse_qsl(urlsplit(request.headers.get("HX-Current-URL", "")).query))


def _pickup(view: carts.CartView, position=None) -> dict:
    quantities = {line.product.id: line.quantity for line in view.lines}
    options = pickup_options(db.session, quantities, position)
    return {"options": options, "stock": carts.pickup_stock(db.session, quantities, [o.outlet for o in options])}
