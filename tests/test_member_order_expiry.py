"""The order list's lazy expiry (services/orders.py member_orders / expire_member_orders), without HTTP: one
conditional UPDATE cancels the member's due orders and releases their stock; orders that reached WeChat, orders
not yet due and other members' orders are left alone; nothing is written when nothing is due."""
from datetime import timedelta

from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import Order, OrderStatus, Payment, StockMovement, StockReason
from dingqiao.models.base import utcnow
from dingqiao.services.orders import expire_member_orders, member_orders
from tests.factories import make_user
from tests.test_orders_payments import level, order_state, place, shop  # noqa: F401 - shop is a fixture


def releases(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(StockMovement)
                                 .where(StockMovement.reason == StockReason.RELEASE))


def test_the_list_expires_due_orders_at_once_and_releases_their_stock(app, shop):
    long_ago = utcnow() - timedelta(minutes=30)
    due = [place(app, shop, quantity=2, now=long_ago), place(app, shop, quantity=1, now=long_ago)]
    at_wechat = place(app, shop, quantity=1, now=long_ago)
    fresh = place(app, shop, quantity=1)
    with app.app_context():
        other = make_user("别人").id
    theirs = place(app, shop, quantity=1, user_id=other, now=long_ago)
    with app.app_context():
        order_id = db.session.scalar(select(Order.id).where(Order.order_no == at_wechat))
        db.session.add(Payment(order_id=order_id, out_trade_no=at_wechat, amount_fen=shop.price_fen))
        db.session.commit()
    assert level(app, shop) == (10, 6)

    with app.app_context():
        listed = {order.order_no: (order.status, order.cancel_reason)
                  for order in member_orders(db.session, shop.member_id, limit=20)}
    assert {no: listed[no] for no in due} == {no: (OrderStatus.CANCELLED, "超时未支付") for no in due}
    assert listed[at_wechat][0] == listed[fresh][0] == OrderStatus.PENDING_PAYMENT  # WeChat's: the cron asks first
    assert order_state(app, theirs).status == OrderStatus.PENDING_PAYMENT  # only this member's orders
    assert level(app, shop) == (10, 3) and releases(app) == 2  # 2 + 1 units back, one movement per line

    with app.app_context():
        assert expire_member_orders(db.session, shop.member_id) == 0  # nothing due any more: nothing written
        pending = member_orders(db.session, shop.member_id, OrderStatus.PENDING_PAYMENT, limit=20)
        assert sorted(order.order_no for order in pending) == sorted([at_wechat, fresh])
    assert level(app, shop) == (10, 3) and releases(app) == 2
