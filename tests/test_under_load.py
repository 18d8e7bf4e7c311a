"""The whole loop under pressure, on the real deployable: gunicorn (several workers, gthread) serving the app on
127.0.0.1 against the suite's database — a SQLite file, or the scratch Postgres database in the Postgres run.

- Flash sale: 200 members who each have the product in their cart press 提交订单 at the same moment for 50
  units; exactly 50 orders exist, every one is paid by a signed notify, stock never goes below zero.
- Crash: members buy, pay and pick up while the server is killed with SIGKILL (master and workers at once);
  after a restart every acknowledged payment and pickup is there, WeChat's retried notifies change nothing,
  and every invariant holds.
"""
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, text

from dingqiao.extensions import db
from dingqiao.models import AdminRole, BindingSource, Order, OrderStatus, Payment, StockLevel, User
from dingqiao.services.accounts import create_admin
from dingqiao.services.audit import verify_audit_chain
from dingqiao.services.commissions import create_rule_version
from dingqiao.services.invariants import check_money, check_stock
from dingqiao.services.referrals import bind_upline
from tests.conftest import on_postgres
from tests.factories import make_outlet, make_product, make_user, stock
from tests.gunicorn_server import Visitor, notify_paid, running_gunicorn
from tests.money_world import WORKED_EXAMPLE_RULE, build_world

pytestmark = pytest.mark.load

BUYERS, UNITS = 200, 50


def assert_invariants(app) -> None:
    with app.app_context():
        assert check_money(db.session) == []
        assert check_stock(db.session) == []
        assert verify_audit_chain(db.session) is None
        assert db.session.scalar(select(func.count()).select_from(StockLevel).where(
            (StockLevel.on_hand < 0) | (StockLevel.reserved < 0) | (StockLevel.reserved > StockLevel.on_hand))) == 0
        if not on_postgres():
            assert db.session.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_a_flash_sale_of_50_units_to_200_buyers_sells_exactly_50(app, database_url, tmp_path):
    world = build_world(app, units=UNITS)
    with app.app_context():
        sharer = db.session.get(User, world.parent)
        buyers = [make_user(f"抢购{n}") for n in range(BUYERS)]
        for buyer in buyers[::4]:  # some arrive by a share link, so the sale also writes commissions
            bind_upline(db.session, buyer.id, sharer.referral_code, BindingSource.LINK)
        buyer_ids = [buyer.id for buyer in buyers]
        openids = {buyer.id: buyer.openid for buyer in buyers}
    with running_gunicorn(database_url, tmp_path / "gunicorn.log", workers=3, threads=8) as server:
        visitors = [Visitor(server.url) for _ in buyer_ids]

        def get_ready(pair):
            visitor, user_id = pair
            visitor.log_in(user_id)
            visitor.put_in_cart(world.product_id)

        with ThreadPoolExecutor(32) as pool:
            list(pool.map(get_ready, zip(visitors, buyer_ids)))

        start = threading.Barrier(BUYERS)

        def press_submit(visitor):
            visitor.drop_idle_connections()  # the last buyer got ready long after the first: no keep-alive bet
            start.wait()
            return visitor.check_out(world.outlet_id)

        began = time.monotonic()
        with ThreadPoolExecutor(BUYERS) as pool:
            outcomes = list(pool.map(press_submit, visitors))
        sold_out_after = time.monotonic() - began

        orders = {order_no: user_id for (status, order_no), user_id in zip(outcomes, buyer_ids) if order_no}
        statuses = sorted({status for status, _ in outcomes})
        assert len(orders) == UNITS, (len(orders), statuses)
        assert statuses == [302, 409], "every buyer got an order or the sold-out answer, nothing else"
        with app.app_context():
            level = db.session.scalar(select(StockLevel).where(StockLevel.product_id == world.product_id))
            assert (level.on_hand, level.reserved) == (UNITS, UNITS)

        def pay(item):
            order_no, user_id = item
            return notify_paid(server.url, order_no, 10_000, openids[user_id]).status_code

        with ThreadPoolExecutor(25) as pool:
            assert set(pool.map(pay, orders.items())) == {204}
        assert server.unhandled_errors() == []
    with app.app_context():
        paid = db.session.scalars(select(Order.order_no).where(Order.status == OrderStatus.PAID)).all()
        assert sorted(paid) == sorted(orders)
        assert db.session.scalar(select(func.count()).select_from(Order)) == UNITS
        assert db.session.scalar(select(func.count()).select_from(Payment)) == UNITS
    assert_invariants(app)
    print(f"flash sale: {BUYERS} buyers, {UNITS} units, sold out in {sold_out_after:.2f} s")


