"""No double submits (issue 21): every money form carries a one-time key (services/submissions.py). The same key
twice writes once and answers with the first result; someone else's key is refused. First the services, without
HTTP; then the views, posting the same form twice."""
import re

import pytest
from sqlalchemy import func, select, update

from dingqiao import create_app
from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    AdminUser,
    AuditLog,
    LedgerEntry,
    LedgerKind,
    Order,
    OrderStatus,
    Payment,
    PaymentEvent,
    Refund,
    RefundStatus,
    ServiceCase,
    ServiceMessage,
    SubmissionKey,
    User,
    Withdrawal,
    WithdrawalStatus,
)
from dingqiao.services import submissions
from dingqiao.services.accounts import create_admin
from dingqiao.services.orders import place_order
from dingqiao.services.payments import demo_pay, start_payment
from dingqiao.services.redemption import redeem
from dingqiao.services.refunds import approve_refund, reject_refund, request_refund
from dingqiao.services.service_cases import add_admin_reply, close_case_by_admin, open_case
from dingqiao.services.withdrawals import (
    WithdrawalError,
    WithdrawalRules,
    approve_withdrawal,
    mark_paid_offline,
    quote_withdrawal,
    reject_withdrawal,
    request_withdrawal,
    withdrawable_fen,
)
from dingqiao.wechat import pay_gateways
from tests.conftest import csrf_token, log_in_admin, open_for_business
from tests.factories import make_outlet, make_product, make_user, stock
from tests.money_world import assert_money_consistent, balances, build_world, buy, pay, pick_up
from tests.test_access import log_in
from tests.test_money import paid_order_with_refund_requested

RULES = WithdrawalRules()


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def earner(app):
    """The world's parent with ¥10.00 settled (a ¥100 order picked up): what a withdrawal needs."""
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    pick_up(app, world, order_no)
    assert balances(app, world.parent) == (1000, 0)
    return world


def waiting_withdrawal(app, world, amount_fen: int = 500) -> int:
    with app.app_context():
        return request_withdrawal(db.session, world.parent, amount_fen, RULES).id


# ------------------------------------------------------------------------------------------- services

def test_a_withdrawal_with_the_same_key_twice_is_requested_once(app, earner):
    key = submissions.new_key()
    with app.app_context():
        first = request_withdrawal(db.session, earner.parent, 600, RULES, submission_key=key)
        again = request_withdrawal(db.session, earner.parent, 600, RULES, submission_key=key)
        assert again.id == first.id and again.withdrawal_no == first.withdrawal_no
        assert count(Withdrawal) == 1
        assert count(LedgerEntry, LedgerEntry.kind == LedgerKind.WITHDRAWAL_REQUESTED) == 1
        with pytest.raises(submissions.SubmissionRefused):  # the key was drawn for someone else
            request_withdrawal(db.session, earner.grandparent, 100, RULES, submission_key=key)
    assert balances(app, earner.parent) == (400, 0)
    assert_money_consistent(app)


def test_a_refused_withdrawal_leaves_its_key_free_for_the_corrected_request(app, earner):
    key = submissions.new_key()
    with app.app_context():
        with pytest.raises(Exception, match="可用余额不足"):
            request_withdrawal(db.session, earner.parent, 2000, RULES, submission_key=key)
        assert db.session.get(SubmissionKey, key) is None
        done = request_withdrawal(db.session, earner.parent, 1000, RULES, submission_key=key)
        assert done.amount_fen == 1000 and count(Withdrawal) == 1


def test_the_quote_names_amount_and_fee_and_all_means_the_withdrawable_most(app, earner):
    rules = WithdrawalRules(min_fen=100, fee_bps=100, daily_cap_fen=800)
    with app.app_context():
        assert withdrawable_fen(db.session, earner.parent, rules) == 800  # the daily cap, below the ¥10 balance
        everything = quote_withdrawal(db.session, earner.parent, None, rules)
        assert (everything.amount_fen, everything.fee_fen, everything.payout_fen) == (800, 8, 792)
        assert quote_withdrawal(db.session, earner.parent, 500, rules).fee_fen == 5
        with pytest.raises(WithdrawalError, match="本次最多可提现 ¥8.00"):
            quote_withdrawal(db.session, earner.parent, 900, rules)
        with pytest.raises(WithdrawalError, match="单笔提现至少"):
            quote_withdrawal(db.session, earner.parent, 50, rules)
        assert count(Withdrawal) == 0  # a quote writes nothing
        with pytest.raises(WithdrawalError, match="可提现金额不足"):
            quote_withdrawal(db.session, earner.buyer, None, rules)  # the buyer earned nothing


