"""网络 (/admin/network/): the operations team builds the offline network — the platform warehouse, regions,
factory stores and outlets, an outlet moved to another region — and finance grants or revokes an identity.

Each form is a Flask-WTF class that only parses (text as typed, picked rows as ids); what is allowed is
services/network.py's to say, and it audits every write. A refused form comes back filled in as typed with the
reason in Chinese (400). Any admin may use these pages; identities only finance and the superadmin (refused
here before anything is read, and again in the service)."""
from flask import Blueprint, render_template, request, session, url_for

from ...extensions import db
from ...forms import place_refusal
from ...models import MONEY_REVIEWERS, AdminRole
from ...services import DomainError, Forbidden, NotFound, network
from ...web import redirect_after_post, render_page
from ..common import current_admin, require_admin
from .forms import FactoryStoreForm, IdentityForm, MoveForm, OutletForm, RegionForm, WarehouseForm

bp = Blueprint("admin_network", __name__, url_prefix="/admin/network")
IDENTITY_ENDPOINTS = {"admin_network.grant_identity", "admin_network.revoke_identity"}
_any_admin, _finance = require_admin(), require_admin(AdminRole.FINANCE)
NOTICE_KEY = "network_notice"


@bp.before_request
def guard():
    return _finance() if request.endpoint in IDENTITY_ENDPOINTS else _any_admin()


FORMS = {"warehouse": WarehouseForm, "region": RegionForm, "factory_store": FactoryStoreForm, "outlet": OutletForm,
         "identity": IdentityForm}
PICKER_FIELDS = ("q", "owner_user_id", "user_id")


# ---------------------------------------------------------------- pages

@bp.get("/")
def index():
    return _network_page(notice=session.pop(NOTICE_KEY, ""))


@bp.post("/warehouse")
def create_warehouse():
    return _submit("warehouse", network.create_platform_warehouse, lambda made: f"已设立平台仓库「{made.name}」。")


@bp.post("/regions")
def create_region():
    return _submit("region", network.create_region, lambda made: f"已新建区域「{made.name}」。")


@bp.post("/factory-stores")
def create_factory_store():
    return _submit("factory_store", network.create_factory_store,
                   lambda made: f"已开设工厂店「{made.name}」，店主已获工厂店身份。")


@bp.post("/outlets")
def create_outlet():
    return _submit("outlet", network.create_outlet, lambda made: f"已开设核销网点「{made.name}」，店主已获核销网点身份。")


@bp.post("/identity/grant")
def grant_identity():
    return _submit("identity", network.grant_identity,
                   lambda member: f"已授予 {member.display_name} {member.identity_enum.label}身份。")


@bp.post("/identity/revoke")
def revoke_identity():
    return _submit("identity", network.revoke_identity,
                   lambda member: f"已撤销，{member.display_name} 现为{member.identity_enum.label}。")


@bp.route("/outlets/<int:outlet_id>/move", methods=["GET", "POST"])
def move_outlet(outlet_id: int):
    """Where to move an outlet, and what happens to its restock orders; a missing outlet is a 404."""
    form = MoveForm()
    if request.method == "GET":
        return _move_page(outlet_id, form)
    if not form.validate():  # each problem next to its field
        return _move_page(outlet_id, form, status=400)
    try:
        moved = network.move_outlet(db.session, outlet_id=outlet_id, **form.values(), admin_id=current_admin().id)
    except (Forbidden, NotFound):
        raise
    except DomainError as exc:  # next to the field it names, else above the form
        return _move_page(outlet_id, form, error="" if place_refusal(form, exc) else exc.message, status=400)
    cancelled = "、".join(moved.cancelled_restock_nos)
    session[NOTICE_KEY] = (f"已将「{moved.outlet.name}」划入「{moved.outlet.region.name}」"
                           + (f"，并取消未发货的进货单 {cancelled}。" if cancelled else "。"))
    return redirect_after_post(url_for("admin_network.index", _anchor="network"))


@bp.get("/members")
def members():
    """Members matching what was typed into a member picker (whatever the picker's field is called): its list of
    suggestions for htmx, a page of its own otherwise."""
    query = next((request.args[name] for name in PICKER_FIELDS if request.args.get(name)), "")
    return render_page("admin/network/members.html", "member_options", admin=current_admin(), query=query,
                       matches=network.search_members(db.session, query))


def _submit(name: str, create, notice):
    """Parse form ``name``, call ``create`` with its values; back to the network page with ``notice(made)``, or
    the page again with the form as typed and what is wrong with it next to each field."""
    form = FORMS[name]()
    if not form.validate():  # each problem next to its field
        return _network_page(typed={name: form}, status=400)
    try:
        made = create(db.session, **form.values(), admin_id=current_admin().id)
    except Forbidden:
        raise
    except DomainError as exc:  # next to the field it names, else above the form
        return _network_page(typed={name: form}, error="" if place_refusal(form, exc) else exc.message, status=400)
    session[NOTICE_KEY] = notice(made)
    return redirect_after_post(url_for("admin_network.index", _anchor="network"))


def _network_page(*, typed: dict | None = None, error: str = "", notice: str = "", status: int = 200):
    """The network with every form: blank, except a refused one, which shows what was typed and the reason."""
    admin = current_admin()
    forms = {name: form(formdata=None) for name, form in FORMS.items()} | (typed or {})
    return render_template("admin/network/index.html", admin=admin, overview=network.network_overview(db.session),
                           forms=forms, failed=next(iter(typed or {}), ""), error=error, notice=notice,
                           may_change_identity=admin.role in MONEY_REVIEWERS,
                           identity_needs_finance=network.IDENTITY_NEEDS_FINANCE,
                           site_identities=network.SITE_IDENTITIES), status


def _move_page(outlet_id: int, form: MoveForm, *, error: str = "", status: int = 200):
    return render_template("admin/network/move.html", admin=current_admin(),
                           preview=network.move_preview(db.session, outlet_id), form=form, error=error), status
