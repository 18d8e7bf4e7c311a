"""Issue 16, items 5 and 6: money leaves only on a definite answer. Payouts refused while a clawback left the
wallet in debt (whichever way they are paid), ambiguous transfer answers checked with a query, one refund offer
per WeChat transaction, and refunds finished by WeChat's result (notify or cron query), not by its acceptance.
Everything goes through the fake WeChat server, and the money invariants are checked after every step."""
import pytest
from sqlalchemy import func, select, update

from dingqiao import create_app
from dingqiao.config import ConfigError
from dingqiao.db import write_transaction
from dingqiao.extensions import db
from dingqiao.models import (
    AuditLog,
    LedgerEntry,
    LedgerKind,
    Order,
    OrderStatus,
    PaymentEvent,
    PaymentEventKind,
    Refund,
    StockLevel,
    User,
    Withdrawal,
    WithdrawalStatus,
)
from dingqiao.services.invariants import check_money
from dingqiao.services.orders import OrderError, cancel_order
from dingqiao.services.payments import handle_pay_notification
from dingqiao.services.payments import resolve_payment_event
from dingqiao.services.refunds import (
    RefundError,
    approve_refund,
    open_after_sales_refund,
    refund_stray_payment,
    reject_refund,
)
from dingqiao.services.withdrawals import (
    WithdrawalError,
    WithdrawalRules,
    _apply_transfer_result,
    approve_withdrawal,
    mark_paid_offline,
    request_withdrawal,
)
from dingqiao.wechat import pay_gateway
from tests.conftest import csrf_token, make_config, run_concurrently
from tests.money_world import assert_money_consistent, balances, build_world, buy, pay, pick_up
from tests.test_config import AES_KEY
from tests.test_money import _register_paid_at_fake, finance, paid_order_with_refund_requested

RULES = WithdrawalRules(min_fen=100, fee_bps=0, daily_cap_fen=500_000)
SERVER_IP = "198.51.100.10"
SUCCESS = "<return_code><![CDATA[SUCCESS]]></return_code>"


@pytest.fixture
def app_config(app_config):
    # Every refund and payout sent is due for the cron's query at once.
    return {**app_config, "RECONCILE_AFTER_MINUTES": 0, "WECHAT_SERVER_IP": SERVER_IP}


def reconcile(app) -> None:
    """The cron: `flask reconcile-wechat-pay`."""
    outcome = app.test_cli_runner().invoke(args=["reconcile-wechat-pay"])
    assert outcome.exit_code == 0, outcome.output


def check_money_cli(app) -> None:
    outcome = app.test_cli_runner().invoke(args=["check-money"])
    assert outcome.exit_code == 0 and "Money invariants hold." in outcome.output, outcome.output


def withdrawal_state(app, withdrawal_id: int) -> str:
    with app.app_context():
        return db.session.get(Withdrawal, withdrawal_id).status


def ledger_count(app, kind: LedgerKind) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == kind))


def earned_and_requested(app, world, amount_fen: int) -> Withdrawal:
    """The parent earns ¥10.00 (one order picked up) and asks to withdraw ``amount_fen``."""
    order_no = buy(app, world)
    pay(app, order_no)
    pick_up(app, world, order_no)
    with app.app_context():
        withdrawal_id = request_withdrawal(db.session, world.parent, amount_fen, RULES).id
        withdrawal = db.session.get(Withdrawal, withdrawal_id)
        db.session.expunge(withdrawal)
        return withdrawal


def openid_of(app, user_id: int) -> str:
    with app.app_context():
        return db.session.get(User, user_id).openid


# ------------------------------------------------------------------------------------ 5a: one payout rule