def test_finance_acting_twice_with_one_key_acts_once(app, fake_wechat, earner):
    approve_id, offline_id, reject_id = (waiting_withdrawal(app, earner, 200) for _ in range(3))
    with app.app_context():
        finance = db.session.get(AdminUser, earner.finance_id)
        gateway = pay_gateways(app)
        keys = {name: submissions.new_key() for name in ("approve", "offline", "reject")}
        for _ in range(2):
            paid = approve_withdrawal(db.session, gateway, finance, approve_id, submission_key=keys["approve"])
            offline = mark_paid_offline(db.session, finance, offline_id, "银行转账 001", submission_key=keys["offline"])
            rejected = reject_withdrawal(db.session, finance, reject_id, "核实中", submission_key=keys["reject"])
        assert (paid.status, offline.status, rejected.status) == (
            WithdrawalStatus.PAID, WithdrawalStatus.PAID, WithdrawalStatus.REJECTED)
        assert len(fake_wechat.transfers) == 1  # WeChat was asked once
        assert count(LedgerEntry, LedgerEntry.kind == LedgerKind.WITHDRAWAL_PAID) == 2
        assert count(LedgerEntry, LedgerEntry.kind == LedgerKind.WITHDRAWAL_RETURNED) == 1
        assert count(AuditLog, AuditLog.action.like("withdrawal.%")) == 4  # approve, paid, paid (offline), rejected
        other = create_admin(db.session, "finance2", "long-enough-pw", AdminRole.FINANCE)
        with pytest.raises(submissions.SubmissionRefused):
            reject_withdrawal(db.session, other, reject_id, "核实中", submission_key=keys["reject"])
    assert_money_consistent(app)


def test_a_refund_request_and_finance_decisions_with_one_key_happen_once(app, fake_wechat):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    request_key, approve_key = submissions.new_key(), submissions.new_key()
    with app.app_context():
        first_id = request_refund(db.session, world.buyer, order_no, "不想要了", submission_key=request_key).id
        again = request_refund(db.session, world.buyer, order_no, "不想要了", submission_key=request_key)
        assert again.id == first_id and count(Refund) == 1  # not "已有退款申请在处理中"
        with pytest.raises(submissions.SubmissionRefused):
            request_refund(db.session, world.parent, order_no, "不想要了", submission_key=request_key)
    order_no, refund_id = paid_order_with_refund_requested(app, fake_wechat, world)
    with app.app_context():
        finance = db.session.get(AdminUser, world.finance_id)
        for _ in range(2):
            refund = approve_refund(db.session, pay_gateways(app), finance, refund_id, submission_key=approve_key)
        assert refund.status == RefundStatus.SUCCEEDED
        assert count(AuditLog, AuditLog.action == "refund.approve", AuditLog.target_id == str(refund_id)) == 1
        assert len(fake_wechat.orders[order_no].refunds) == 1
        reject_key = submissions.new_key()
        for _ in range(2):  # the first request (of the first order) is still waiting
            rejected = reject_refund(db.session, finance, first_id, "超出售后期", submission_key=reject_key)
        assert rejected.status == RefundStatus.REJECTED
        assert count(AuditLog, AuditLog.action == "refund.reject") == 1
    assert_money_consistent(app)


