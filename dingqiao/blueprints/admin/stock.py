"""Stock per location for the operations team, and manual adjustments with a reason. Any admin role may
adjust (counting and breakage are operations work, not finance); the service audits every adjustment."""
from flask import Blueprint, render_template, request, url_for

from ...extensions import db
from ...models import StockLocation, StockReason
from ...services import DomainError, NotFound
from ...services.admin_queries import stock_locations
from ...services.restock import platform_location_id
from ...services.stock import MAX_ADJUSTMENT, adjust_stock, location_stock, recent_movements
from ...web import parse_id, redirect_after_post
from ..common import current_admin, require_admin
from .forms import StockAdjustForm

bp = Blueprint("admin_stock", __name__, url_prefix="/admin/stock")
bp.before_request(require_admin())


@bp.get("/")
def index():
    locations = stock_locations(db.session)
    raw = request.args.get("location_id")
    location = _location(locations, parse_id(raw)) if raw else _default(locations)
    if raw and location is None:
        raise NotFound("库存地点不存在。")
    return _page(locations, location)


@bp.post("/adjust")
def adjust():
    locations = stock_locations(db.session)
    form = StockAdjustForm()
    valid = form.validate()
    location = _location(locations, form.location_id.value)
    if valid and location is None:
        form.location_id.errors = [form.location_id.message]
    try:
        if not valid or location is None:
            raise DomainError(form.first_error())
        adjust_stock(db.session, location_id=location.id, product_id=form.product_id.value, delta=form.delta.value,
                     note=form.note.data or "", actor_kind="admin", actor_id=current_admin().id)
    except DomainError as exc:
        # An unknown product is the service's NotFound; on this form it is bad input like the rest: 400. The
        # form's own problems are next to their fields; the service's is above the form.
        error = "" if form.errors else exc.message
        return _page(locations, location or _default(locations), error=error, form=form), 400
    return redirect_after_post(url_for("admin_stock.index", location_id=location.id))


def _location(locations: list[StockLocation], location_id: int | None) -> StockLocation | None:
    return next((location for location in locations if location.id == location_id), None)


def _default(locations: list[StockLocation]) -> StockLocation | None:
    """The platform warehouse, where most adjustments happen; any location if there is none yet."""
    return _location(locations, platform_location_id(db.session)) or next(iter(locations), None)


def _page(locations: list[StockLocation], location: StockLocation | None, error: str = "",
          form: StockAdjustForm | None = None) -> str:
    return render_template(
        "admin/stock/index.html", admin=current_admin(), locations=locations, location=location,
        rows=location_stock(db.session, location.id) if location else [],
        movements=recent_movements(db.session, location.id) if location else [],
        reasons=StockReason.labels(), max_adjustment=MAX_ADJUSTMENT, error=error,
        form=form or StockAdjustForm(formdata=None),
    )