def test_no_payout_by_hand_either_while_a_clawback_left_the_wallet_negative(app, fake_wechat):
    world = build_world(app)
    first = buy(app, world)
    pay(app, first)
    pick_up(app, world, first)
    with app.app_context():
        pending_id = request_withdrawal(db.session, world.parent, 1000, RULES).id
        refund = open_after_sales_refund(db.session, finance(world), first, "质量问题")
        _register_paid_at_fake(app, fake_wechat, first)
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund.id)
    assert balances(app, world.parent) == (-1000, 0)  # a receivable: the clawback came after the request
    with app.app_context():
        with pytest.raises(WithdrawalError) as by_wechat:
            approve_withdrawal(db.session, pay_gateway(app.config), finance(world), pending_id)
        with pytest.raises(WithdrawalError) as by_hand:
            mark_paid_offline(db.session, finance(world), pending_id, "银行转账 0001")
    assert by_hand.value.message == by_wechat.value.message and "余额为负" in by_hand.value.message
    assert withdrawal_state(app, pending_id) == WithdrawalStatus.REQUESTED
    assert fake_wechat.transfers == {} and ledger_count(app, LedgerKind.WITHDRAWAL_PAID) == 0
    assert_money_consistent(app)


# ------------------------------------------------------------------- 5b: ambiguous transfer answers

def test_fatal_error_is_unknown_the_money_stays_and_a_query_saying_paid_pays(app, fake_wechat):
    """FATAL_ERROR: the number was sent before with other parameters (here from another address, as when the
    approving admin's address was sent) — that earlier attempt may have paid. Nothing goes back to the wallet."""
    world = build_world(app)
    withdrawal = earned_and_requested(app, world, 500)
    fake_wechat.add_transfer(withdrawal.withdrawal_no, amount=500, openid=openid_of(app, world.parent),
                             status="PROCESSING", spbill_create_ip="203.0.113.99")
    with app.app_context(), pytest.raises(WithdrawalError, match="结果未知"):
        approve_withdrawal(db.session, pay_gateway(app.config), finance(world), withdrawal.id)
    assert fake_wechat.calls("/mch/mmpaymkttransfers/gettransferinfo")  # it asked instead of guessing
    assert withdrawal_state(app, withdrawal.id) == WithdrawalStatus.APPROVED
    assert balances(app, world.parent) == (500, 0)  # ¥5 still on its way out, not returned
    assert ledger_count(app, LedgerKind.WITHDRAWAL_RETURNED) == 0
    assert_money_consistent(app)

    reconcile(app)  # WeChat still processing: nothing is decided
    assert withdrawal_state(app, withdrawal.id) == WithdrawalStatus.APPROVED

    fake_wechat.transfers[withdrawal.withdrawal_no]["status"] = "SUCCESS"
    reconcile(app)
    with app.app_context():
        paid = db.session.get(Withdrawal, withdrawal.id)
        assert paid.status == WithdrawalStatus.PAID
        assert paid.payment_no == fake_wechat.transfers[withdrawal.withdrawal_no]["payment_no"]
    assert balances(app, world.parent) == (500, 0)
    assert ledger_count(app, LedgerKind.WITHDRAWAL_PAID) == 1
    check_money_cli(app)


def test_a_query_saying_the_transfer_failed_returns_the_money_once(app, fake_wechat):
    world = build_world(app)
    withdrawal = earned_and_requested(app, world, 400)
    fake_wechat.add_transfer(withdrawal.withdrawal_no, amount=400, openid=openid_of(app, world.parent),
                             status="PROCESSING", spbill_create_ip=SERVER_IP)
    with app.app_context(), pytest.raises(WithdrawalError, match="结果未知"):
        approve_withdrawal(db.session, pay_gateway(app.config), finance(world), withdrawal.id)  # SYSTEMERROR
    assert balances(app, world.parent) == (600, 0)
    fake_wechat.transfers[withdrawal.withdrawal_no]["status"] = "FAILED"
    reconcile(app)
    reconcile(app)
    assert withdrawal_state(app, withdrawal.id) == WithdrawalStatus.FAILED
    assert balances(app, world.parent) == (1000, 0)  # back, once
    assert ledger_count(app, LedgerKind.WITHDRAWAL_RETURNED) == 1
    with app.app_context(), pytest.raises(WithdrawalError, match="已处理"):
        approve_withdrawal(db.session, pay_gateway(app.config), finance(world), withdrawal.id)
    check_money_cli(app)


