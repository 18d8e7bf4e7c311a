"""Admin area (desktop): username + password login, and the home page the admin issue builds on."""
from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import login_user, logout_user
from sqlalchemy import func, select

from ..extensions import db
from ..models import Order, OrderStatus, Product, Refund, RefundStatus, User, Withdrawal, WithdrawalStatus
from ..services.accounts import InvalidCredentials, authenticate_admin
from ..services.refunds import approve_refund, reject_refund
from ..wechat import pay_gateway
from .access import current_admin, require_admin
from .auth import safe_next

bp = Blueprint("admin", __name__, url_prefix="/admin")
_require_admin = require_admin()

PUBLIC_ENDPOINTS = {"admin.login"}


@bp.before_request
def guard():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    return _require_admin()


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = request.values.get("next") or url_for("admin.home")
    if request.method == "GET":
        if current_admin() is not None:
            return redirect(safe_next(next_url))
        return render_template("admin/login.html", next_url=next_url)
    try:
        admin = authenticate_admin(db.session, request.form.get("username", ""), request.form.get("password", ""))
    except InvalidCredentials as exc:
        return render_template("admin/login.html", next_url=next_url, error=exc.message,
                               username=request.form.get("username", "")), 401
    login_user(admin)
    return redirect(safe_next(next_url))


@bp.post("/logout")
def logout():
    logout_user()
    return redirect(url_for("admin.login"))


@bp.get("/")
def home():
    counts = {
        "members": db.session.scalar(select(func.count()).select_from(User)),
        "products_on_sale": db.session.scalar(
            select(func.count()).select_from(Product).where(Product.is_on_sale.is_(True))
        ),
        "orders_awaiting_pickup": db.session.scalar(
            select(func.count()).select_from(Order).where(Order.status == OrderStatus.PAID)
        ),
        "withdrawals_pending": db.session.scalar(
            select(func.count()).select_from(Withdrawal).where(Withdrawal.status == WithdrawalStatus.REQUESTED)
        ),
    }
    return render_template("admin/home.html", admin=current_admin(), counts=counts)


@bp.get("/refunds")
def refunds():
    """Refund requests waiting for finance (and failed ones to retry)."""
    rows = db.session.execute(
        select(Refund, Order)
        .join(Order, Order.id == Refund.order_id)
        .where(Refund.status.in_([RefundStatus.REQUESTED, RefundStatus.FAILED]))
        .order_by(Refund.created_at)
    ).all()
    return render_template("admin/refunds.html", admin=current_admin(), rows=rows)


@bp.post("/refunds/<int:refund_id>/approve")
def approve_refund_view(refund_id: int):
    approve_refund(db.session, pay_gateway(current_app.config), current_admin(), refund_id)
    return redirect(url_for("admin.refunds"))


@bp.post("/refunds/<int:refund_id>/reject")
def reject_refund_view(refund_id: int):
    reject_refund(db.session, current_admin(), refund_id, request.form.get("reason", ""))
    return redirect(url_for("admin.refunds"))
