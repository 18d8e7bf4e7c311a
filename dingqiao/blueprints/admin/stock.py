"""Stock per location for the operations team, and manual adjustments with a reason. Any admin role may
adjust (counting and breakage are operations work, not finance); the service audits every adjustment."""
from flask import Blueprint, render_template, request, url_for

from ...extensions import db
from ...models import StockLocation, StockReason
from ...services import DomainError, NotFound
from ...services.admin_queries import stock_locations
from ...services.restock import platform_location_id
from ...services.stock import MAX_ADJUSTMENT, adjust_stock, location_stock, recent_movements
from ...web import parse_id, parse_signed_int, redirect_after_post
from ..common import current_admin, require_admin

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
    location = _location(locations, parse_id(request.form.get("location_id")))
    product_id = parse_id(request.form.get("product_id"))
    delta = parse_signed_int(request.form.get("delta"))
    try:
        if location is None:
            raise DomainError("库存地点不存在，请重新选择。")
        if product_id is None:
            raise DomainError("请选择商品。")
        if delta is None:
            raise DomainError("调整数量需为整数，增加填正数，减少填负数，例如 5 或 -2。")
        adjust_stock(db.session, location_id=location.id, product_id=product_id, delta=delta,
                     note=request.form.get("note", ""), actor_kind="admin", actor_id=current_admin().id)
    except DomainError as exc:
        # An unknown product is the service's NotFound; on this form it is bad input like the rest: 400.
        return _page(locations, location or _default(locations), error=exc.message, form=request.form), 400
    return redirect_after_post(url_for("admin_stock.index", location_id=location.id))


def _location(locations: list[StockLocation], location_id: int | None) -> StockLocation | None:
    return next((location for location in locations if location.id == location_id), None)


def _default(locations: list[StockLocation]) -> StockLocation | None:
    """The platform warehouse, where most adjustments happen; any location if there is none yet."""
    return _location(locations, platform_location_id(db.session)) or next(iter(locations), None)


def _page(locations: list[StockLocation], location: StockLocation | None, error: str = "", form=None) -> str:
    return render_template(
        "admin/stock/index.html", admin=current_admin(), locations=locations, location=location,
        rows=location_stock(db.session, location.id) if location else [],
        movements=recent_movements(db.session, location.id) if location else [],
        reasons=StockReason.labels(), max_adjustment=MAX_ADJUSTMENT, error=error, form=form or {},
    )