def test_a_retrys_not_paid_answer_returns_nothing_while_the_earlier_attempt_may_have_paid(app, fake_wechat):
    """A "not paid" code (CA_ERROR: the certificate changed since) answers for the retry only: the earlier
    attempt, whose answer was lost, may have paid. Only a query decides; here it says paid."""
    world = build_world(app)
    withdrawal = earned_and_requested(app, world, 400)
    fake_wechat.add_transfer(withdrawal.withdrawal_no, amount=400, openid=openid_of(app, world.parent),
                             status="PROCESSING", spbill_create_ip=SERVER_IP)
    with app.app_context(), pytest.raises(WithdrawalError, match="结果未知"):
        approve_withdrawal(db.session, pay_gateway(app.config), finance(world), withdrawal.id)
    fake_wechat.transfer_err_code = "CA_ERROR"
    with app.app_context(), pytest.raises(WithdrawalError, match="结果未知"):
        approve_withdrawal(db.session, pay_gateway(app.config), finance(world), withdrawal.id)  # the retry
    assert withdrawal_state(app, withdrawal.id) == WithdrawalStatus.APPROVED
    assert ledger_count(app, LedgerKind.WITHDRAWAL_RETURNED) == 0
    fake_wechat.transfers[withdrawal.withdrawal_no]["status"] = "SUCCESS"
    with app.app_context():
        approve_withdrawal(db.session, pay_gateway(app.config), finance(world), withdrawal.id)
    assert withdrawal_state(app, withdrawal.id) == WithdrawalStatus.PAID
    assert ledger_count(app, LedgerKind.WITHDRAWAL_RETURNED) == 0
    check_money_cli(app)


def test_a_payout_paid_after_its_money_went_back_is_handed_to_finance(app, fake_wechat):
    """The cron's query said FAILED and returned the money while a retry of the same number was on its way and
    paid: the books cannot just say "已处理" and forget a payment."""
    world = build_world(app)
    withdrawal = earned_and_requested(app, world, 400)
    fake_wechat.add_transfer(withdrawal.withdrawal_no, amount=400, openid=openid_of(app, world.parent),
                             status="SUCCESS", spbill_create_ip=SERVER_IP)  # the retry's answer: paid
    with app.app_context():
        db.session.execute(update(Withdrawal).where(Withdrawal.id == withdrawal.id)
                           .values(status=WithdrawalStatus.FAILED))  # what the racing cron did meanwhile
        db.session.commit()
        with pytest.raises(WithdrawalError):
            _apply_transfer_result(db.session, None, withdrawal.id, pay_gateway(app.config).query_transfer(
                withdrawal.withdrawal_no))
        [event] = db.session.scalars(select(PaymentEvent).where(PaymentEvent.kind == PaymentEventKind.LATE_RESULT))
        assert event.needs_attention and event.out_trade_no == withdrawal.withdrawal_no and event.amount_fen == 400


def test_a_certain_refusal_still_returns_the_money_at_once(app, fake_wechat):
    world = build_world(app)
    withdrawal = earned_and_requested(app, world, 300)
    fake_wechat.transfer_err_code = "NOTENOUGH"
    with app.app_context(), pytest.raises(WithdrawalError, match="已退回"):
        approve_withdrawal(db.session, pay_gateway(app.config), finance(world), withdrawal.id)
    assert withdrawal_state(app, withdrawal.id) == WithdrawalStatus.FAILED
    assert balances(app, world.parent) == (1000, 0)
    assert_money_consistent(app)


def test_the_transfer_carries_the_configured_server_address_not_the_admins(app, fake_wechat):
    world = build_world(app)
    withdrawal = earned_and_requested(app, world, 200)
    staff = app.test_client()
    staff.environ_base["REMOTE_ADDR"] = "203.0.113.99"
    staff.post("/admin/login", data={"username": "finance", "password": "long-enough-pw",
                                     "csrf_token": csrf_token(staff)})
    staff.post("/admin/withdrawals/review", data={"csrf_token": csrf_token(staff), "action": "approve",
                                                  "withdrawal_id": [withdrawal.id]})
    sent = fake_wechat.calls("/mch/mmpaymkttransfers/promotion/transfers")
    assert [call["spbill_create_ip"] for call in sent] == [SERVER_IP]
    assert withdrawal_state(app, withdrawal.id) == WithdrawalStatus.PAID
    assert_money_consistent(app)


