"""门店资料: the owner of an outlet edits what members see of it. Open to the owner only; staff and everyone
else get a 404, as if there were no such page."""
from flask import Blueprint, abort, request, url_for

from ...extensions import db
from ...services.outlets import OutletProfileInput, outlet_owned_by, update_outlet_profile
from ...web import redirect_after_post, render_page
from ..common import current_member, require_member

bp = Blueprint("outlet_profile", __name__, url_prefix="/outlet/profile")


@bp.before_request
def guard():
    if (response := require_member()) is not None:
        return response
    if outlet_owned_by(db.session, current_member().id) is None:
        abort(404)
    return None


@bp.get("")
def edit():
    return render_page("outlet_profile/edit.html", outlet=outlet_owned_by(db.session, current_member().id),
                       saved=request.args.get("saved") == "1")


@bp.post("")
def save():
    form = request.form
    update_outlet_profile(db.session, current_member().id, OutletProfileInput(
        name=form.get("name", ""), address=form.get("address", ""), phone=form.get("phone", ""),
        opening_hours=form.get("opening_hours", ""), latitude=form.get("latitude", ""),
        longitude=form.get("longitude", ""),
    ))
    return redirect_after_post(url_for("outlet_profile.edit", saved=1))
