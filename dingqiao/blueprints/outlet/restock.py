"""进货单 for outlets and factory stores: place an order with the supplier, ship (the supplier, in parts if
need be), confirm receipt, cancel before shipping. The platform's side (factory stores restocking from the
platform) is in the admin pages."""
from flask import Blueprint, abort, g, render_template, request, url_for
from sqlalchemy import select

from ...extensions import db
from ...models import Product, StockLevel
from ...services import Forbidden
from ...services.restock import (
    RestockPreview,
    cancel_restock,
    location_name,
    parse_quantities,
    party_for_user,
    place_restock,
    preview_restock,
    receive_restock,
    restock_for,
    restocks_of,
    ship_restock,
    supplier_location_id,
)
from ...web import html_response, redirect_after_post, render_page
from ..common import current_member, require_member

bp = Blueprint("restock", __name__, url_prefix="/restock")


@bp.before_request
def guard():
    if (response := require_member()) is not None:
        return response
    try:
        g.party = party_for_user(db.session, current_member().id)
    except Forbidden:
        abort(403)
    return None


@bp.get("/")
def index():
    return render_page("restock/index.html", placed=restocks_of(db.session, g.party.location_id, incoming=True),
                       to_supply=restocks_of(db.session, g.party.location_id, incoming=False), name=_names())


@bp.get("/new")
def new():
    supplier_id, tier = supplier_location_id(db.session, g.party.location_id)
    products = db.session.scalars(select(Product).where(Product.is_on_sale.is_(True))
                                  .order_by(Product.sort_order, Product.id)).all()
    available = dict(db.session.execute(
        select(StockLevel.product_id, StockLevel.available)
        .where(StockLevel.location_id == supplier_id)).all())
    return render_page("restock/new.html", products=products, tier=tier, available=available,
                       supplier=location_name(db.session, supplier_id), preview=RestockPreview(0, 0, []))


@bp.get("/new/total")
def total():
    """The 合计 of the 新建进货单 form as it is filled in (htmx), with what is over the supplier's stock."""
    return html_response(render_template("restock/_total.html", with_problems=True,
                                         preview=preview_restock(db.session, current_member().id, request.args)))


@bp.post("/")
def place():
    order = place_restock(db.session, current_member().id, parse_quantities(request.form.to_dict()),
                          request.form.get("note", ""), check_supply=True,
                          submission_key=request.form.get("submission_key"))
    return redirect_after_post(url_for("restock.detail", restock_id=order.id))


@bp.get("/<int:restock_id>")
def detail(restock_id: int):
    order = restock_for(db.session, g.party, restock_id)
    products = {p.id: p for p in db.session.scalars(
        select(Product).where(Product.id.in_([item.product_id for item in order.items])))}
    available = dict(db.session.execute(
        select(StockLevel.product_id, StockLevel.available)
        .where(StockLevel.location_id == order.from_location_id)).all())
    return render_page("restock/detail.html", order=order, products=products, available=available,
                       is_supplier=g.party.location_id == order.from_location_id,
                       is_buyer=g.party.location_id == order.to_location_id, name=_names())


@bp.post("/<int:restock_id>/ship")
def ship(restock_id: int):
    ship_restock(db.session, g.party, restock_id, parse_quantities(request.form.to_dict()),
                 submission_key=request.form.get("submission_key"))
    return redirect_after_post(url_for("restock.detail", restock_id=restock_id))


@bp.post("/<int:restock_id>/receive")
def receive(restock_id: int):
    receive_restock(db.session, current_member().id, restock_id, submission_key=request.form.get("submission_key"))
    return redirect_after_post(url_for("restock.detail", restock_id=restock_id))


@bp.post("/<int:restock_id>/cancel")
def cancel(restock_id: int):
    cancel_restock(db.session, g.party, restock_id, request.form.get("reason", ""))
    return redirect_after_post(url_for("restock.detail", restock_id=restock_id))


def _names():
    return lambda location_id: location_name(db.session, location_id)
