"""The commission engine, wallets, redemption and withdrawals — the worked example of docs/settlement.md,
the nasty cases, and the invariants checked after every step."""
import pytest
from sqlalchemy import func, select, update

from dingqiao.db import write_transaction
from dingqiao.extensions import db
from dingqiao.models import (
    AdminUser,
    CommissionLine,
    CommissionStatus,
    Order,
    OrderStatus,
    OutletStaff,
    Refund,
    StockLevel,
    User,
    Withdrawal,
    WithdrawalStatus,
)
from dingqiao.services import Forbidden, NotFound
from dingqiao.services.commissions import RuleError, RuleInput, validate_rule
from dingqiao.services.redemption import RedeemError, find_for_redemption, redeem
from dingqiao.services.refunds import approve_refund, open_after_sales_refund, request_refund
from dingqiao.services.wallet import InsufficientBalance
from dingqiao.services.withdrawals import (
    WithdrawalError,
    WithdrawalRules,
    approve_withdrawal,
    mark_paid_offline,
    parse_yuan,
    reject_withdrawal,
    request_withdrawal,
)
from dingqiao.wechat import pay_gateway
from tests.conftest import run_concurrently
from tests.factories import make_outlet, make_user
from tests.money_world import assert_money_consistent, balances, build_world, buy, pay, pick_up

RULES = WithdrawalRules(min_fen=100, fee_bps=0, daily_cap_fen=500_000)


def finance(world):
    return db.session.get(AdminUser, world.finance_id)


def test_worked_example_pay_redeem_refund(app, fake_wechat):
    """docs/settlement.md: M3 buys ¥100 at an outlet in a region with a factory store."""
    world = build_world(app)
    order_no = buy(app, world)
    assert_money_consistent(app)
    pay(app, order_no)
    assert balances(app, world.parent) == (0, 1000)  # 直推 10%
    assert balances(app, world.grandparent) == (0, 300)  # 团队 3%
    assert balances(app, world.outlet_owner) == (0, 500)  # 核销服务费 5%
    assert balances(app, world.factory_owner) == (0, 200)  # 区域奖励 2%
    assert balances(app, world.buyer) == (0, 0)  # nothing from one's own purchase
    assert_money_consistent(app)

    pick_up(app, world, order_no)
    assert balances(app, world.parent) == (1000, 0)
    assert balances(app, world.grandparent) == (300, 0)
    assert balances(app, world.outlet_owner) == (500, 0)
    assert balances(app, world.factory_owner) == (200, 0)
    assert_money_consistent(app)


def test_refund_before_pickup_returns_every_balance_to_zero(app, fake_wechat):
    world = build_world(app)
    _order_no, refund_id = paid_order_with_refund_requested(app, fake_wechat, world)
    with app.app_context():
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund_id)
    for user in (world.parent, world.grandparent, world.outlet_owner, world.factory_owner):
        assert balances(app, user) == (0, 0)
    with app.app_context():
        assert {line.status for line in db.session.scalars(select(CommissionLine))} == {"reversed"}
    assert_money_consistent(app)


def test_refund_after_a_withdrawal_leaves_a_receivable_paid_off_by_the_next_earning(app, fake_wechat):
    world = build_world(app)
    first = buy(app, world)
    pay(app, first)
    pick_up(app, world, first)
    with app.app_context():
        withdrawal = request_withdrawal(db.session, world.parent, 1000, RULES)
        mark_paid_offline(db.session, finance(world), withdrawal.id, "银行转账 0001")
    assert balances(app, world.parent) == (0, 0)
    with app.app_context():
        refund = open_after_sales_refund(db.session, finance(world), first, "质量问题")
        _register_paid_at_fake(app, fake_wechat, first)
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund.id)
        assert db.session.scalar(select(Order.status).where(Order.order_no == first)) == OrderStatus.REFUNDED
    assert balances(app, world.parent) == (-1000, 0)  # the receivable is recorded, not absorbed
    assert_money_consistent(app)
    with app.app_context(), pytest.raises(InsufficientBalance):
        request_withdrawal(db.session, world.parent, 100, RULES)

    second = buy(app, world)
    pay(app, second)
    pick_up(app, world, second)
    assert balances(app, world.parent) == (0, 0)  # the next earning paid it off first
    assert_money_consistent(app)


def paid_order_with_refund_requested(app, fake_wechat, world) -> tuple[str, int]:
    """The buyer pays an order and asks for the money back; WeChat knows the payment. (order_no, refund id)"""
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        refund = request_refund(db.session, world.buyer, order_no, "不想要了")
        _register_paid_at_fake(app, fake_wechat, order_no)
        return order_no, refund.id