# ------------------------------------------------------------ 5c: one refund offer per WeChat transaction

def _cancelled_order_paid_at_wechat(app, world) -> bytes:
    """An order cancelled here, and the notify of the money WeChat took for it anyway."""
    order_no = buy(app, world)
    with app.app_context():
        cancel_order(db.session, world.buyer, order_no)
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        return pay_gateway(app.config).signed_notification(
            out_trade_no=order_no, transaction_id="4200000000000000000000000001", total_fee=order.total_fen,
            openid=openid_of(app, world.buyer))


def offers(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(PaymentEvent)
                                 .where(PaymentEvent.kind == "after_cancel"))


def test_a_second_delivery_of_a_notify_for_a_cancelled_order_makes_no_second_refund_offer(app, fake_wechat):
    world = build_world(app)
    notify = _cancelled_order_paid_at_wechat(app, world)
    with app.app_context():
        assert handle_pay_notification(db.session, pay_gateway(app.config), notify)
        assert handle_pay_notification(db.session, pay_gateway(app.config), notify)  # WeChat resends anyway
        kinds = sorted(db.session.scalars(select(PaymentEvent.kind)))
    assert kinds == ["after_cancel", "duplicate"]
    assert offers(app) == 1


def test_concurrent_deliveries_of_that_notify_make_one_refund_offer(app, fake_wechat):
    world = build_world(app)
    notify = _cancelled_order_paid_at_wechat(app, world)
    outcomes = run_concurrently(
        app, lambda: handle_pay_notification(db.session, pay_gateway(app.config), notify), [()] * 4)
    assert outcomes == [True] * 4, outcomes  # each is answered SUCCESS: we do have the money
    assert offers(app) == 1


# ------------------------------------------------------------------ 6: refunds finish on WeChat's result

def post_refund_notify(app, body: bytes):
    return app.test_client().post("/wechat/pay/refund-notify", data=body, content_type="text/xml")


def refund_row(app, refund_id: int) -> Refund:
    with app.app_context():
        refund = db.session.get(Refund, refund_id)
        db.session.expunge(refund)
        return refund


def order_status(app, order_no: str) -> tuple[str, bool]:
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        return order.status, order.after_sales_open


def reserved(app, world) -> int:
    with app.app_context():
        return db.session.scalar(select(StockLevel.reserved).where(StockLevel.product_id == world.product_id))


def accepted_refund(app, fake_wechat, world) -> tuple[str, int]:
    """A refund WeChat accepted and has not finished: (order_no, refund id)."""
    order_no, refund_id = paid_order_with_refund_requested(app, fake_wechat, world)
    fake_wechat.refund_outcome = "PROCESSING"
    with app.app_context():
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund_id)
    assert refund_row(app, refund_id).status == "processing"
    assert order_status(app, order_no) == (OrderStatus.PAID, True)  # nothing reversed on acceptance alone
    assert balances(app, world.parent) == (0, 1000) and reserved(app, world) == 1
    assert_money_consistent(app)
    return order_no, refund_id


def test_a_refund_that_fails_after_acceptance_is_shown_to_finance_and_a_retry_refunds_once(app, fake_wechat):
    world = build_world(app)
    order_no, refund_id = accepted_refund(app, fake_wechat, world)
    first_number = refund_row(app, refund_id).out_refund_no
    answer = post_refund_notify(app, fake_wechat.finish_refund(first_number, "REFUNDCLOSE"))
    assert SUCCESS in answer.get_data(as_text=True)
    refund = refund_row(app, refund_id)
    assert refund.status == "failed" and "关闭" in refund.reject_reason
    assert order_status(app, order_no) == (OrderStatus.PAID, True)  # still the buyer's paid order, refund open
    assert balances(app, world.parent) == (0, 1000) and reserved(app, world) == 1
    assert_money_consistent(app)

    staff = app.test_client()
    staff.post("/admin/login", data={"username": "finance", "password": "long-enough-pw",
                                     "csrf_token": csrf_token(staff)})
    page = staff.get("/admin/refunds").get_data(as_text=True)
    assert order_no in page and "退款失败" in page and "重新退款" in page

    fake_wechat.refund_outcome = "SUCCESS"
    staff.post(f"/admin/refunds/{refund_id}/approve", data={"csrf_token": csrf_token(staff)})
    refund = refund_row(app, refund_id)
    assert refund.status == "succeeded" and refund.out_refund_no == f"{first_number}-2"  # a closed number stays closed
    assert fake_wechat.orders[order_no].refund_states == {first_number: "REFUNDCLOSE", refund.out_refund_no: "SUCCESS"}
    assert order_status(app, order_no) == (OrderStatus.REFUNDED, False)
    assert balances(app, world.parent) == (0, 0) and reserved(app, world) == 0
    with app.app_context(), pytest.raises(RefundError, match="已处理"):
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund_id)
    assert post_refund_notify(app, fake_wechat.refund_notification(first_number)).status_code == 200  # late repeat
    assert refund_row(app, refund_id).status == "succeeded"
    assert len(fake_wechat.orders[order_no].refunds) == 2
    check_money_cli(app)


