"""库存: the stock of the location a member runs (their outlet, or their factory store) — on hand, reserved,
available, low-stock warnings, recent movements, manual adjustments with a note and warning thresholds."""
from flask import Blueprint, abort, g, url_for

from ...extensions import db
from ...models import StockReason
from ...services import DomainError
from ...services.restock import location_name
from ...services.stock import adjust_stock, location_stock, owned_location_id, recent_movements, set_low_stock_threshold
from ...web import redirect_after_post, render_page
from ..common import current_member, require_member
from .forms import AdjustForm, OutletForm, ThresholdForm, refused

bp = Blueprint("stock", __name__, url_prefix="/stock")
PAGE = "stock/index.html"


@bp.before_request
def guard():
    if (response := require_member()) is not None:
        return response
    g.location_id = owned_location_id(db.session, current_member().id)
    if g.location_id is None:
        abort(403)
    return None


@bp.get("/")
def index():
    return render_page(PAGE, **_page())


@bp.post("/adjust")
def adjust():
    form = AdjustForm()
    if form.validate_on_submit():
        try:
            adjust_stock(db.session, location_id=g.location_id, **form.values(), actor_kind="user",
                         actor_id=current_member().id)
            return redirect_after_post(url_for("stock.index"))
        except DomainError as error:
            form.refuse(error)
    return _refused(form, "stock/_adjust.html")


@bp.post("/threshold")
def threshold():
    form = ThresholdForm()
    if form.validate_on_submit():
        try:
            set_low_stock_threshold(db.session, location_id=g.location_id, **form.values())
            return redirect_after_post(url_for("stock.index"))
        except DomainError as error:
            form.refuse(error, form.threshold)
    return _refused(form, "stock/_threshold.html")


def _page() -> dict:
    rows = location_stock(db.session, g.location_id)
    return {"rows": rows, "low": sum(1 for row in rows if row.low), "reasons": StockReason.labels(),
            "movements": recent_movements(db.session, g.location_id),
            "location_name": location_name(db.session, g.location_id)}


def _refused(form: OutletForm, part: str):
    """The page (or, for htmx, the one row's form) with the refused form in its row, as typed."""
    rows = {str(row.product.id): row for row in location_stock(db.session, g.location_id)}
    row = rows.get(form.product_id.data or "")
    # A row not on the page (a stale or forged product id) has no form to hold the message: the page says it.
    return refused(form, PAGE, part, row=row, failed=form, lost=row is None, **_page())