def _register_paid_at_fake(app, fake_wechat, order_no: str) -> None:
    """Orders in these tests were paid by a signed notify without a unified order; tell the fake WeChat
    about them so its refund API knows the payment."""
    from tests.fake_wechat import FakeOrder

    order = db.session.scalar(select(Order).where(Order.order_no == order_no))
    fake_wechat.orders[order_no] = FakeOrder(out_trade_no=order_no, total_fee=order.total_fen, openid="o",
                                             notify_url="", body="", prepay_id="wx0", trade_state="SUCCESS",
                                             transaction_id="4200")


# ------------------------------------------------------------------------------------------------ the rules

@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"referral_depth": 4}, "最多 3 级"),
        ({"referral_depth": 0}, "至少 1 级"),
        ({"direct_bps": -1}, "负数"),
        ({"payout_cap_bps": 5000}, "不能超过"),
        ({"direct_bps": 2600}, "超过单笔上限"),
        ({"referral_depth": 1}, "团队奖励必须为 0"),
        ({"third_level_bps": 100}, "第三级奖励必须为 0"),
        ({"cooling_days": 31}, "冷静期"),
    ],
)
def test_rule_versions_that_break_the_guard_rails_are_refused(changes, message):
    rule = RuleInput(**{**RuleInput(2, 1000, 300, 0, 500, 200, 3000).__dict__, **changes})
    with pytest.raises(RuleError, match=message):
        validate_rule(rule)


def test_depth_three_pays_a_third_level_and_depth_one_only_the_direct_upline(app):
    world = build_world(app, RuleInput(3, 1000, 300, 100, 500, 200, 3000))
    with app.app_context():
        top = make_user("三级")
        from dingqiao.models import ReferralBinding

        db.session.add(ReferralBinding(user_id=world.grandparent, upline_id=top.id, source="link"))
        db.session.commit()
        top_id = top.id
    order_no = buy(app, world)
    pay(app, order_no)
    assert balances(app, top_id) == (0, 100)
    with app.app_context():
        levels = sorted((line.kind, line.level) for line in db.session.scalars(select(CommissionLine)))
        assert levels == [("direct", 1), ("regional", 0), ("service_fee", 0), ("team", 2), ("team", 3)]
    assert_money_consistent(app)


def test_amounts_are_floored_to_the_fen_per_item(app):
    world = build_world(app)
    with app.app_context():
        from dingqiao.models import Product

        db.session.get(Product, world.product_id).member_price_fen = 999  # 10% of ¥9.99 is 99.9 fen
        db.session.commit()
    order_no = buy(app, world)
    pay(app, order_no)
    assert balances(app, world.parent) == (0, 99)
    assert balances(app, world.grandparent) == (0, 29)


def test_an_outlet_owner_buying_at_her_own_outlet_earns_nothing_from_it(app):
    world = build_world(app)
    order_no = buy(app, world, buyer_id=world.outlet_owner)
    pay(app, order_no)
    assert balances(app, world.outlet_owner) == (0, 0)
    assert_money_consistent(app)


# ---------------------------------------------------------------------------------------------- redemption

def test_redemption_messages_for_every_wrong_code(app):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        code = db.session.scalar(select(Order.pickup_code).where(Order.order_no == order_no))
        other = make_user("别家店主")
        make_outlet(other)  # owns another outlet, in another region
        other_owner = other.id
        with pytest.raises(RedeemError, match="12 位数字"):
            find_for_redemption(db.session, world.outlet_owner, "12345")
        with pytest.raises(NotFound, match="不存在"):
            find_for_redemption(db.session, world.outlet_owner, "0" * 12 if code != "0" * 12 else "1" * 12)
        with pytest.raises(Forbidden, match="不在本店自提"):
            find_for_redemption(db.session, other_owner, code)
        view = find_for_redemption(db.session, world.outlet_owner, f"{code[:4]} {code[4:8]} {code[8:]}")
        assert view.order.order_no == order_no and view.buyer_name.startswith("王") and "*" in view.buyer_name
        redeem(db.session, world.outlet_owner, code)
        with pytest.raises(RedeemError, match="使用过"):
            redeem(db.session, world.outlet_owner, code)


