"""进货单 for outlets and factory stores: place an order with the supplier, ship (the supplier, in parts if
need be), confirm receipt, cancel before shipping. The platform's side (factory stores restocking from the
platform) is in the admin pages."""
from flask import Blueprint, abort, g, render_template, request, url_for

from ...extensions import db
from ...services import DomainError, Forbidden
from ...services.restock import (
    RestockPreview,
    cancel_restock,
    location_name,
    new_restock,
    party_for_user,
    place_restock,
    preview_restock,
    receive_restock,
    restock_detail,
    restocks_of,
    ship_restock,
)
from ...web import html_response, redirect_after_post, render_page
from ..common import current_member, require_member
from .forms import CancelRestockForm, PlaceRestockForm, ReceiveRestockForm, ShipRestockForm, refused

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
    return render_page("restock/new.html", restock=new_restock(db.session, g.party.location_id),
                       form=PlaceRestockForm(formdata=None), preview=RestockPreview(0, 0, []))


@bp.get("/new/total")
def total():
    """The 合计 of the 新建进货单 form as it is filled in (htmx), with what is over the supplier's stock."""
    return html_response(render_template("restock/_total.html", with_problems=True,
                                         preview=preview_restock(db.session, current_member().id, request.args)))


@bp.post("/")
def place():
    form = PlaceRestockForm()
    if form.validate_on_submit():
        try:
            order = place_restock(db.session, current_member().id, form.quantities.data, form.note.data or "",
                                  submission_key=form.submission_key.data)
            return redirect_after_post(url_for("restock.detail", restock_id=order.id))
        except DomainError as error:
            form.refuse(error, form.quantities)
    return refused(form, "restock/new.html", "restock/_new_form.html",
                   restock=new_restock(db.session, g.party.location_id),
                   preview=preview_restock(db.session, current_member().id, form.quantities.typed))


@bp.get("/<int:restock_id>")
def detail(restock_id: int):
    return render_page("restock/detail.html", detail=restock_detail(db.session, g.party, restock_id), name=_names(),
                       form=ShipRestockForm(formdata=None))


@bp.post("/<int:restock_id>/ship")
def ship(restock_id: int):
    form = ShipRestockForm()
    if form.validate_on_submit():
        try:
            ship_restock(db.session, g.party, restock_id, form.quantities.data,
                         submission_key=form.submission_key.data)
            return redirect_after_post(url_for("restock.detail", restock_id=restock_id))
        except DomainError as error:
            form.refuse(error, form.quantities)
    return refused(form, "restock/detail.html", "restock/_ship_form.html",
                   detail=restock_detail(db.session, g.party, restock_id), name=_names())


@bp.post("/<int:restock_id>/receive")
def receive(restock_id: int):
    form = ReceiveRestockForm()
    form.validate_on_submit()  # nothing typed: the key is optional, and the service says what is refused
    receive_restock(db.session, current_member().id, restock_id, submission_key=form.submission_key.data)
    return redirect_after_post(url_for("restock.detail", restock_id=restock_id))


@bp.post("/<int:restock_id>/cancel")
def cancel(restock_id: int):
    form = CancelRestockForm()
    form.validate_on_submit()  # the reason is free text, cleaned by the service
    cancel_restock(db.session, g.party, restock_id, form.reason.data or "")
    return redirect_after_post(url_for("restock.detail", restock_id=restock_id))


def _names():
    return lambda location_id: location_name(db.session, location_id)