def test_a_pickup_confirmed_twice_with_one_key_answers_success_twice(app):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    key = submissions.new_key()
    with app.app_context():
        code = db.session.scalar(select(Order.pickup_code).where(Order.order_no == order_no))
        first = redeem(db.session, world.outlet_owner, code, submission_key=key)
        again = redeem(db.session, world.outlet_owner, code, submission_key=key)  # not "已于…使用过"
        assert again.id == first.id and again.status == OrderStatus.COMPLETED
        assert count(AuditLog, AuditLog.action == "order.redeem") == 1
        with pytest.raises(submissions.SubmissionRefused):
            redeem(db.session, world.factory_owner, code, submission_key=key)
    assert balances(app, world.parent) == (1000, 0)
    assert_money_consistent(app)


def test_a_case_and_the_teams_answers_with_one_key_are_written_once(app, tmp_path):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    folder = str(tmp_path / "uploads")
    open_key, reply_key, close_key = (submissions.new_key() for _ in range(3))
    with app.app_context():
        cases = [open_case(db.session, world.buyer, kind="refund", subject="", body="漏液了", order_no=order_no,
                           upload_folder=folder, max_bytes=1 << 20, submission_key=open_key) for _ in range(2)]
        assert cases[0].id == cases[1].id and count(ServiceCase) == 1 and count(Refund) == 1
        finance = db.session.get(AdminUser, world.finance_id)
        replies = [add_admin_reply(db.session, finance, cases[0].id, "已安排退款", upload_folder=folder,
                                   max_bytes=1 << 20, submission_key=reply_key) for _ in range(2)]
        assert replies[0].id == replies[1].id
        assert count(ServiceMessage, ServiceMessage.author_admin_id == finance.id) == 1
        for _ in range(2):  # not "该服务单已关闭" the second time
            closed = close_case_by_admin(db.session, finance, cases[0].id, submission_key=close_key)
        assert closed.status == "closed" and count(AuditLog, AuditLog.action == "service.close") == 1
        with pytest.raises(submissions.SubmissionRefused):
            open_case(db.session, world.parent, kind="other", subject="", body="?", upload_folder=folder,
                      max_bytes=1 << 20, submission_key=open_key)


def test_starting_a_payment_twice_stores_one_payment_and_answers_the_same(app, fake_wechat):
    world = build_world(app)
    order_no = buy(app, world)
    with app.app_context():
        buyer = db.session.get(User, world.buyer)
        answers = [start_payment(db.session, pay_gateways(app).current, buyer, order_no, notify_url="http://x/n",
                                 client_ip="127.0.0.1") for _ in range(2)]
        assert answers[0]["package"] == answers[1]["package"]
        assert count(Payment) == 1


@pytest.fixture
def demo_app(app_config):
    """Demo mode (模拟支付 signs a v3 notify with the demo merchant's key), on the test's own database."""
    app_config.update(DINGQIAO_DEMO=True, WECHAT_APP_ID="", WECHAT_APP_SECRET="", WECHAT_MCH_ID="", WECHAT_MCH_KEY="")
    demo = create_app(app_config)
    with demo.app_context():
        db.create_all()
        open_for_business(db.session)
        member = make_user("演示", openid="demo-x")
        outlet = make_outlet(make_user("店"))
        product = make_product(1990)
        stock(outlet, product, 3)
        order = place_order(db.session, member, outlet.id, {product.id: 1}, timeout_minutes=15, from_cart=False)
        demo.config["TEST_ORDER"] = (order.order_no, member.id)
    try:
        yield demo
    finally:
        with demo.app_context():
            db.drop_all()
            db.engine.dispose()


def test_demo_pay_twice_with_one_key_sends_one_notify(demo_app):
    order_no, member_id = demo_app.config["TEST_ORDER"]
    key = submissions.new_key()
    with demo_app.app_context():
        member = db.session.get(User, member_id)
        for _ in range(2):
            order = demo_pay(db.session, pay_gateways(demo_app).current, member, order_no, submission_key=key)
            assert order.status == OrderStatus.PAID
        # Without the key the second tap is a DUPLICATE notify: one more event row
        assert [e.kind for e in db.session.scalars(select(PaymentEvent))] == ["accepted"]
        stranger = make_user("路人")
        with pytest.raises(submissions.SubmissionRefused):
            demo_pay(db.session, pay_gateways(demo_app).current, stranger, order_no, submission_key=key)


# ------------------------------------------------------------------------------------------- over HTTP

