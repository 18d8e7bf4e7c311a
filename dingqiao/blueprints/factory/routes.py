"""区域看板 for the owner of a factory store: regional sales by day and by outlet, the outlet ranking and the
restock volume shipped, for a date range, as charts from a JSON endpoint."""
from flask import Blueprint, abort, g, jsonify, request
from sqlalchemy import select

from ...extensions import db
from ...models import FactoryStore
from ...services.dashboards import factory_dashboard, parse_range
from ...web import render_page
from ..common import current_member, require_member

bp = Blueprint("factory", __name__, url_prefix="/factory")


@bp.before_request
def guard():
    if (response := require_member()) is not None:
        return response
    g.factory = db.session.scalar(select(FactoryStore).where(FactoryStore.owner_user_id == current_member().id))
    if g.factory is None:
        abort(403)
    return None


@bp.get("/")
def dashboard():
    buckets = parse_range(request.args.get("from"), request.args.get("to"))
    data = factory_dashboard(db.session, g.factory, buckets)
    return render_page("factory/dashboard.html", factory=g.factory, buckets=buckets, table=data["table"],
                       totals=data["totals"])


@bp.get("/dashboard.json")
def dashboard_json():
    buckets = parse_range(request.args.get("from"), request.args.get("to"))
    data = factory_dashboard(db.session, g.factory, buckets)
    response = jsonify({key: data[key] for key in ("sales", "ranking", "restock")})
    response.headers["Cache-Control"] = "private, no-cache"
    return response
