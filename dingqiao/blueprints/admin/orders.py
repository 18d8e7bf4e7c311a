"""One order seen by the operations team: payments, commission lines, stock movements, messages, refunds.
Read-only, for any admin role; the refund buttons post to the refunds queue's own routes, whose service lets
finance only."""
from flask import Blueprint, render_template

from ...extensions import db
from ...models import MONEY_REVIEWERS, CaseStatus, Identity, StockReason
from ...services.admin_queries import order_detail
from ..common import current_admin, require_admin

bp = Blueprint("admin_orders", __name__, url_prefix="/admin/orders")
bp.before_request(require_admin())


@bp.get("/<int:order_id>")
def detail(order_id: int):
    admin = current_admin()
    return render_template("admin/orders/detail.html", admin=admin, d=order_detail(db.session, order_id),
                           can_review_refunds=admin.role in MONEY_REVIEWERS, stock_reasons=StockReason.labels(),
                           Identity=Identity, CaseStatus=CaseStatus)
