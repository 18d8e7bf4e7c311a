"""Admin area (desktop): username + password login, and the home page the admin issue builds on."""
from datetime import timedelta

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user
from sqlalchemy import select

from ...extensions import db, limiter
from ...models import (
    OPEN_APPLICATION,
    ApplicationStatus,
    CommissionRuleVersion,
    CountsAt,
    GrantMode,
    IdentityApplication,
    IdentityRuleVersion,
    Order,
    PaymentEvent,
    Product,
    Refund,
    UpgradeMetric,
    UpgradeTarget,
    User,
    Withdrawal,
)
from ...services.accounts import AccountLocked, InvalidCredentials, LockoutPolicy, authenticate_admin
from ...services.logins import admin_policy, end_login_session
from ...services import DomainError, Forbidden, commissions, dashboards, delivery, jobs, restock, setup, upgrades
from ...services.payments import recent_refused_notifies, resolve_payment_event
from ...services.queues import APPLICATIONS_WAITING, REFUNDS_WAITING, WITHDRAWALS_WAITING
from ...services.refunds import approve_refund, refund_stray_payment, reject_refund
from ...services.submissions import FIELD_NAME as SUBMISSION_KEY, clean_key
from ...services.withdrawals import (
    approve_withdrawal,
    cancel_transfer,
    mark_paid_offline,
    parse_yuan,
    reject_withdrawal,
)
from ...wechat import pay_gateways
from ...paging import page_of
from ...web import arg_id, parse_id, redirect_after_post
from ..common import current_admin, login_client, require_admin, safe_next

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
    if request.method == "GET":
        if current_admin() is not None:
            return redirect(safe_next(next_url))
        return render_template("admin/login.html", next_url=next_url)
    config = current_app.config
    lockout = LockoutPolicy(failures=config["ADMIN_LOCKOUT_FAILURES"],
                            first_lock=timedelta(seconds=config["ADMIN_LOCKOUT_SECONDS"]),
                            longest_lock=timedelta(seconds=config["ADMIN_LOCKOUT_MAX_SECONDS"]))
    try:
        admin = authenticate_admin(db.session, request.form.get("username", ""), request.form.get("password", ""),
                                   login_client(), lockout, admin_policy(config).lifetime)
    except (InvalidCredentials, AccountLocked) as exc:
        return render_template("admin/login.html", next_url=next_url, error=exc.message,
                               username=request.form.get("username", "")), exc.status
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
    page = page_of(db.session, select(Refund, Order)
                   .join(Order, Order.id == Refund.order_id)
                   .where(REFUNDS_WAITING)
                   .order_by(Refund.created_at, Refund.id), arg_id("page"))
    return render_template("admin/refunds.html", admin=current_admin(), page=page)


@bp.post("/refunds/<int:refund_id>/approve")
def approve_refund_view(refund_id: int):
    approve_refund(db.session, pay_gateways(current_app), current_admin(), refund_id,
                   submission_key=request.form.get(SUBMISSION_KEY))
    # The form asks 确认 through htmx (hx-confirm); a plain post still gets the plain redirect.
    return redirect_after_post(safe_next(request.form.get("next") or url_for("admin.refunds")), status=302)


@bp.post("/refunds/<int:refund_id>/reject")
def reject_refund_view(refund_id: int):
    reject_refund(db.session, current_admin(), refund_id, request.form.get("reason", ""),
                  submission_key=request.form.get(SUBMISSION_KEY))
    return redirect(safe_next(request.form.get("next") or url_for("admin.refunds")))


@bp.get("/withdrawals")
def withdrawals():
    """The withdrawal review queue: open requests first, then transfers whose outcome is unknown."""
    page = page_of(db.session, select(Withdrawal, User)
                   .join(User, User.id == Withdrawal.user_id)
                   .where(WITHDRAWALS_WAITING)
                   .order_by(Withdrawal.created_at, Withdrawal.id), arg_id("page"))
    return render_template("admin/withdrawals.html", admin=current_admin(), page=page,
                           results=session.pop("withdrawal_results", []))