def test_an_abnormal_refund_waits_for_the_merchant_and_finishes_under_its_own_number(app, fake_wechat):
    """CHANGE (退款异常): WeChat holds the money, the buyer's card refused it. Not final: the refund stays in
    progress with the reason shown, a retry only asks (no second refund), and it cannot be rejected; once the
    merchant re-routes it on the merchant platform, the same number answers SUCCESS and the refund finishes."""
    world = build_world(app)
    order_no, refund_id = accepted_refund(app, fake_wechat, world)
    first_number = refund_row(app, refund_id).out_refund_no
    assert SUCCESS in post_refund_notify(app, fake_wechat.finish_refund(first_number, "CHANGE")).get_data(as_text=True)
    refund = refund_row(app, refund_id)
    assert refund.status == "processing" and "退款异常" in refund.reject_reason
    with app.app_context():
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund_id)  # asks, sends nothing
        with pytest.raises(RefundError, match="已处理"):
            reject_refund(db.session, finance(world), refund_id, "买家卡已注销")
    assert len(fake_wechat.orders[order_no].refunds) == 1
    assert refund_row(app, refund_id).status == "processing"
    assert order_status(app, order_no) == (OrderStatus.PAID, True)
    assert_money_consistent(app)

    post_refund_notify(app, fake_wechat.finish_refund(first_number, "SUCCESS"))  # re-routed to the balance
    assert refund_row(app, refund_id).status == "succeeded"
    assert order_status(app, order_no) == (OrderStatus.REFUNDED, False)
    assert balances(app, world.parent) == (0, 0) and reserved(app, world) == 0
    check_money_cli(app)


def test_a_success_for_a_refund_finance_already_rejected_is_handed_to_finance_not_dropped(app, fake_wechat):
    world = build_world(app)
    order_no, refund_id = accepted_refund(app, fake_wechat, world)
    number = refund_row(app, refund_id).out_refund_no
    post_refund_notify(app, fake_wechat.finish_refund(number, "REFUNDCLOSE"))
    with app.app_context():
        reject_refund(db.session, finance(world), refund_id, "买家撤回")
    late = post_refund_notify(app, fake_wechat.refund_notification(number, status="SUCCESS"))
    assert late.status_code == 200 and SUCCESS in late.get_data(as_text=True)
    post_refund_notify(app, fake_wechat.refund_notification(number, status="SUCCESS"))  # WeChat repeats it
    assert refund_row(app, refund_id).status == "rejected"
    with app.app_context():
        [event] = db.session.scalars(select(PaymentEvent).where(PaymentEvent.kind == PaymentEventKind.LATE_RESULT))
        assert event.needs_attention and event.out_trade_no == order_no and number in event.detail
    assert_money_consistent(app)


