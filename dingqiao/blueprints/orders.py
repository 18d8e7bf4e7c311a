"""A member's own orders. Another person's order number answers 404, exactly like a missing one."""
from flask import Blueprint, request
from sqlalchemy import select

from ..extensions import db
from ..models import Order, OrderStatus
from ..web import render_page
from .access import current_member, owned_or_404, require_member

bp = Blueprint("orders", __name__, url_prefix="/orders")
bp.before_request(require_member)

PAGE_SIZE = 20


@bp.get("/")
def index():
    member = current_member()
    status = request.args.get("status", "")
    query = select(Order).where(Order.user_id == member.id).order_by(Order.created_at.desc()).limit(PAGE_SIZE)
    if status in set(OrderStatus):
        query = query.where(Order.status == status)
    orders = db.session.execute(query).scalars().all()
    return render_page("orders/index.html", block="order_list", orders=orders, status=status, statuses=list(OrderStatus))


@bp.get("/<order_no>")
def detail(order_no: str):
    order = owned_or_404(Order, Order.user_id, current_member().id, order_no=order_no)
    return render_page("orders/detail.html", order=order)
