"""A member's own orders: list, detail with the pickup code, pay, cancel, refund request.
Another person's order number answers 404, exactly like a missing one."""
import io

import qrcode
import qrcode.image.svg
from flask import Blueprint, abort, current_app, make_response, request, url_for

from ...extensions import db
from ...models import OrderStatus
from ...services import orders as order_service
from ...services.payments import cancel_member_order, check_payment, demo_pay as pay_in_demo, start_payment
from ...services.refunds import request_refund
from ...wechat import WeChatError, pay_gateways
from ...web import public_url, redirect_after_post, render_page
from ..common import current_member, require_member
from .forms import DemoPayForm, RefundForm

bp = Blueprint("orders", __name__, url_prefix="/orders")
bp.before_request(require_member)

PAGE_SIZE = 20


def pickup_url(code: str) -> str:
    """What the pickup QR holds: the outlet's confirm page for this code (scanned by outlet staff)."""
    return public_url(f"/outlet/redeem/{code}")


@bp.get("/")
def index():
    status = request.args.get("status", "")
    orders = order_service.member_orders(db.session, current_member().id, status, limit=PAGE_SIZE)
    return render_page("orders/index.html", block="order_list", orders=orders, status=status,
                       statuses=list(OrderStatus))


@bp.get("/<order_no>")
def detail(order_no: str):
    order = order_service.get_member_order(db.session, current_member().id, order_no)
    return render_page("orders/detail.html", order=order, pickup_url=pickup_url(order.pickup_code) if order.pickup_code else None)


@bp.get("/<order_no>/pickup-qr.svg")
def pickup_qr(order_no: str):
    order = order_service.get_member_order(db.session, current_member().id, order_no)
    if order.status != OrderStatus.PAID or not order.pickup_code:
        abort(404)
    image = qrcode.make(pickup_url(order.pickup_code), image_factory=qrcode.image.svg.SvgPathImage, box_size=10,
                        border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    response = make_response(buffer.getvalue())
    response.mimetype = "image/svg+xml"
    # The code is the key to the goods: never kept by a shared cache or the browser's disk cache.
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/<order_no>/pay")
def pay(order_no: str):
    """Start WeChat Pay: the fragment carries the JS-bridge parameters that app.js hands to WeChat."""
    member = current_member()
    try:
        params = start_payment(
            db.session, pay_gateways(current_app), member, order_no,
            notify_url=_notify_url(), client_ip=request.remote_addr or "127.0.0.1",
        )
    except WeChatError as exc:
        current_app.logger.warning("unified order failed for %s: %s", order_no, exc)
        return render_page("_error.html", message=exc.message, status_code=502)
    return render_page("orders/_wechat_pay.html", params=params,
                       return_url=url_for("orders.detail", order_no=order_no, check=1))


@bp.post("/<order_no>/demo-pay")
def demo_pay(order_no: str):
    """Demo mode's "模拟支付": a v3 notify signed with the demo "WeChat Pay" key and encrypted with the demo APIv3
    key, through the real verify-decrypt-apply path."""
    if not current_app.config["DINGQIAO_DEMO"]:
        abort(404)
    form = DemoPayForm()
    pay_in_demo(db.session, pay_gateways(current_app).current,  # the demo merchant, on API v3
                current_member(), order_no, submission_key=form.key)
    return _back_to(order_no)


@bp.post("/<order_no>/check-payment")
def check(order_no: str):
    try:
        check_payment(db.session, pay_gateways(current_app), current_member().id, order_no)
    except WeChatError as exc:
        return render_page("_error.html", message=exc.message, status_code=502)
    return _back_to(order_no)


@bp.post("/<order_no>/cancel")
def cancel(order_no: str):
    cancel_member_order(db.session, pay_gateways(current_app), current_member().id, order_no)
    return _back_to(order_no)


@bp.post("/<order_no>/refund")
def refund(order_no: str):
    """申请退款. The reason's rule is the service's: a refusal lands in the page's message area, the form (htmx)
    keeping what was typed."""
    form = RefundForm()
    request_refund(db.session, current_member().id, order_no, form.reason.data or "", submission_key=form.key)
    return _back_to(order_no)


def _notify_url() -> str:
    return public_url(url_for("wechat.pay_notify"))


def _back_to(order_no: str):
    return redirect_after_post(url_for("orders.detail", order_no=order_no))