def test_a_success_notify_finishes_the_refund_and_a_duplicate_changes_nothing(app, fake_wechat):
    world = build_world(app)
    order_no, refund_id = accepted_refund(app, fake_wechat, world)
    notify = fake_wechat.finish_refund(refund_row(app, refund_id).out_refund_no)
    for _ in range(2):
        answer = post_refund_notify(app, notify)
        assert answer.status_code == 200 and SUCCESS in answer.get_data(as_text=True)
        assert refund_row(app, refund_id).status == "succeeded"
        assert order_status(app, order_no) == (OrderStatus.REFUNDED, False)
        assert balances(app, world.parent) == (0, 0) and reserved(app, world) == 0
        assert ledger_count(app, LedgerKind.COMMISSION_REVERSED) == 4  # one per beneficiary, once
        assert_money_consistent(app)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditLog)
                                 .where(AuditLog.action == "refund.succeeded")) == 1


@pytest.mark.parametrize("forgery", ["other_key", "other_amount", "dtd", "other_merchant", "garbage"])
def test_a_forged_or_undecryptable_refund_notify_is_refused_and_changes_nothing(app, fake_wechat, forgery):
    world = build_world(app)
    order_no, refund_id = accepted_refund(app, fake_wechat, world)
    number = refund_row(app, refund_id).out_refund_no
    body = {
        "other_key": lambda: fake_wechat.refund_notification(number, key="f" * 32, status="SUCCESS"),
        "other_amount": lambda: fake_wechat.refund_notification(number, refund_fee=1, status="SUCCESS"),
        "dtd": lambda: b'<!DOCTYPE xml [<!ENTITY e "x">]>' + fake_wechat.refund_notification(number, status="SUCCESS"),
        "other_merchant": lambda: fake_wechat.refund_notification(number, status="SUCCESS").replace(
            fake_wechat.mch_id.encode(), b"1999999999"),
        "garbage": lambda: b"<xml><return_code>SUCCESS</return_code><req_info>bm90IGEgcmVmdW5k</req_info></xml>",
    }[forgery]()
    answer = post_refund_notify(app, body)
    assert answer.status_code == 400 and "FAIL" in answer.get_data(as_text=True)
    assert refund_row(app, refund_id).status == "processing"
    assert order_status(app, order_no) == (OrderStatus.PAID, True)
    assert balances(app, world.parent) == (0, 1000)
    assert_money_consistent(app)


def test_the_cron_finishes_a_refund_whose_notify_never_came(app, fake_wechat):
    world = build_world(app)
    order_no, refund_id = accepted_refund(app, fake_wechat, world)
    reconcile(app)
    assert refund_row(app, refund_id).status == "processing"  # WeChat is still at it
    fake_wechat.finish_refund(refund_row(app, refund_id).out_refund_no)  # the notify is lost on the way
    reconcile(app)
    reconcile(app)
    assert refund_row(app, refund_id).status == "succeeded"
    assert order_status(app, order_no) == (OrderStatus.REFUNDED, False)
    assert balances(app, world.parent) == (0, 0) and reserved(app, world) == 0
    check_money_cli(app)


def test_the_cron_also_finishes_a_refund_whose_answer_was_lost(app, fake_wechat):
    """WeChat took the request but its answer never came: the refund stayed "approved". The cron's query shows
    WeChat has it, and finishes it — no second request."""
    world = build_world(app)
    order_no, refund_id = paid_order_with_refund_requested(app, fake_wechat, world)
    number = refund_row(app, refund_id).out_refund_no
    pay_gateway(app.config).refund(out_trade_no=order_no, out_refund_no=number, total_fee=10_000, refund_fee=10_000)
    fake_wechat.outage_status = 502
    with app.app_context(), pytest.raises(RefundError, match="结果未知"):
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund_id)
    fake_wechat.outage_status = None
    assert refund_row(app, refund_id).status == "approved"
    reconcile(app)
    assert refund_row(app, refund_id).status == "succeeded"
    assert order_status(app, order_no) == (OrderStatus.REFUNDED, False)
    assert len(fake_wechat.calls("/mch/secapi/pay/refund")) == 2  # the one WeChat took, the one lost: no third
    check_money_cli(app)


