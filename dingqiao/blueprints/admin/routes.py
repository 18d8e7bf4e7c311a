"""Admin area (desktop): username + password login, and the home page the admin issue builds on."""
from datetime import timedelta

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user

from ...extensions import db, limiter
from ...models import ApplicationStatus, CountsAt, GrantMode, UpgradeMetric, UpgradeTarget
from ...services.accounts import AccountLocked, InvalidCredentials, LockoutPolicy, authenticate_admin
from ...services.logins import admin_policy, end_login_session
from ...services import DomainError, Forbidden, commissions, dashboards, delivery, jobs, queues, restock, setup, upgrades
from ...services.admin_queries import commission_rule_versions, identity_rule_versions, products_by_id
from ...services.payments import recent_refused_notifies, resolve_payment_event
from ...services.refunds import approve_refund, refund_stray_payment, reject_refund
from ...services.submissions import FIELD_NAME as SUBMISSION_KEY, clean_key
from ...services.withdrawals import (
    approve_withdrawal,
    cancel_transfer,
    mark_paid_offline,
    reject_withdrawal,
)
from ...wechat import pay_gateways
from ...web import arg_id, domain_error_status, redirect_after_post
from ..common import current_admin, login_client, require_admin, safe_next
from .forms import CommissionRuleForm, IdentityRuleForm, LoginForm, ReasonForm, WithdrawalReviewForm, first_error

bp = Blueprint("admin", __name__, url_prefix="/admin")
_require_admin = require_admin()

PUBLIC_ENDPOINTS = {"admin.login"}


@bp.before_request
def guard():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    return _require_admin()


