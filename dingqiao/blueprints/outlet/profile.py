"""门店资料: the owner of an outlet edits what members see of it. Open to the owner only; staff and everyone
else get a 404, as if there were no such page."""
from flask import Blueprint, abort, request, url_for

from ...extensions import db
from ...services import DomainError
from ...services.outlets import OutletProfileInput, outlet_owned_by, update_outlet_profile
from ...web import redirect_after_post, render_page
from ..common import current_member, require_member
from .forms import ProfileForm, refused

bp = Blueprint("outlet_profile", __name__, url_prefix="/outlet/profile")
PAGE, PART = "outlet_profile/edit.html", "outlet_profile/_form.html"


@bp.before_request
def guard():
    if (response := require_member()) is not None:
        return response
    if outlet_owned_by(db.session, current_member().id) is None:
        abort(404)
    return None


@bp.get("")
def edit():
    outlet = outlet_owned_by(db.session, current_member().id)
    return render_page(PAGE, outlet=outlet, form=ProfileForm(formdata=None, obj=outlet),
                       saved=request.args.get("saved") == "1")


@bp.post("")
def save():
    form = ProfileForm()
    if form.validate_on_submit():
        try:
            update_outlet_profile(db.session, current_member().id, OutletProfileInput(**form.values()))
            return redirect_after_post(url_for("outlet_profile.edit", saved=1))
        except DomainError as error:
            form.refuse(error)
    return refused(form, PAGE, PART, outlet=outlet_owned_by(db.session, current_member().id), saved=False)