def test_the_factory_store_and_staff_may_redeem_and_removed_staff_may_not(app):
    world = build_world(app)
    orders = [buy(app, world) for _ in range(2)]
    for order_no in orders:
        pay(app, order_no)
    with app.app_context():
        codes = [db.session.scalar(select(Order.pickup_code).where(Order.order_no == no)) for no in orders]
        staff = make_user("核销员")
        link = OutletStaff(outlet_id=world.outlet_id, user_id=staff.id)
        db.session.add(link)
        db.session.commit()
        redeem(db.session, staff.id, codes[0])
        db.session.delete(db.session.get(OutletStaff, link.id))
        db.session.commit()
        with pytest.raises(Forbidden):
            redeem(db.session, staff.id, codes[1])
        redeem(db.session, world.factory_owner, codes[1])  # the region's factory store may
    assert_money_consistent(app)


def test_redemption_waits_while_a_refund_is_open_and_refunded_codes_say_so(app, fake_wechat):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        code = db.session.scalar(select(Order.pickup_code).where(Order.order_no == order_no))
        request_refund(db.session, world.buyer, order_no, "买错了")
        with pytest.raises(RedeemError, match="退款申请"):
            redeem(db.session, world.outlet_owner, code)
        _register_paid_at_fake(app, fake_wechat, order_no)
        approve_refund(db.session, pay_gateway(app.config), finance(world), db.session.scalar(select(Refund.id)))
        with pytest.raises(RedeemError, match="已退款"):
            redeem(db.session, world.outlet_owner, code)


def test_redemption_deducts_the_reserved_stock(app):
    world = build_world(app, units=5)
    order_no = buy(app, world, quantity=2)
    pay(app, order_no)
    pick_up(app, world, order_no)
    with app.app_context():
        level = db.session.scalar(select(StockLevel).where(StockLevel.product_id == world.product_id))
        assert (level.on_hand, level.reserved) == (3, 0)


def test_two_scans_of_one_code_at_the_same_moment_redeem_once(app):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        code = db.session.scalar(select(Order.pickup_code).where(Order.order_no == order_no))
    results = run_concurrently(app, lambda: redeem(db.session, world.outlet_owner, code), [(), ()])
    done = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if isinstance(r, RedeemError)]
    assert len(done) == 1 and len(refused) == 1 and "使用过" in refused[0].message, results
    assert balances(app, world.parent) == (1000, 0)  # settled once, not twice
    assert_money_consistent(app)


# --------------------------------------------------------------------------------------------- withdrawals

def _earn(app, world, orders: int) -> None:
    for _ in range(orders):
        order_no = buy(app, world)
        pay(app, order_no)
        pick_up(app, world, order_no)


def test_twenty_concurrent_withdrawals_from_a_wallet_that_affords_five(app):
    world = build_world(app)
    _earn(app, world, 1)  # the parent now has ¥10.00 available: five withdrawals of ¥2
    outcomes = run_concurrently(app, lambda: request_withdrawal(db.session, world.parent, 200, RULES), [()] * 20)
    assert sum(isinstance(o, Withdrawal) for o in outcomes) == 5, outcomes
    assert sum(isinstance(o, InsufficientBalance) for o in outcomes) == 15, outcomes
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Withdrawal)) == 5
    assert balances(app, world.parent) == (0, 0)
    assert_money_consistent(app)


def test_withdrawal_minimum_daily_cap_and_fee(app):
    world = build_world(app)
    _earn(app, world, 3)  # ¥30.00 available for the parent
    with app.app_context():
        with pytest.raises(WithdrawalError, match="至少"):
            request_withdrawal(db.session, world.parent, 99, RULES)
        capped = WithdrawalRules(min_fen=100, fee_bps=100, daily_cap_fen=2000)
        first = request_withdrawal(db.session, world.parent, 1500, capped)
        assert first.fee_fen == 15
        with pytest.raises(WithdrawalError, match="今日提现额度剩余 ¥5.00"):
            request_withdrawal(db.session, world.parent, 600, capped)
        assert db.session.scalar(select(func.count()).select_from(Withdrawal)) == 1  # nothing half-written
    assert balances(app, world.parent) == (1500, 0)
    assert_money_consistent(app)


