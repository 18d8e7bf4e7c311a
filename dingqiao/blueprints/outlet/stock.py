"""库存: the stock of the location a member runs (their outlet, or their factory store) — on hand, reserved,
available, low-stock warnings, recent movements, manual adjustments with a note and warning thresholds."""
from flask import Blueprint, abort, g, request, url_for

from ...extensions import db
from ...models import StockReason
from ...services import DomainError
from ...services.restock import location_name
from ...services.stock import adjust_stock, location_stock, owned_location_id, recent_movements, set_low_stock_threshold
from ...web import parse_id, parse_signed_int, redirect_after_post, render_page
from ..common import current_member, require_member

bp = Blueprint("stock", __name__, url_prefix="/stock")

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
    rows = location_stock(db.session, g.location_id)
    return render_page("stock/index.html", rows=rows, low=sum(1 for row in rows if row.low),
                       movements=recent_movements(db.session, g.location_id), reasons=StockReason.labels(),
                       location_name=location_name(db.session, g.location_id))


@bp.post("/adjust")
def adjust():
    product_id = parse_id(request.form.get("product_id"))
    delta = parse_signed_int(request.form.get("delta"))
    if product_id is None or delta is None:
        raise DomainError("请填写调整数量，例如 5 或 -2。")
    adjust_stock(db.session, location_id=g.location_id, product_id=product_id, delta=delta,
                 note=request.form.get("note", ""), actor_kind="user", actor_id=current_member().id)
    return redirect_after_post(url_for("stock.index"))


@bp.post("/threshold")
def threshold():
    product_id = parse_id(request.form.get("product_id"))
    value = parse_id(request.form.get("threshold"))
    if product_id is None or value is None:
        raise DomainError("预警数量需为不小于 0 的整数。")
    set_low_stock_threshold(db.session, location_id=g.location_id, product_id=product_id, threshold=value)
    return redirect_after_post(url_for("stock.index"))