def test_kill_9_while_paying_and_redeeming_loses_nothing_that_was_acknowledged(app, database_url, tmp_path):
    with app.app_context():
        product = make_product(2990)
        owner = make_user("店主")
        outlet = make_outlet(owner)
        stock(outlet, product, 10_000)
        buyers = [make_user(f"顾客{n}") for n in range(12)]
        product_id, outlet_id, owner_id = product.id, outlet.id, owner.id
        people = [(buyer.id, buyer.openid) for buyer in buyers]
    with app.app_context():
        create_rule_version(db.session, create_admin(db.session, "fin", "long-enough-pw", AdminRole.FINANCE),
                            WORKED_EXAMPLE_RULE)

    acknowledged_paid, acknowledged_redeemed, sent_notifies, redeem_answers = set(), set(), {}, {}
    lock, stop = threading.Lock(), threading.Event()

    def shopper(buyer_id: int, openid: str, base_url: str) -> None:
        member, shop = Visitor(base_url, timeout=10), Visitor(base_url, timeout=10)
        member.log_in(buyer_id)
        shop.log_in(owner_id)
        while not stop.is_set():
            member.put_in_cart(product_id)
            status, order_no = member.check_out(outlet_id)
            assert status == 302 and order_no
            with lock:
                sent_notifies[order_no] = openid
            if notify_paid(base_url, order_no, 2990, openid, timeout=10).status_code == 204:
                with lock:
                    acknowledged_paid.add(order_no)
            if random.random() < 0.6:
                code = member.pickup_code(order_no)
                answer = shop.redeem(code)
                with lock:
                    redeem_answers[answer.status_code] = redeem_answers.get(answer.status_code, 0) + 1
                if answer.status_code == 200 and "核销成功" in answer.text:
                    with lock:
                        acknowledged_redeemed.add(order_no)

    def shop_until_killed(base_url: str) -> tuple[list[threading.Thread], list[Exception]]:
        errors = []

        def run(person):
            try:
                shopper(*person, base_url)
            except Exception as exc:  # the kill cuts requests off mid-flight: expected, recorded
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(person,)) for person in people[:6]]
        for thread in threads:
            thread.start()
        return threads, errors

    log = tmp_path / "gunicorn.log"
    with running_gunicorn(database_url, log, workers=3, threads=4) as server:
        threads, cut_off = shop_until_killed(server.url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(acknowledged_paid) < 40 or len(acknowledged_redeemed) < 15):
            time.sleep(0.05)
        server.kill_hard()  # in the middle of the traffic
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert len(acknowledged_paid) >= 40 and len(acknowledged_redeemed) >= 15, (
            f"not enough traffic before the kill: {len(acknowledged_paid)} paid, {len(acknowledged_redeemed)} picked up, "
            f"redeem answers {redeem_answers}, errors: {cut_off[:3]}")
        assert cut_off, "the kill landed between requests: no request was in flight"
        print(f"crash: {len(acknowledged_paid)} payments and {len(acknowledged_redeemed)} pickups acknowledged, "
              f"{len(cut_off)} requests cut off by kill -9")

        server.start()  # the same database, after the crash
        with app.app_context():
            states = dict(db.session.execute(select(Order.order_no, Order.status)).all())
        for order_no in acknowledged_paid:
            assert states[order_no] in (OrderStatus.PAID, OrderStatus.COMPLETED), order_no
        for order_no in acknowledged_redeemed:
            assert states[order_no] == OrderStatus.COMPLETED, order_no
        assert_invariants(app)

        # WeChat retries every notify it has not seen acknowledged (and some it has): nothing is paid twice.
        for order_no, openid in sent_notifies.items():
            assert notify_paid(server.url, order_no, 2990, openid).status_code in (204, 400)
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Payment).where(Payment.status == "paid")) == \
                db.session.scalar(select(func.count()).select_from(Order).where(
                    Order.status.in_([OrderStatus.PAID, OrderStatus.COMPLETED])))
            assert set(sent_notifies) <= {
                no for no, status in db.session.execute(select(Order.order_no, Order.status))
                if status in (OrderStatus.PAID, OrderStatus.COMPLETED)}
        assert_invariants(app)

        # And the restarted server trades normally.
        visitor = Visitor(server.url)
        visitor.log_in(people[-1][0])
        visitor.put_in_cart(product_id)
        status, order_no = visitor.check_out(outlet_id)
        assert status == 302 and notify_paid(server.url, order_no, 2990, people[-1][1]).status_code == 204
        assert server.unhandled_errors() == [], "no request got a 500, before or after the crash"