def test_check_money_flags_refund_effects_applied_before_wechat_said_success(app, fake_wechat):
    world = build_world(app)
    order_no, _refund_id = accepted_refund(app, fake_wechat, world)
    with app.app_context():
        with write_transaction(db.session):  # what taking "accepted" for "refunded" used to do
            db.session.execute(update(Order).where(Order.order_no == order_no)
                               .values(status=OrderStatus.REFUNDED, after_sales_open=False))
        problems = check_money(db.session)
    assert f"order {order_no} is refunded with 0 succeeded refund(s)" in problems
    assert any("after-sales open False, 1 open refund(s)" in problem for problem in problems)


def test_a_real_merchant_without_this_servers_address_refuses_to_start(tmp_path):
    config = make_config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, TESTING=False, WECHAT_MCH_ID="1900000109",
                         WECHAT_MCH_KEY="k" * 32, WECHAT_MCH_CERT_PATH="/etc/cert.pem",
                         WECHAT_MCH_KEY_PATH="/etc/key.pem", WECHAT_SERVER_IP="", WECHAT_ENCODING_AES_KEY=AES_KEY)
    with pytest.raises(ConfigError, match="WECHAT_SERVER_IP"):
        create_app(config)


# ------------------------------------------------------------------ 6: money for a cancelled order, sent back

def stray_event(app, fake_wechat, world) -> int:
    notify = _cancelled_order_paid_at_wechat(app, world)
    with app.app_context():
        assert handle_pay_notification(db.session, pay_gateway(app.config), notify)
        event = db.session.scalar(select(PaymentEvent).where(PaymentEvent.kind == PaymentEventKind.AFTER_CANCEL))
        _register_paid_at_fake(app, fake_wechat, event.out_trade_no)
        return event.id


def stray_row(app, event_id: int) -> PaymentEvent:
    with app.app_context():
        return db.session.get(PaymentEvent, event_id)


def test_money_for_a_cancelled_order_leaves_the_queue_only_when_wechat_says_it_was_refunded(app, fake_wechat):
    """It used to be marked handled when WeChat accepted the refund: a refund WeChat closed later was never seen.
    Now it stays in the queue while processing; closed → shown failed, retried under a new number; success →
    handled, and a late repeat of the closed number's notify changes nothing."""
    world = build_world(app)
    event_id = stray_event(app, fake_wechat, world)
    fake_wechat.refund_outcome = "PROCESSING"
    with app.app_context():
        refund_stray_payment(db.session, pay_gateway(app.config), finance(world), event_id)
        with pytest.raises(OrderError, match="正在微信处理中"):
            resolve_payment_event(db.session, finance(world), event_id)  # its result must still be seen
    event = stray_row(app, event_id)
    first_number = event.refund_no
    assert event.refund_state == "processing" and event.resolved_at is None and first_number.startswith("RS")
    assert SUCCESS in post_refund_notify(app, fake_wechat.finish_refund(first_number, "REFUNDCLOSE")).get_data(
        as_text=True)
    event = stray_row(app, event_id)
    assert event.refund_state == "failed" and "关闭" in event.refund_reason and event.resolved_at is None

    staff = app.test_client()
    staff.post("/admin/login", data={"username": "finance", "password": "long-enough-pw",
                                     "csrf_token": csrf_token(staff)})
    page = staff.get("/admin/payment-events").get_data(as_text=True)
    assert "退款失败" in page and "重新退款" in page

    fake_wechat.refund_outcome = "SUCCESS"
    staff.post(f"/admin/payment-events/{event_id}/refund", data={"csrf_token": csrf_token(staff)})
    event = stray_row(app, event_id)
    assert event.refund_state == "succeeded" and event.resolved_at is not None
    assert event.refund_no == f"{first_number}-2"
    assert "没有需要处理的付款记录" in staff.get("/admin/payment-events").get_data(as_text=True)
    post_refund_notify(app, fake_wechat.refund_notification(first_number))  # the closed one, repeated
    assert stray_row(app, event_id).refund_state == "succeeded"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(PaymentEvent)
                                 .where(PaymentEvent.kind == PaymentEventKind.LATE_RESULT)) == 0


