"""附近门店: the active outlets, nearest first once the page knows where the member is (browser or WeChat).

One URL serves both: the page first lists outlets by region, then the browser asks the same URL with
?lat=&lng= for the list alone (the checkout's locate mechanism in app.js)."""
from flask import Blueprint, request

from ...extensions import db
from ...services.outlets import nearby_outlets, outlet_owned_by, parse_position
from ...web import render_page
from ..common import current_member, require_member

bp = Blueprint("nearby", __name__, url_prefix="/nearby")
bp.before_request(require_member)


@bp.get("/")
def index():
    position = parse_position(request.args.get("lat"), request.args.get("lng"))
    return render_page("nearby/index.html", block="outlet_list", outlets=nearby_outlets(db.session, position),
                       located=position is not None,
                       owns_outlet=outlet_owned_by(db.session, current_member().id) is not None)