def form_key(html: str) -> str:
    return re.search(r'name="submission_key" value="([^"]+)"', html).group(1)


def test_the_wallet_reviews_then_requests_once_however_often_the_form_is_posted(app, client, earner):
    log_in(client, earner.parent)
    token = csrf_token(client)
    page = client.get("/wallet/").get_data(as_text=True)
    assert "全部提现" in page and 'action="/wallet/withdrawals/review"' in page
    review = client.post("/wallet/withdrawals/review", data={"amount": "6.5", "phone": "13900001111"},
                         headers={"X-CSRFToken": token, "HX-Request": "true"})
    body = review.get_data(as_text=True)
    assert review.status_code == 200 and "<html" not in body and 'id="withdraw-form"' in body
    assert 'hx-confirm="确认提现 ¥6.50？手续费 ¥0.00，实际到账 ¥6.50。"' in body
    with app.app_context():
        assert count(Withdrawal) == 0  # reviewing moves nothing
    form = {"amount": re.search(r'name="amount" value="([^"]+)"', body).group(1), "phone": "13900001111",
            "submission_key": form_key(body)}
    answers = [client.post("/wallet/withdrawals", data=form, headers={"X-CSRFToken": token, "HX-Request": "true"})
               for _ in range(2)]
    assert [(a.status_code, a.headers.get("HX-Redirect")) for a in answers] == [(204, "/wallet/")] * 2
    with app.app_context():
        assert count(Withdrawal) == 1 and db.session.scalar(select(Withdrawal.amount_fen)) == 650
    assert balances(app, earner.parent) == (350, 0)
    wallet = client.get("/wallet/").get_data(as_text=True)
    assert "提现申请已提交，预计" in wallet and "审核中" in wallet
    assert "提现申请已提交" not in client.get("/wallet/").get_data(as_text=True)  # said once
    fresh = client.post("/wallet/withdrawals", data={**form, "submission_key": submissions.new_key(), "amount": "1"},
                        headers={"X-CSRFToken": token})
    assert fresh.status_code == 303  # a new drawing of the form is a new request
    with app.app_context():
        assert count(Withdrawal) == 2
    assert_money_consistent(app)


def test_all_of_it_fills_the_withdrawable_most_and_bad_input_is_told_in_chinese(app, client, earner):
    log_in(client, earner.parent)
    headers = {"X-CSRFToken": csrf_token(client), "HX-Request": "true"}
    everything = client.post("/wallet/withdrawals/review", data={"fill": "max", "phone": "13900001111"},
                             headers=headers).get_data(as_text=True)
    assert 'value="¥10.00"' in everything and "确认提现 ¥10.00？" in everything
    too_much = client.post("/wallet/withdrawals/review", data={"amount": "12", "phone": "13900001111"}, headers=headers)
    assert too_much.status_code == 409 and "本次最多可提现 ¥10.00" in too_much.get_data(as_text=True)
    with app.app_context():
        db.session.execute(update(User).where(User.id == earner.parent).values(phone=None))
        db.session.commit()
    no_phone = client.post("/wallet/withdrawals/review", data={"amount": "5"}, headers=headers)
    assert no_phone.status_code == 400 and "手机号" in no_phone.get_data(as_text=True)
    stale = client.post("/wallet/withdrawals", data={"amount": "5", "phone": "13900001111",
                                                     "submission_key": "not a key of ours"}, headers=headers)
    assert stale.status_code == 400 and "页面已过期" in stale.get_data(as_text=True)
    with app.app_context():
        assert count(Withdrawal) == 0


@pytest.mark.parametrize("form", [{"amount": "1e3"}, {"amount": ""}, {"amount": "9" * 20}, {"amount": "-1"},
                                  {"amount": "５"}, {"fill": "everything"}, {"amount": "5", "payee_name": "x" * 500}])
def test_junk_sent_to_the_review_is_answered_in_chinese(app, client, earner, form):
    log_in(client, earner.parent)
    answer = client.post("/wallet/withdrawals/review", data={"phone": "13900001111", **form},
                         headers={"X-CSRFToken": csrf_token(client), "HX-Request": "true"})
    body = answer.get_data(as_text=True)
    if answer.status_code == 200:  # a long payee name is cut, as the request itself cuts it
        assert "确认提现 ¥5.00？" in body
    else:
        assert 400 <= answer.status_code < 500 and "<html" not in body and re.search(r"[\u4e00-\u9fff]", body)


