"""开店向导 (first-run setup): ``/setup/<token>`` creates the first superadmin from the link printed on the console;
``/admin/setup/`` then walks them through what the shop needs before its first sale. Each step is a form that
calls one service; the page reads every step's state from the data, so it can be left and resumed."""
from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import login_user
from flask_wtf import FlaskForm

from ...extensions import db
from ...models import AdminRole
from ...services import DomainError, NotFound, commissions, network, setup
from ...services.commissions import MAX_PAYOUT_CAP_BPS
from ...services.logins import admin_policy
from ...services.setup import PROPOSED_IDENTITY_RULES
from ...templating import forget_shop_name
from ...web import domain_error_status
from ..common import current_admin, login_client, require_admin
from .forms import (
    ClaimForm,
    CommissionRuleForm,
    FactoryStoreForm,
    IdentityRulesForm,
    NameForm,
    NetworkForm,
    OutletForm,
    RegionForm,
    WarehouseForm,
    first_error,
    yuan_text,
)

bp = Blueprint("setup", __name__, url_prefix="/setup")
admin_bp = Blueprint("admin_setup", __name__, url_prefix="/admin/setup")
admin_bp.before_request(require_admin(AdminRole.SUPERADMIN))


@bp.route("/<token>", methods=["GET", "POST"])
def claim(token: str):
    """The link works once: it makes the superadmin, logs them in and is used up in the same transaction."""
    if not setup.setup_link_valid(db.session, token):
        return _link_unusable()
    form = ClaimForm()
    error = None
    if form.validate_on_submit():
        try:
            admin = setup.claim_setup(db.session, token, username=form.username.data, password=form.password.data,
                                      password_again=form.password_again.data, shop=form.shop_name.data,
                                      lifetime=admin_policy(current_app.config).lifetime, client=login_client())
        except DomainError as exc:
            if isinstance(exc, setup.SetupLinkInvalid):
                return _link_unusable()
            error = exc.message
        else:
            login_user(admin)
            forget_shop_name()
            return redirect(url_for("admin_setup.wizard"))
    elif form.is_submitted():
        error = first_error(form)  # and each field's problem next to it
    return render_template("setup/claim.html", form=form, error=error), 400 if error else 200


def _link_unusable():
    return render_template("setup/expired.html", ttl_hours=int(setup.SETUP_LINK_TTL.total_seconds() // 3600)), 404


# ---------------------------------------------------------------- the wizard (superadmin)

def _site_choices(overview: "network.NetworkOverview") -> dict:
    """What the factory-store and outlet forms pick from: regions (a factory store's, those without one) and the
    members who have logged in and run no shop yet."""
    owners = [(u.id, f"{u.display_name}（ID {u.id}{' · ' + u.phone if u.phone else ''}）")
              for u in setup.recent_members(db.session)]
    return {"regions": [(row.region.id, row.region.name) for row in overview.regions],
            "free_regions": [(region.id, region.name) for region in overview.regions_without_factory_store],
            "owners": owners}


def _render_wizard(error: str | None = None, status: int = 200, **forms):
    """The wizard; ``error`` is what to say above it (a form's own problems are also next to their fields)."""
    rule_form = forms.get("rule_form") or CommissionRuleForm.of(commissions.current_rule(db.session))
    preview = None
    try:
        preview = commissions.preview(rule_form.rule())
    except (DomainError, TypeError):
        pass
    proposed_identity = {rule.target: rule for rule in PROPOSED_IDENTITY_RULES}
    identity_form = forms.get("identity_form") or IdentityRulesForm(
        formdata=None, outlet_threshold=yuan_text(proposed_identity["outlet"].threshold_fen),
        factory_threshold=yuan_text(proposed_identity["factory"].threshold_fen), grant_mode="review")
    progress, overview = setup.setup_progress(db.session), network.network_overview(db.session)
    return render_template(
        "setup/wizard.html", admin=current_admin(), progress=progress, error=error,
        name_form=forms.get("name_form") or NameForm(formdata=None, shop_name=progress.shop_name),
        warehouse_form=forms.get("warehouse_form") or WarehouseForm(formdata=None, name="平台总仓"),
        region_form=forms.get("region_form") or RegionForm(formdata=None),
        factory_form=forms.get("factory_form") or FactoryStoreForm(formdata=None),
        outlet_form=forms.get("outlet_form") or OutletForm(formdata=None, opening_hours="09:00-21:00"),
        choices=_site_choices(overview), network=overview,
        rule_form=rule_form, preview=preview, identity_form=identity_form,
        max_cap_percent=MAX_PAYOUT_CAP_BPS / 100,
        shop_url=url_for("shop.home", _external=True),
    ), status


@admin_bp.get("/")
def wizard():
    return _render_wizard()


def _step(form_name: str, form: FlaskForm, action):
    """Validate ``form``, run ``action(form)`` (one service call), and come back to the wizard — or show it
    again with the error and the form as typed."""
    if not form.validate_on_submit():
        # Each problem is next to its field, and the first also above the page: the step may be folded away.
        return _render_wizard(first_error(form), 400, **{form_name: form})
    try:
        action(form)
    except DomainError as exc:
        status = 400 if isinstance(exc, NotFound) else domain_error_status(exc)  # a picked row gone: the form's fault
        return _render_wizard(exc.message, status, **{form_name: form})
    return redirect(url_for("admin_setup.wizard") + f"#{form_name.removesuffix('_form')}")


@admin_bp.post("/name")
def name():
    def rename(form: NameForm) -> None:
        setup.rename_shop(db.session, current_admin(), form.shop_name.data)
        forget_shop_name()

    return _step("name_form", NameForm(), rename)


def _network_step(form_name: str, form: NetworkForm, create):
    """A network form of the 网络 page, in the wizard: parsed the same way, the same service call."""
    return _step(form_name, form, lambda f: create(db.session, **f.values(), admin_id=current_admin().id))


@admin_bp.post("/warehouse")
def warehouse():
    return _network_step("warehouse_form", WarehouseForm(), network.create_platform_warehouse)


@admin_bp.post("/region")
def region():
    return _network_step("region_form", RegionForm(), network.create_region)


@admin_bp.post("/factory-store")
def factory_store():
    return _network_step("factory_form", FactoryStoreForm(), network.create_factory_store)


@admin_bp.post("/outlet")
def outlet():
    return _network_step("outlet_form", OutletForm(), network.create_outlet)


@admin_bp.post("/commission-rule")
def commission_rule():
    """预览 shows what a ¥100 order would pay; 发布 publishes. Either way the form checks the guard rails
    (commission_rules) and shows each refusal next to its field."""
    form = CommissionRuleForm()
    if request.form.get("action") == "preview":
        return _render_wizard(rule_form=form) if form.validate_on_submit() else _render_wizard(first_error(form), 400, rule_form=form)
    return _step("rule_form", form, lambda f: commissions.create_rule_version(
        db.session, current_admin(), f.rule(note=CommissionRuleForm.WIZARD_NOTE)))


@admin_bp.post("/identity-rules")
def identity_rules():
    return _step("identity_form", IdentityRulesForm(), lambda f: setup.publish_identity_rules(
        db.session, current_admin(), f.thresholds_fen(), f.grant_mode.data))


@admin_bp.post("/finish")
def finish():
    try:
        setup.finish_setup(db.session, current_admin())
    except DomainError as exc:
        return _render_wizard(exc.message, 400)
    return redirect(url_for("admin.home"))
