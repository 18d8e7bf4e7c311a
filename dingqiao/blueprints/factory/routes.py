"""区域看板 for the owner of a factory store: regional sales by day and by outlet, the outlet ranking and the
restock volume shipped, for a date range, as charts from a JSON endpoint."""
from flask import Blueprint, abort, g, jsonify, request

from ...extensions import db
from ...services.dashboards import factory_dashboard
from ...services.outlets import factory_owned_by
from ...web import render_page
from ..common import current_member, require_member
from ...forms import DateRangeForm

bp = Blueprint("factory", __name__, url_prefix="/factory")


@bp.before_request
def guard():
    if (response := require_member()) is not None:
        return response
    g.factory = factory_owned_by(db.session, current_member().id)
    if g.factory is None:
        abort(403)
    return None


@bp.get("/")
def dashboard():
    form = DateRangeForm(request.args)
    buckets = form.buckets()
    data = factory_dashboard(db.session, g.factory, buckets)
    return render_page("factory/dashboard.html", factory=g.factory, buckets=buckets, range_form=form,
                       table=data["table"], totals=data["totals"])


@bp.get("/dashboard.json")
def dashboard_json():
    data = factory_dashboard(db.session, g.factory, DateRangeForm(request.args).buckets())
    response = jsonify({key: data[key] for key in ("sales", "ranking", "restock")})
    response.headers["Cache-Control"] = "private, no-cache"
    return response