def test_the_cron_finishes_a_refund_of_stray_money_whose_notify_never_came(app, fake_wechat):
    world = build_world(app)
    event_id = stray_event(app, fake_wechat, world)
    fake_wechat.refund_outcome = "PROCESSING"
    with app.app_context():
        refund_stray_payment(db.session, pay_gateway(app.config), finance(world), event_id)
    number = stray_row(app, event_id).refund_no
    fake_wechat.finish_refund(number, "SUCCESS")  # its notify is lost
    reconcile(app)
    event = stray_row(app, event_id)
    assert event.refund_state == "succeeded" and event.resolved_at is not None
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditLog)
                                 .where(AuditLog.action == "payment.stray_refund_succeeded")) == 1



# ------------------------------------------------------------------- one-time keys and "please retry"

def wechat_calls(fake_wechat) -> int:
    return sum(len(fake_wechat.calls(path)) for path in (
        "/mch/mmpaymkttransfers/promotion/transfers", "/mch/mmpaymkttransfers/gettransferinfo"))


def test_after_an_unknown_answer_the_same_forms_next_click_really_retries(app, fake_wechat):
    """The message says 请稍后再次点击同意重试: the admin clicks the same form again (same submission key). That
    click must reach WeChat again (same numbers, so nothing is paid twice), not be answered as a repeat."""
    from dingqiao.services import submissions

    world = build_world(app)
    withdrawal = earned_and_requested(app, world, 400)
    fake_wechat.add_transfer(withdrawal.withdrawal_no, amount=400, openid=openid_of(app, world.parent),
                             status="PROCESSING", spbill_create_ip=SERVER_IP)
    key = submissions.new_key()
    with app.app_context(), pytest.raises(WithdrawalError, match="结果未知"):
        approve_withdrawal(db.session, pay_gateway(app.config), finance(world), withdrawal.id, submission_key=key)
    asked = wechat_calls(fake_wechat)
    fake_wechat.transfers[withdrawal.withdrawal_no]["status"] = "SUCCESS"
    with app.app_context():
        approve_withdrawal(db.session, pay_gateway(app.config), finance(world), withdrawal.id, submission_key=key)
    assert wechat_calls(fake_wechat) > asked  # WeChat was asked again (same number)
    assert withdrawal_state(app, withdrawal.id) == WithdrawalStatus.PAID
    assert ledger_count(app, LedgerKind.WITHDRAWAL_PAID) == 1
    # Paid: now a third click of the same form is a repeat, answered as it stands, and asks nobody.
    asked = wechat_calls(fake_wechat)
    with app.app_context():
        again = approve_withdrawal(db.session, pay_gateway(app.config), finance(world), withdrawal.id,
                                   submission_key=key)
        assert again.status == WithdrawalStatus.PAID
    assert wechat_calls(fake_wechat) == asked
    check_money_cli(app)


def test_a_refund_approval_that_got_no_answer_is_retried_by_the_same_form(app, fake_wechat):
    from dingqiao.services import submissions

    world = build_world(app)
    order_no, refund_id = paid_order_with_refund_requested(app, fake_wechat, world)
    key = submissions.new_key()
    fake_wechat.outage_status = 502
    with app.app_context(), pytest.raises(RefundError, match="结果未知"):
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund_id, submission_key=key)
    fake_wechat.outage_status = None
    sent = len(fake_wechat.calls("/mch/secapi/pay/refund"))
    with app.app_context():
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund_id, submission_key=key)
    assert len(fake_wechat.calls("/mch/secapi/pay/refund")) == sent + 1  # sent again, same out_refund_no
    assert refund_row(app, refund_id).status in ("processing", "succeeded")
    check_money_cli(app)


def test_a_key_sent_against_another_row_is_refused_not_answered_with_the_first_rows_result(app, fake_wechat):
    from dingqiao.services import submissions
    from dingqiao.services.withdrawals import reject_withdrawal

    world = build_world(app)
    first = earned_and_requested(app, world, 100)
    with app.app_context():
        second_id = request_withdrawal(db.session, world.parent, 100, RULES).id
    key = submissions.new_key()
    with app.app_context():
        reject_withdrawal(db.session, finance(world), first.id, "资料不符", submission_key=key)
        with pytest.raises(submissions.SubmissionRefused):
            reject_withdrawal(db.session, finance(world), second_id, "资料不符", submission_key=key)
    assert withdrawal_state(app, second_id) == WithdrawalStatus.REQUESTED
