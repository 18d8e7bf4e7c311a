"""Cart and checkout. Visitors may fill a cart (kept in the session); checkout needs a member.

立即购买 checks out one product without touching the cart: its line (``buy`` = product id, ``qty``) travels in
the checkout page's address, the outlet list's request and the order form."""
from urllib.parse import parse_qsl, urlsplit

from flask import Blueprint, current_app, redirect, request, session, url_for
from werkzeug.datastructures import MultiDict

from ...extensions import db, htmx
from ...forms import refuse
from ...services import cart as carts
from ...services.accounts import set_member_phone
from ...services.orders import place_order
from ...services.outlets import parse_position, pickup_options
from ...web import redirect_after_post, render_page
from ..common import current_member, require_member
from .forms import BuyNowArgs, CartAddForm, CartQuantityForm, CheckoutForm
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


@bp.get("/cart/")
def index():
    view = carts.view_cart(db.session, cart_quantities(), viewer_identity())
    return render_page("cart/index.html", block="cart_body", cart=view)


@bp.post("/cart/items")
def add():
    form = CartAddForm()
    if not form.validate():
        raise refuse(form)  # said in the product page's message area, right above its buy bar
    product_id, quantity = form.product_id.value, form.quantity.value
    if form.buy_now:  # 立即购买: this product only, the cart stays as it is
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
    form = CartQuantityForm()
    if not form.validate():
        raise refuse(form)  # the stepper's buttons carry the quantity: nothing typed to show again
    quantity = form.quantity.value
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
    buy = _buy_now(BuyNowArgs(request.args))
    view = carts.view_cart(db.session, buy or cart_quantities(), viewer_identity())
    if not view.lines:
        return redirect(url_for("shop.product", product_id=next(iter(buy))) if buy else url_for("cart.index"))
    return _checkout_page(view, buy, CheckoutForm(formdata=None), block=None)


@bp.get("/checkout/outlets")
def outlets():
    """The outlet list, nearest first once the page knows where the member is (browser or WeChat)."""
    if (guard := require_member()) is not None:
        return guard
    buy = _buy_now(BuyNowArgs(request.args if "buy" in request.args else _page_args()))
    view = carts.view_cart(db.session, buy or cart_quantities(), viewer_identity())
    position = parse_position(request.args.get("lat"), request.args.get("lng"))
    return render_page("cart/checkout.html", block="outlet_list", cart=view, buy=buy,
                       located=position is not None, needs_phone=False, **_pickup(view, position))


@bp.post("/checkout/")
def place():
    if (guard := require_member()) is not None:
        return guard
    member = current_member()
    form = CheckoutForm(needs_phone=not member.phone)
    form.validate()
    if form.buy.errors or form.qty.errors:  # hidden fields, from the address the page was opened with
        raise refuse(form)
    buy = carts.buy_now_line(db.session, *form.line) if form.line else None
    # The lines the member saw: a product taken off sale since is left in the cart, not ordered.
    shown = carts.view_cart(db.session, buy or cart_quantities(), viewer_identity())
    quantities = {line.product.id: line.quantity for line in shown.lines}
    if form.outlet_id.value is None:  # none chosen, or none could be: the service says which product is short
        form.outlet_id.errors = [carts.no_pickup_message(db.session, quantities)]
    if form.outlet_id.errors or form.phone.errors:
        return _checkout_page(shown, buy, form, status_code=400)
    if form.phone.value:  # asked once, at the first checkout; a number typed later replaces it
        set_member_phone(db.session, member.id, form.phone.value)
    order = place_order(db.session, member, form.outlet_id.value, quantities,
                        timeout_minutes=current_app.config["ORDER_PAYMENT_TIMEOUT_MINUTES"], from_cart=buy is None,
                        submission_key=form.key)
    return redirect_after_post(url_for("orders.detail", order_no=order.order_no), 302)


def _checkout_page(view: carts.CartView, buy: dict[int, int] | None, form: CheckoutForm, *,
                   block: str | None = "checkout_form", status_code: int = 200):
    """确认订单, whole or (htmx, after a refusal) the order form's inside, each refusal under its field."""
    return render_page("cart/checkout.html", block=block, status_code=status_code, cart=view, buy=buy,
                       located=False, needs_phone=not current_member().phone, form=form, **_pickup(view))


def _buy_now(form: BuyNowArgs) -> dict[int, int] | None:
    """The 立即购买 line of a checkout page (``buy``, ``qty``), or None for the cart's checkout. The order form
    checks it like a cart line (buy_now_line: on sale, within the line limit and what one outlet has), so an
    address typed by hand cannot order past the cap the product page shows."""
    if not form.validate():
        raise refuse(form)
    if form.line is None:
        return None
    product_id, quantity = form.line
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