@bp.post("/withdrawals/review")
def review_withdrawals():
    """One or many at once: approve (WeChat transfer), paid offline, or reject. Each is its own
    transaction, so one failure never undoes the others; the outcome of each is shown."""
    action = request.form.get("action", "")
    ids = [wid for wid in (parse_id(raw) for raw in request.form.getlist("withdrawal_id")) if wid is not None]
    if action not in {"approve", "offline", "reject", "cancel_transfer"} or not ids:
        raise DomainError("请选择提现申请和操作。")
    admin, gateway = current_admin(), pay_gateways(current_app)
    form_key = clean_key(request.form.get(SUBMISSION_KEY))
    results = []
    for withdrawal_id in ids[:100]:
        # One key per withdrawal of the batch: a repeat of the form acts on none of them again.
        key = f"{form_key}-{withdrawal_id}" if form_key else None
        try:
            if action == "approve":
                done = approve_withdrawal(db.session, gateway, admin, withdrawal_id, submission_key=key)
            elif action == "cancel_transfer":
                done = cancel_transfer(db.session, gateway, admin, withdrawal_id,
                                       timedelta(minutes=current_app.config["RECONCILE_AFTER_MINUTES"]))
            elif action == "offline":
                done = mark_paid_offline(db.session, admin, withdrawal_id, request.form.get("note", ""),
                                         submission_key=key)
            else:
                done = reject_withdrawal(db.session, admin, withdrawal_id, request.form.get("reason", ""),
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
    preview. "预览" only shows what a ¥100 order would pay; "发布新版本" validates and saves (finance only)."""
    current = commissions.current_rule(db.session)
    versions = db.session.scalars(select(CommissionRuleVersion).order_by(CommissionRuleVersion.id.desc()).limit(20)).all()
    typed, error, preview = None, None, None
    if request.method == "POST":
        typed = request.form
        try:
            draft = commissions.parse_rule(request.form, request.form.get("note") or "")
            commissions.validate_rule(draft)
            preview = commissions.preview(draft)
            if request.form.get("action") == "publish":
                commissions.create_rule_version(db.session, current_admin(), draft)
                return redirect_after_post(url_for("admin.commission_rules"), status=302)
        except DomainError as exc:
            if isinstance(exc, Forbidden):
                raise
            error = exc.message
    elif current is not None:
        typed = {"referral_depth": current.referral_depth, "cooling_days": current.cooling_days, "note": "",
                 **{name: commissions.percent_text(getattr(current, f"{name}_bps"))
                    for name in commissions.PERCENT_FIELDS}}
        preview = commissions.preview(current)
    return render_template("admin/commission_rules.html", admin=current_admin(), current=current, versions=versions,
                           typed=typed, error=error, preview=preview, percent_fields=commissions.PERCENT_FIELDS,
                           percent=commissions.format_percent), 400 if error else 200


@bp.get("/payment-events")
def payment_events():
    """Signed pay notifies that need a person (money for cancelled orders, mismatched amounts …), and apart from
    them the notifies refused unread, counted per sender and reason."""
    page = page_of(db.session, select(PaymentEvent)
                   .where(PaymentEvent.needs_attention.is_(True), PaymentEvent.resolved_at.is_(None))
                   .order_by(PaymentEvent.id), arg_id("page"), scalars=True)
    return render_template("admin/payment_events.html", admin=current_admin(), page=page,
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
    error = None
    if request.method == "POST":
        try:
            upgrades.create_identity_rule(db.session, current_admin(), upgrades.IdentityRuleInput(
                target=request.form.get("target", ""), metric=request.form.get("metric", ""),
                threshold_fen=parse_yuan(request.form.get("threshold")),
                counts_at=request.form.get("counts_at", CountsAt.REDEEMED),
                grant_mode=request.form.get("grant_mode", ""), note=(request.form.get("note") or "").strip()[:200],
            ))
            return redirect(url_for("admin.identity_rules"))
        except DomainError as exc:
            if isinstance(exc, Forbidden):
                raise
            error = exc.message
    current = {target: upgrades.current_identity_rule(db.session, target) for target in UpgradeTarget}
    versions = db.session.scalars(select(IdentityRuleVersion).order_by(IdentityRuleVersion.id.desc()).limit(20)).all()
    return render_template(
        "admin/identity_rules.html", admin=current_admin(), current=current, versions=versions, error=error,
        targets=list(UpgradeTarget), metric_for=upgrades.METRIC_FOR_TARGET, entry_fees=upgrades.ENTRY_FEE_METRICS,
        counts=list(CountsAt), modes=list(GrantMode), summary=upgrades.rule_summary, metrics=UpgradeMetric,
    ), 400 if error else 200


@bp.get("/applications")
def applications():
    """Outlet and factory-store applications: those waiting for review first, then those waiting for the
    rule to hold, then the latest decisions."""
    page = page_of(db.session, select(IdentityApplication).where(APPLICATIONS_WAITING)
                   .order_by(IdentityApplication.status, IdentityApplication.id),  # "review" sorts before "waiting"
                   arg_id("page"), scalars=True)
    decided = db.session.scalars(
        select(IdentityApplication).where(IdentityApplication.status.not_in(OPEN_APPLICATION))
        .order_by(IdentityApplication.id.desc()).limit(20)
    ).all()
    return render_template("admin/applications.html", admin=current_admin(), page=page, decided=decided,
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
    done = upgrades.reject_application(db.session, current_admin(), application_id, request.form.get("reason", ""),
                                       submission_key=request.form.get(SUBMISSION_KEY))
    session["application_results"] = [f"「{done.shop_name}」：已拒绝"]
    return redirect(url_for("admin.applications"))


@bp.get("/restocks")
def restocks():
    """Factory stores' restock orders from the platform warehouse: ship (in parts if need be) or cancel."""
    platform = restock.platform_location_id(db.session)
    # Without a platform warehouse the query finds nothing: no location has id 0.
    page = page_of(db.session, restock.restock_orders(platform or 0, incoming=False), arg_id("page"), scalars=True)
    products = {p.id: p for p in db.session.scalars(select(Product))}
    return render_template("admin/restocks.html", admin=current_admin(), page=page, products=products,
                           name=lambda location_id: restock.location_name(db.session, location_id))


@bp.post("/restocks/<int:restock_id>/ship")
def ship_restock_view(restock_id: int):
    restock.ship_restock(db.session, _platform_party(), restock_id, restock.parse_quantities(request.form.to_dict()),
                         submission_key=request.form.get("submission_key"))
    return redirect(url_for("admin.restocks"))


@bp.post("/restocks/<int:restock_id>/cancel")
def cancel_restock_view(restock_id: int):
    restock.cancel_restock(db.session, _platform_party(), restock_id, request.form.get("reason", ""))
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