def test_approval_transfers_through_wechat_once_and_failures_return_the_money(app, fake_wechat):
    world = build_world(app)
    _earn(app, world, 1)
    with app.app_context():
        gateway = pay_gateway(app.config)
        paid = request_withdrawal(db.session, world.parent, 500, RULES)
        approved = approve_withdrawal(db.session, gateway, finance(world), paid.id)
        assert approved.status == WithdrawalStatus.PAID and approved.payment_no
        with pytest.raises(WithdrawalError, match="已处理"):
            approve_withdrawal(db.session, gateway, finance(world), paid.id)
        assert list(fake_wechat.transfers) == [paid.withdrawal_no]
        assert fake_wechat.transfers[paid.withdrawal_no]["amount"] == 500

        fake_wechat.transfer_err_code = "NOTENOUGH"
        failing = request_withdrawal(db.session, world.parent, 300, RULES)
        with pytest.raises(WithdrawalError, match="已退回"):
            approve_withdrawal(db.session, gateway, finance(world), failing.id)
        assert db.session.get(Withdrawal, failing.id).status == WithdrawalStatus.FAILED

        rejected = request_withdrawal(db.session, world.parent, 200, RULES)
        with pytest.raises(WithdrawalError, match="拒绝原因"):
            reject_withdrawal(db.session, finance(world), rejected.id, "")
        reject_withdrawal(db.session, finance(world), rejected.id, "信息不符")
    assert balances(app, world.parent) == (500, 0)
    assert_money_consistent(app)


def test_an_unanswered_transfer_stays_approved_and_a_retry_pays_once(app, fake_wechat):
    world = build_world(app)
    _earn(app, world, 1)
    with app.app_context():
        gateway = pay_gateway(app.config)
        withdrawal = request_withdrawal(db.session, world.parent, 400, RULES)
        fake_wechat.outage_status = 502
        with pytest.raises(WithdrawalError, match="结果未知"):
            approve_withdrawal(db.session, gateway, finance(world), withdrawal.id)
        assert db.session.get(Withdrawal, withdrawal.id).status == WithdrawalStatus.APPROVED
        fake_wechat.outage_status = None
        approve_withdrawal(db.session, gateway, finance(world), withdrawal.id)
        approve_withdrawal_again = db.session.get(Withdrawal, withdrawal.id)
        assert approve_withdrawal_again.status == WithdrawalStatus.PAID
    assert len(fake_wechat.transfers) == 1
    assert_money_consistent(app)


def test_an_operator_cannot_pay_out(app):
    world = build_world(app)
    _earn(app, world, 1)
    with app.app_context():
        from dingqiao.models import AdminRole
        from dingqiao.services.accounts import create_admin

        operator = create_admin(db.session, "ops", "long-enough-pw", AdminRole.OPERATOR)
        withdrawal = request_withdrawal(db.session, world.parent, 200, RULES)
        for action in (lambda: approve_withdrawal(db.session, pay_gateway(app.config), operator, withdrawal.id),
                       lambda: mark_paid_offline(db.session, operator, withdrawal.id, "x"),
                       lambda: reject_withdrawal(db.session, operator, withdrawal.id, "x")):
            with pytest.raises(Forbidden):
                action()


@pytest.mark.parametrize(("raw", "fen"), [("12", 1200), ("12.3", 1230), ("0.05", 5), ("¥1,000.50", 100050)])
def test_amounts_are_read_exactly(raw, fen):
    assert parse_yuan(raw) == fen


@pytest.mark.parametrize("raw", ["", "abc", "-1", "1.234", "1e3", "²", "１０", "9999999999", "1.2.3"])
def test_junk_amounts_are_refused(raw):
    with pytest.raises(WithdrawalError):
        parse_yuan(raw)


def test_a_systemerror_from_the_transfer_keeps_the_withdrawal_in_flight(app, fake_wechat):
    """SYSTEMERROR may hide a payment: returning the money could pay it twice. It stays APPROVED."""
    world = build_world(app)
    _earn(app, world, 1)
    with app.app_context():
        gateway = pay_gateway(app.config)
        withdrawal = request_withdrawal(db.session, world.parent, 500, RULES)
        fake_wechat.transfer_err_code = "SYSTEMERROR"
        with pytest.raises(WithdrawalError, match="结果未知"):
            approve_withdrawal(db.session, gateway, finance(world), withdrawal.id)
        assert db.session.get(Withdrawal, withdrawal.id).status == WithdrawalStatus.APPROVED
    assert balances(app, world.parent) == (500, 0)  # not returned
    assert_money_consistent(app)


def test_no_payout_while_a_clawback_left_the_wallet_negative(app, fake_wechat):
    world = build_world(app)
    first = buy(app, world)
    pay(app, first)
    pick_up(app, world, first)
    with app.app_context():
        pending = request_withdrawal(db.session, world.parent, 1000, RULES)
        refund = open_after_sales_refund(db.session, finance(world), first, "质量问题")
        _register_paid_at_fake(app, fake_wechat, first)
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund.id)
        with pytest.raises(WithdrawalError, match="余额为负"):
            approve_withdrawal(db.session, pay_gateway(app.config), finance(world), pending.id)
        assert fake_wechat.transfers == {}
        reject_withdrawal(db.session, finance(world), pending.id, "售后追回")
    assert balances(app, world.parent) == (0, 0)  # the returned request covered the receivable
    assert_money_consistent(app)


