"""Cart and checkout. Visitors may fill a cart (kept in the session); checkout needs a member."""
from flask import Blueprint, current_app, redirect, request, session, url_for

from ..extensions import db, htmx
from ..services import cart as carts
from ..services.accounts import set_member_phone
from ..services.orders import place_order
from ..services.outlets import parse_position, pickup_options
from ..web import parse_id, redirect_after_post, render_page
from .access import current_member, require_member
from .shop import viewer_identity

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
    member = current_member()
    if member:
        carts.add_to_member_cart(db.session, member.id, product_id, quantity)
    else:
        _keep_guest_cart(carts.add_to_guest_cart(db.session, guest_cart(), product_id, quantity))
    if request.form.get("then") == "checkout":
        return redirect_after_post(url_for("cart.checkout"), 302)
    if htmx:
        count = sum(cart_quantities().values())
        return render_page("cart/_added.html", count=count)
    return redirect(url_for("cart.index"))


@bp.post("/cart/items/<int:product_id>")
def update(product_id: int):
    quantity = carts.parse_quantity(request.form.get("quantity", "0"))
    member = current_member()
    if member:
        carts.set_member_cart_quantity(db.session, member.id, product_id, quantity)
    else:
        _keep_guest_cart(carts.set_guest_cart_quantity(db.session, guest_cart(), product_id, quantity))
    view = carts.view_cart(db.session, cart_quantities(), viewer_identity())
    if htmx:
        return render_page("cart/index.html", block="cart_body", cart=view)
    return redirect(url_for("cart.index"))


@bp.get("/checkout/")
def checkout():
    if (guard := require_member()) is not None:
        return guard
    view = carts.view_cart(db.session, cart_quantities(), viewer_identity())
    if not view.lines:
        return redirect(url_for("cart.index"))
    return render_page("cart/checkout.html", cart=view, options=_options(view), located=False,
                       needs_phone=not current_member().phone)


@bp.get("/checkout/outlets")
def outlets():
    """The outlet list, nearest first once the page knows where the member is (browser or WeChat)."""
    if (guard := require_member()) is not None:
        return guard
    view = carts.view_cart(db.session, cart_quantities(), viewer_identity())
    position = parse_position(request.args.get("lat"), request.args.get("lng"))
    return render_page("cart/checkout.html", block="outlet_list", cart=view, options=_options(view, position),
                       located=position is not None, needs_phone=False)


@bp.post("/checkout/")
def place():
    if (guard := require_member()) is not None:
        return guard
    outlet_id = parse_id(request.form.get("outlet_id"))
    if outlet_id is None:
        raise carts.CartError("请选择自提门店。")
    if not current_member().phone or request.form.get("phone"):  # asked once, at the first checkout
        set_member_phone(db.session, current_member().id, request.form.get("phone"))
    # The lines the member saw: a product taken off sale since is left in the cart, not ordered.
    shown = carts.view_cart(db.session, cart_quantities(), viewer_identity())
    order = place_order(db.session, current_member(), outlet_id,
                        {line.product.id: line.quantity for line in shown.lines},
                        timeout_minutes=current_app.config["ORDER_PAYMENT_TIMEOUT_MINUTES"])
    return redirect_after_post(url_for("orders.detail", order_no=order.order_no), 302)


def _options(view: carts.CartView, position=None):
    quantities = {line.product.id: line.quantity for line in view.lines}
    return pickup_options(db.session, quantities, position)