def test_another_members_key_is_refused_over_http(app, client, earner):
    key = submissions.new_key()
    with app.app_context():
        request_withdrawal(db.session, earner.parent, 100, RULES, submission_key=key)
    log_in(client, earner.grandparent)
    answer = client.post("/wallet/withdrawals", data={"amount": "1", "phone": "13900001111", "submission_key": key},
                         headers={"X-CSRFToken": csrf_token(client), "HX-Request": "true"})
    assert answer.status_code == 409 and "已提交过" in answer.get_data(as_text=True)
    with app.app_context():
        assert count(Withdrawal) == 1


def test_the_outlet_confirms_a_pickup_twice_and_sees_success_twice(app, client):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        code = db.session.scalar(select(Order.pickup_code).where(Order.order_no == order_no))
    log_in(client, world.outlet_owner)
    shown = client.get("/outlet/redeem/lookup", query_string={"code": code}, headers={"HX-Request": "true"})
    key = form_key(shown.get_data(as_text=True))
    answers = [client.post(f"/outlet/redeem/{code}", data={"submission_key": key},
                           headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client)}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert all("核销成功" in a.get_data(as_text=True) for a in answers)
    with app.app_context():
        assert count(AuditLog, AuditLog.action == "order.redeem") == 1
    assert_money_consistent(app)


def test_the_member_asks_for_a_refund_twice_and_one_request_is_made(app, client):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    log_in(client, world.buyer)
    key = form_key(client.get(f"/orders/{order_no}").get_data(as_text=True).split("申请退款")[1])
    answers = [client.post(f"/orders/{order_no}/refund", data={"reason": "买错了", "submission_key": key},
                           headers={"X-CSRFToken": csrf_token(client)}) for _ in range(2)]
    assert [(a.status_code, a.headers["Location"]) for a in answers] == [(303, f"/orders/{order_no}")] * 2
    with app.app_context():
        assert count(Refund) == 1


def test_finance_posting_a_decision_twice_gets_the_same_answer_and_acts_once(app, client, fake_wechat, earner):
    ids = [waiting_withdrawal(app, earner, 200) for _ in range(2)]
    log_in_admin(client, earner.finance_id)
    queue = client.get("/admin/withdrawals").get_data(as_text=True)
    form = {"csrf_token": csrf_token(client), "submission_key": form_key(queue), "action": "reject",
            "withdrawal_id": [str(i) for i in ids], "reason": "核实中"}
    answers = [client.post("/admin/withdrawals/review", data=form) for _ in range(2)]
    assert [(a.status_code, a.headers["Location"]) for a in answers] == [(302, "/admin/withdrawals")] * 2
    page = client.get("/admin/withdrawals").get_data(as_text=True)
    assert page.count("：已拒绝") == 2 and "已处理" not in page  # the repeat's answer, as the first's
    with app.app_context():
        assert count(LedgerEntry, LedgerEntry.kind == LedgerKind.WITHDRAWAL_RETURNED) == 2

    order_no, refund_id = paid_order_with_refund_requested(app, fake_wechat, earner)
    refunds = client.get("/admin/refunds").get_data(as_text=True)
    assert 'hx-confirm="确认同意退款 ¥100.00？款项将原路退回买家，无法撤销。"' in refunds
    key = form_key(refunds)
    answers = [client.post(f"/admin/refunds/{refund_id}/approve",
                           data={"csrf_token": csrf_token(client), "submission_key": key},
                           headers={"HX-Request": "true"}) for _ in range(2)]
    assert [(a.status_code, a.headers.get("HX-Redirect")) for a in answers] == [(204, "/admin/refunds")] * 2
    assert len(fake_wechat.orders[order_no].refunds) == 1
    with app.app_context():
        assert db.session.get(Refund, refund_id).status == RefundStatus.SUCCEEDED
    assert_money_consistent(app)