def test_an_approved_refund_whose_last_step_failed_can_be_finished(app, fake_wechat, monkeypatch):
    import dingqiao.services.refund_results as refunds_module

    world = build_world(app)
    order_no, refund_id = paid_order_with_refund_requested(app, fake_wechat, world)
    with app.app_context():
        real_release = refunds_module.release_order_stock

        def crash(*_args):
            raise RuntimeError("worker killed")

        monkeypatch.setattr(refunds_module, "release_order_stock", crash)
        with pytest.raises(RuntimeError):
            approve_refund(db.session, pay_gateway(app.config), finance(world), refund_id)
        db.session.rollback()
        assert db.session.get(Refund, refund_id).status == "processing"  # refunded at WeChat, not here yet
        monkeypatch.setattr(refunds_module, "release_order_stock", real_release)
        approve_refund(db.session, pay_gateway(app.config), finance(world), refund_id)  # asks WeChat again
        assert db.session.get(Refund, refund_id).status == "succeeded"
    assert len(fake_wechat.orders[order_no].refunds) == 1  # WeChat refunded once
    assert balances(app, world.parent) == (0, 0)
    assert_money_consistent(app)


def test_two_finance_approvals_of_one_refund_at_once_refund_once_and_neither_crashes(app, fake_wechat):
    world = build_world(app)
    order_no, refund_id = paid_order_with_refund_requested(app, fake_wechat, world)
    outcomes = run_concurrently(
        app, lambda: approve_refund(db.session, pay_gateway(app.config), finance(world), refund_id), [(), ()])
    # Whoever comes second either finds it claimed ("已处理") or repeats the same refund number, which WeChat
    # refunds once, and sees it succeeded: never a crash, never a false failure.
    assert all(type(o).__name__ == "Refund" or "已处理" in str(getattr(o, "message", "")) for o in outcomes), outcomes
    assert "Refund" in {type(o).__name__ for o in outcomes}
    assert len(fake_wechat.orders[order_no].refunds) == 1
    with app.app_context():
        assert db.session.get(Refund, refund_id).status == "succeeded"
    assert_money_consistent(app)


def test_lines_of_an_order_not_yet_completed_are_dated_and_settled_later_not_forgotten(app):
    """settle_order_lines on an order that cannot settle now (still PAID) dates its lines, so the cooling
    cron settles them once the order is completed."""
    from dingqiao.services.commissions import settle_due_lines, settle_order_lines

    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        with write_transaction(db.session):
            assert settle_order_lines(db.session, order) == 0  # PAID, not COMPLETED: nothing settles now
        lines = db.session.scalars(select(CommissionLine).where(CommissionLine.order_id == order.id)).all()
        assert lines and all(line.status == CommissionStatus.FROZEN and line.available_at for line in lines)
        with write_transaction(db.session):
            db.session.execute(update(Order).where(Order.id == order.id).values(status=OrderStatus.COMPLETED))
        assert settle_due_lines(db.session) == len(lines)
    assert balances(app, world.parent)[1] == 0  # frozen → available
    assert_money_consistent(app)


def test_the_audit_head_is_locked_after_every_pending_change_of_the_transaction(app):
    """The chain head is the last lock a transaction takes (no deadlock between appenders on Postgres): an
    unflushed change of the same transaction is written before the head is touched."""
    from sqlalchemy import event

    from dingqiao.services.audit import record_audit

    with app.app_context():
        member = make_user("改名")
        db.session.commit()
        sent = []

        def remember(_conn, _cursor, statement, *_args):
            sent.append(" ".join(statement.split())[:40])

        event.listen(db.engine, "before_cursor_execute", remember)
        try:
            with write_transaction(db.session):
                db.session.get(User, member.id).nickname = "新名字"  # pending, not flushed
                record_audit(db.session, actor_kind="system", actor_id=None, action="test.rename")
        finally:
            event.remove(db.engine, "before_cursor_execute", remember)
        user_update = next(i for i, statement in enumerate(sent) if statement.startswith("UPDATE users"))
        head_lock = next(i for i, statement in enumerate(sent) if statement.startswith("UPDATE audit_chain_head"))
        assert user_update < head_lock