def _login_limit() -> str:
    return current_app.config["ADMIN_LOGIN_RATE"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    next_url = request.values.get("next") or url_for("admin.home")
    form = LoginForm()
    if request.method == "GET":
        if current_admin() is not None:
            return redirect(safe_next(next_url))
        return render_template("admin/login.html", next_url=next_url, form=form)
    config = current_app.config
    lockout = LockoutPolicy(failures=config["ADMIN_LOCKOUT_FAILURES"],
                            first_lock=timedelta(seconds=config["ADMIN_LOCKOUT_SECONDS"]),
                            longest_lock=timedelta(seconds=config["ADMIN_LOCKOUT_MAX_SECONDS"]))
    try:
        admin = authenticate_admin(db.session, form.username.data or "", form.password.data or "",
                                   login_client(), lockout, admin_policy(config).lifetime)
    except (InvalidCredentials, AccountLocked) as exc:
        # Which of the two was wrong is not said: the message sits with the password, the name stays typed.
        form.password.errors = [exc.message]
        return render_template("admin/login.html", next_url=next_url, form=form), domain_error_status(exc)
    login_user(admin)
    return redirect(safe_next(next_url))


@bp.post("/logout")
def logout():
    end_login_session(db.session, current_admin())  # a copied session cookie stops working too
    logout_user()
    return redirect(url_for("admin.login"))


@bp.get("/")
def home():
    """The dashboard: today's and this month's figures, the queues waiting for someone, a 30-day chart, and how
    the scheduled jobs went."""
    return render_template("admin/home.html", admin=current_admin(), overview=dashboards.admin_overview(db.session),
                           jobs=jobs.job_statuses(db.session), setup=setup.setup_progress(db.session))


@bp.get("/dashboard.json")
def dashboard_json():
    response = jsonify(dashboards.sales_trend(db.session))
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.get("/refunds")
def refunds():
    """Refund requests waiting for finance (and failed ones to retry)."""
    return render_template("admin/refunds.html", admin=current_admin(),
                           page=queues.waiting_refunds(db.session, arg_id("page")))


@bp.post("/refunds/<int:refund_id>/approve")
def approve_refund_view(refund_id: int):
    approve_refund(db.session, pay_gateways(current_app), current_admin(), refund_id,
                   submission_key=request.form.get(SUBMISSION_KEY))
    # The form asks 确认 through htmx (hx-confirm); a plain post still gets the plain redirect.
    return redirect_after_post(safe_next(request.form.get("next") or url_for("admin.refunds")), status=302)


@bp.post("/refunds/<int:refund_id>/reject")
def reject_refund_view(refund_id: int):
    reject_refund(db.session, current_admin(), refund_id, ReasonForm().reason.data or "",
                  submission_key=request.form.get(SUBMISSION_KEY))
    # htmx (a refused reason is said next to it, in the row); a plain post gets the plain redirect.
    return redirect_after_post(safe_next(request.form.get("next") or url_for("admin.refunds")), status=302)


@bp.get("/withdrawals")
def withdrawals():
    """The withdrawal review queue: open requests first, then transfers whose outcome is unknown."""
    return render_template("admin/withdrawals.html", admin=current_admin(),
                           page=queues.waiting_withdrawals(db.session, arg_id("page")),
                           results=session.pop("withdrawal_results", []))


@bp.post("/withdrawals/review")
def review_withdrawals():
    """One or many at once: approve (WeChat transfer), paid offline, or reject. Each is its own
    transaction, so one failure never undoes the others; the outcome of each is shown."""
    form = WithdrawalReviewForm()
    if not form.validate():
        raise DomainError(form.first_error())
    action = form.action.data
    admin, gateway = current_admin(), pay_gateways(current_app)
    form_key = clean_key(request.form.get(SUBMISSION_KEY))
    results = []
    for withdrawal_id in form.withdrawal_id.data:
        # One key per withdrawal of the batch: a repeat of the form acts on none of them again.
        key = f"{form_key}-{withdrawal_id}" if form_key else None
        try:
            if action == "approve":
                done = approve_withdrawal(db.session, gateway, admin, withdrawal_id, submission_key=key)
            elif action == "cancel_transfer":
                done = cancel_transfer(db.session, gateway, admin, withdrawal_id,
                                       timedelta(minutes=current_app.config["RECONCILE_AFTER_MINUTES"]))
            elif action == "offline":
                done = mark_paid_offline(db.session, admin, withdrawal_id, form.note.data or "",
                                         submission_key=key)
            else:
                done = reject_withdrawal(db.session, admin, withdrawal_id, form.reason.data or "",
                                         submission_key=key)
            results.append(f"{done.withdrawal_no}：{_withdrawal_outcome(done)}")
        except Forbidden:
            raise
        except DomainError as exc:
            results.append(f"#{withdrawal_id}：{exc.message}")
    session["withdrawal_results"] = results
    return redirect(url_for("admin.withdrawals"))


def _withdrawal_outcome(withdrawal) -> str:
    if withdrawal.status == "approved" and withdrawal.transfer_state == "WAIT_USER_CONFIRM":
        return "已发起微信转账，待用户确认收款"
    return {"paid": "已打款", "rejected": "已拒绝", "failed": "已退回余额"}.get(withdrawal.status, withdrawal.status)


@bp.route("/commission-rules", methods=["GET", "POST"])
def commission_rules():
    """The rule version in force, earlier versions, and a form for a new version (rates in percent) with a ¥100
    preview. "预览" only shows what a ¥100 order would pay; "发布新版本" validates and saves (finance only). A
    refused form shows each problem next to its field (400)."""
    current = commissions.current_rule(db.session)
    form, preview, refused = CommissionRuleForm(), None, False
    if request.method == "POST":
        if form.validate():
            preview = commissions.preview(form.rule())
            if request.form.get("action") == "publish":
                commissions.create_rule_version(db.session, current_admin(), form.rule())
                return redirect_after_post(url_for("admin.commission_rules"), status=302)
        else:
            refused = True
    else:
        form = CommissionRuleForm.of(current) if current is not None else CommissionRuleForm(formdata=None)
        preview = commissions.preview(current) if current is not None else None
    return render_template("admin/commission_rules.html", admin=current_admin(), current=current,
                           versions=commission_rule_versions(db.session), form=form, preview=preview,
                           percent=commissions.format_percent), 400 if refused else 200


@bp.get("/payment-events")
def payment_events():
    """Signed pay notifies that need a person (money for cancelled orders, mismatched amounts …), and apart from
    them the notifies refused unread, counted per sender and reason."""
    return render_template("admin/payment_events.html", admin=current_admin(),
                           page=queues.unresolved_payment_events(db.session, arg_id("page")),
                           refused=recent_refused_notifies(db.session))


@bp.post("/payment-events/<int:event_id>/refund")
def refund_payment_event(event_id: int):
    refund_stray_payment(db.session, pay_gateways(current_app), current_admin(), event_id)
    return redirect(url_for("admin.payment_events"))


@bp.post("/payment-events/<int:event_id>/resolve")
def resolve_event(event_id: int):
    resolve_payment_event(db.session, current_admin(), event_id)
    return redirect(url_for("admin.payment_events"))


@bp.route("/identity-rules", methods=["GET", "POST"])
def identity_rules():
    """身份升级规则: one rule per target identity, published as a new version (finance or superadmin). The
    conditions that are entry fees in disguise are listed, disabled, with why; the service refuses them."""
    form, error = IdentityRuleForm(), None
    if request.method == "POST":
        try:
            if not form.validate():
                raise DomainError(first_error(form))
            upgrades.create_identity_rule(db.session, current_admin(), upgrades.IdentityRuleInput(
                target=form.target.data or "", metric=form.metric.data or "", threshold_fen=form.threshold.value,
                counts_at=form.counts_at.data or CountsAt.REDEEMED, grant_mode=form.grant_mode.data or "",
                note=(form.note.data or "").strip()[:200],
            ))
            return redirect(url_for("admin.identity_rules"))
        except DomainError as exc:
            if isinstance(exc, Forbidden):
                raise
            error = exc.message
    current = {target: upgrades.current_identity_rule(db.session, target) for target in UpgradeTarget}
    return render_template(
        "admin/identity_rules.html", admin=current_admin(), current=current,
        versions=identity_rule_versions(db.session), error=error, form=form,
        targets=list(UpgradeTarget), metric_for=upgrades.METRIC_FOR_TARGET, entry_fees=upgrades.ENTRY_FEE_METRICS,
        counts=list(CountsAt), modes=list(GrantMode), summary=upgrades.rule_summary, metrics=UpgradeMetric,
    ), 400 if error else 200


@bp.get("/applications")
def applications():
    """Outlet and factory-store applications: those waiting for review first, then those waiting for the
    rule to hold, then the latest decisions."""
    return render_template("admin/applications.html", admin=current_admin(),
                           page=queues.open_applications(db.session, arg_id("page")),
                           decided=queues.decided_applications(db.session),
                           results=session.pop("application_results", []))


@bp.post("/applications/<int:application_id>/approve")
def approve_application_view(application_id: int):
    done = upgrades.approve_application(db.session, current_admin(), application_id,
                                        submission_key=request.form.get(SUBMISSION_KEY))
    session["application_results"] = [
        f"「{done.shop_name}」：{'已开通' if done.status == ApplicationStatus.GRANTED else '未通过：' + done.decision_reason}"
    ]
    return redirect(url_for("admin.applications"))


@bp.post("/applications/<int:application_id>/reject")
def reject_application_view(application_id: int):
    done = upgrades.reject_application(db.session, current_admin(), application_id, ReasonForm().reason.data or "",
                                       submission_key=request.form.get(SUBMISSION_KEY))
    session["application_results"] = [f"「{done.shop_name}」：已拒绝"]
    return redirect_after_post(url_for("admin.applications"), status=302)  # htmx, as the refund's rejection


@bp.get("/restocks")
def restocks():
    """Factory stores' restock orders from the platform warehouse: ship (in parts if need be) or cancel."""
    return render_template("admin/restocks.html", admin=current_admin(),
                           page=queues.platform_restocks(db.session, arg_id("page")), products=products_by_id(db.session),
                           name=lambda location_id: restock.location_name(db.session, location_id))


@bp.post("/restocks/<int:restock_id>/ship")
def ship_restock_view(restock_id: int):
    restock.ship_restock(db.session, _platform_party(), restock_id, restock.parse_quantities(request.form.to_dict()),
                         submission_key=request.form.get("submission_key"))
    return redirect(url_for("admin.restocks"))


@bp.post("/restocks/<int:restock_id>/cancel")
def cancel_restock_view(restock_id: int):
    restock.cancel_restock(db.session, _platform_party(), restock_id, ReasonForm().reason.data or "")
    return redirect(url_for("admin.restocks"))


def _platform_party() -> "restock.Party":
    return restock.Party("admin", current_admin().id, None)


@bp.get("/messages")
def failed_messages():
    """Template messages WeChat would not take after every retry (or refused outright): why, and a retry."""
    return render_template("admin/messages.html", admin=current_admin(),
                           page=delivery.failed_messages(db.session, arg_id("page")))


@bp.post("/messages/<int:message_id>/retry")
def retry_message(message_id: int):
    delivery.retry_failed(db.session, message_id)
    return redirect(url_for("admin.failed_messages"))
