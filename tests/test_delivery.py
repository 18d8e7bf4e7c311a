"""The outbox and its delivery worker, with wechatpy against the fake WeChat server: exactly one template
message per committed event even with two workers at once, sent with the template's typed keys and dropped by
WeChat when a killed worker's row is sent again, 订阅通知 only to members who subscribed, retries with backoff
then FAILED while the sale stands, nothing from a rolled-back transaction, leases, and what stays in-app only."""
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dingqiao.db import write_transaction
from dingqiao.extensions import db
from dingqiao.models import DeliveryStatus, Order, OrderStatus, OutboxMessage, User
from dingqiao.models.base import utcnow
from dingqiao.services.delivery import claim_batch, deliver_once, retry_failed
from dingqiao.services.payments import handle_pay_notification
from dingqiao.wechat import pay_gateway
from dingqiao.worker import delivery_settings, run, wechat_sender
from tests.conftest import Unexpected, run_concurrently
from tests.money_world import build_world, buy, pay

MESSAGES = {
    "order_paid": {"template_id": "TPL-ORDER-PAID", "kind": "template",
                   "data": {"thing1": "title", "thing2": "body", "time3": "time", "phrase4": "status"}},
    "commission_frozen": {"template_id": "TPL-COMMISSION", "kind": "template",
                          "data": {"thing1": "title", "time2": "time"}},
}
# The category templates as WeChat knows them: a message with other keys, or a value breaking its key's type,
# is refused (47003).
SCHEMAS = {"TPL-ORDER-PAID": ["thing1", "thing2", "time3", "phrase4"], "TPL-COMMISSION": ["thing1", "time2"]}


@pytest.fixture
def world(app, fake_wechat):
    app.config["WECHAT_MESSAGES"] = json.dumps(MESSAGES)
    fake_wechat.template_schemas.update(SCHEMAS)
    return build_world(app)


def configure(app, **events) -> None:
    app.config["WECHAT_MESSAGES"] = json.dumps({**MESSAGES, **events})


def paid_order(app, world) -> str:
    order_no = buy(app, world)
    pay(app, order_no)
    return order_no


def message(app, event: str) -> OutboxMessage:
    with app.app_context():
        row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.event == event))
        db.session.expunge(row)
        return row


def one_pass(app, worker: str = "w1", now=None):
    with app.app_context():
        return deliver_once(db.session, wechat_sender(app), delivery_settings(app), worker, now=now)


def test_a_paid_order_becomes_one_template_message_even_with_two_workers_at_once(app, fake_wechat, world):
    order_no = paid_order(app, world)
    results = run_concurrently(
        app, lambda name: deliver_once(db.session, wechat_sender(app), delivery_settings(app), name),
        [("worker-a",), ("worker-b",)])
    assert not [r for r in results if isinstance(r, Unexpected)], results
    sent = [m for m in fake_wechat.template_messages if m["template_id"] == "TPL-ORDER-PAID"]
    assert len(sent) == 1
    row = message(app, "order_paid")
    with app.app_context():
        buyer = db.session.get(User, world.buyer)
        assert sent[0]["touser"] == buyer.openid
        assert sent[0]["url"] == f"http://localhost/orders/{order_no}"
    # The template's own typed keys (WeChat checked them against the template), no first/remark, no colours.
    data = sent[0]["data"]
    assert set(data) == set(SCHEMAS["TPL-ORDER-PAID"]) and all(set(item) == {"value"} for item in data.values())
    assert (data["thing1"]["value"], data["phrase4"]["value"]) == ("支付成功，待自提", "待自提")
    assert data["thing2"]["value"].startswith(f"订单 {order_no[:8]}") and len(data["thing2"]["value"]) <= 20
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", data["time3"]["value"])
    assert sent[0]["client_msg_id"] == f"dq-{row.id}"
    assert row.status == DeliveryStatus.SENT
    # The upline's "commission frozen" has a template too; the others stay in the message centre only.
    assert message(app, "commission_frozen").status == DeliveryStatus.SENT
    assert one_pass(app).claimed == 0  # nothing is sent twice


def test_a_failing_wechat_is_retried_with_backoff_then_marked_failed_and_the_order_stays_paid(app, fake_wechat,
                                                                                             world):
    app.config.update(MESSAGE_MAX_ATTEMPTS=4, MESSAGE_RETRY_BASE_SECONDS=30)
    order_no = paid_order(app, world)
    fake_wechat.template_failures = 1000
    now = utcnow()
    waits = []
    for _ in range(4):
        result = one_pass(app, now=now)
        assert result.claimed >= 1
        row = message(app, "order_paid")
        if row.status == DeliveryStatus.PENDING:
            waits.append(round((row.next_attempt_at - now).total_seconds()))
            assert one_pass(app, now=now).claimed == 0  # not due before its backoff
            now = row.next_attempt_at
    assert waits == [30, 60, 120]
    row = message(app, "order_paid")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 4) and "system error" in row.last_error
    with app.app_context():
        assert db.session.scalar(select(Order.status).where(Order.order_no == order_no)) == OrderStatus.PAID
        assert retry_failed(db.session, row.id)
    fake_wechat.template_failures = 0
    assert one_pass(app).sent >= 1  # an admin's retry after the outage goes through
    assert message(app, "order_paid").status == DeliveryStatus.SENT


def test_an_outage_during_the_sale_does_not_touch_the_sale(app, fake_wechat, world):
    order_no = paid_order(app, world)
    fake_wechat.outage_status = 503  # WeChat's API down after the sale
    result = one_pass(app)
    assert result.retried >= 1 and result.sent == 0
    with app.app_context():
        assert db.session.scalar(select(Order.status).where(Order.order_no == order_no)) == OrderStatus.PAID


def test_a_rolled_back_transaction_leaves_no_message(app, fake_wechat, world):
    order_no = buy(app, world)
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        gateway = pay_gateway(app.config)
        notify = gateway.signed_notification(out_trade_no=order_no, transaction_id="4200000000000000009999",
                                             total_fee=order.total_fen, openid=db.session.get(User, world.buyer).openid)
        with pytest.raises(RuntimeError):
            with write_transaction(db.session):
                assert handle_pay_notification(db.session, gateway, notify)
                assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) > 0  # inside: written
                raise RuntimeError("the sale fails after the message was written")
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert one_pass(app).claimed == 0
    assert fake_wechat.template_messages == []


def test_without_a_mapping_or_a_follower_a_message_stays_in_app_only(app, fake_wechat, world):
    app.config["WECHAT_MESSAGES"] = json.dumps({"order_paid": MESSAGES["order_paid"]})
    fake_wechat.template_errcode = 43004  # "require subscribe": the buyer does not follow the account
    paid_order(app, world)
    result = one_pass(app)
    assert result.sent == 0 and result.skipped == result.claimed >= 2
    assert message(app, "order_paid").last_error.startswith("43004")
    assert message(app, "commission_frozen").last_error == "no template mapping"


def test_an_older_template_id_alone_is_never_sent_in_the_first_keyword_remark_layout(app, fake_wechat, world):
    """WECHAT_TEMPLATE_IDS without a WECHAT_MESSAGES entry: the event's message stays in-app unless the event
    wrote template keys itself; those are fitted to their types."""
    app.config.update(WECHAT_MESSAGES="", WECHAT_TEMPLATE_IDS=json.dumps({"order_paid": "TPL-LEGACY"}))
    fake_wechat.template_schemas["TPL-LEGACY"] = ["thing1", "time3"]
    paid_order(app, world)
    assert one_pass(app).sent == 0
    assert fake_wechat.template_messages == []
    assert message(app, "order_paid").status == DeliveryStatus.SKIPPED
    assert message(app, "order_paid").last_error == "no template mapping"
    with app.app_context():
        row = db.session.get(OutboxMessage, message(app, "order_paid").id)
        row.template_data = json.dumps({"thing1": "支付成功" * 10, "time3": "2026-12-01T01:30:00", "amount": 100},
                                       ensure_ascii=False)
        row.status, row.next_attempt_at = DeliveryStatus.PENDING, utcnow()
        db.session.commit()
    assert one_pass(app).sent == 1  # its template keys, fitted; "amount" (a value, not a key) is left out
    [sent] = fake_wechat.template_messages
    assert sent["data"] == {"thing1": {"value": "支付成功" * 4 + "支付成…"}, "time3": {"value": "2026-12-01 09:30"}}


def test_a_value_that_cannot_fit_its_key_is_not_sent_and_names_the_key(app, fake_wechat, world):
    configure(app, order_paid={"template_id": "TPL-ORDER-PAID", "kind": "template",
                               "data": {"thing1": "title", "amount2": "title"}})
    paid_order(app, world)
    one_pass(app)
    row = message(app, "order_paid")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1)
    assert row.last_error.startswith("order_paid: not sent") and "amount2 ← title = '支付成功，待自提'" in row.last_error
    assert [m for m in fake_wechat.template_messages if m["template_id"] == "TPL-ORDER-PAID"] == []


def test_a_value_wechat_refuses_fails_at_once_naming_the_key_and_the_value_sent(app, fake_wechat, world):
    """The mapping fills a key the template does not have: WeChat answers 47003 naming it."""
    configure(app, order_paid={"template_id": "TPL-ORDER-PAID", "kind": "template",
                               "data": {"thing1": "title", "thing2": "body", "time3": "time", "phrase4": "status",
                                        "thing9": "status"}})
    paid_order(app, world)
    one_pass(app)
    row = message(app, "order_paid")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1)
    assert row.last_error.startswith("47003: WeChat refused thing9='待自提'"), row.last_error


def test_a_send_repeated_after_a_killed_worker_is_dropped_by_wechat(app, fake_wechat, world):
    """The worker dies after WeChat accepted and before it recorded SENT: after the lease the row is sent again,
    with the same client_msg_id, and WeChat sends nothing more."""
    paid_order(app, world)

    class Killed(BaseException):
        pass

    def dies_after_sending(openid, url, outgoing):
        real(openid, url, outgoing)
        raise Killed

    now = utcnow()
    with app.app_context():
        real = wechat_sender(app)
        with pytest.raises(Killed):
            deliver_once(db.session, dies_after_sending, delivery_settings(app), "killed", now=now)
        db.session.rollback()
    [first] = fake_wechat.template_messages
    assert message(app, "order_paid").status == DeliveryStatus.SENDING  # nothing recorded
    result = one_pass(app, worker="next", now=now + timedelta(minutes=6))
    assert result.sent == result.claimed >= 2  # WeChat answered "ok" to the repeat too
    assert len(fake_wechat.template_messages) == result.claimed  # but sent it only once
    assert [m["client_msg_id"] for m in fake_wechat.template_messages].count(first["client_msg_id"]) == 1
    assert message(app, "order_paid").status == DeliveryStatus.SENT


def test_a_subscribe_notification_goes_only_to_a_member_who_subscribed_once(app, fake_wechat, world):
    configure(app, order_paid={"template_id": "SUB-ORDER-PAID", "kind": "subscribe",
                               "data": {"thing1": "title", "time2": "time"}})
    fake_wechat.template_schemas["SUB-ORDER-PAID"] = ["thing1", "time2"]
    first = paid_order(app, world)
    one_pass(app)
    row = message(app, "order_paid")  # the member did not subscribe: in-app only, not a failure
    assert (row.status, row.last_error[:5]) == (DeliveryStatus.SKIPPED, "43101")
    with app.app_context():
        openid = db.session.get(User, world.buyer).openid
    fake_wechat.subscriptions[(openid, "SUB-ORDER-PAID")] = 1  # the member tapped the page's subscribe button
    second = paid_order(app, world)
    third = paid_order(app, world)
    one_pass(app)
    with app.app_context():
        outcomes = dict(db.session.execute(select(OutboxMessage.link, OutboxMessage.status).where(
            OutboxMessage.event == "order_paid")).all())
    assert outcomes == {f"/orders/{first}": DeliveryStatus.SKIPPED, f"/orders/{second}": DeliveryStatus.SENT,
                        f"/orders/{third}": DeliveryStatus.SKIPPED}  # one subscription, one message
    [sent] = fake_wechat.subscribe_messages
    assert sent["page"] == f"http://localhost/orders/{second}" and sent["data"]["thing1"] == {"value": "支付成功，待自提"}
    assert {m["template_id"] for m in fake_wechat.template_messages} == {"TPL-COMMISSION"}


def test_a_wrong_template_id_fails_at_once_for_admins(app, fake_wechat, world):
    fake_wechat.template_errcode = 40037
    paid_order(app, world)
    one_pass(app)
    row = message(app, "order_paid")
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1)


def test_a_dead_workers_claim_is_taken_over_after_its_lease_and_its_late_answer_is_ignored(app, fake_wechat, world):
    paid_order(app, world)
    now = utcnow()
    with app.app_context():
        claimed = claim_batch(db.session, "dead-worker", 10, now)
        assert claimed
        assert claim_batch(db.session, "other", 10, now) == []  # held
    later = now + timedelta(minutes=6)
    result = one_pass(app, worker="other", now=later)
    assert result.sent == len(claimed)
    with app.app_context():  # the dead worker wakes up and reports: its claim is gone, nothing changes
        from dingqiao.services.delivery import _record
        _record(db.session, "dead-worker", claimed[0], DeliveryStatus.FAILED, "late")
    assert message(app, "order_paid").status == DeliveryStatus.SENT


def test_the_worker_command_loop_runs_one_pass_with_once(app, fake_wechat, world):
    paid_order(app, world)
    lines = []
    totals = run(app, once=True, echo=lines.append)
    with app.app_context():  # every message of an event with a template: the buyer's and each beneficiary's
        expected = db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.event.in_(list(MESSAGES))))
    assert expected >= 2 and totals.sent == expected and f"{expected} sent" in lines[0]
    assert len(fake_wechat.template_messages) == expected


def test_the_deliver_messages_command_runs_a_pass(app, fake_wechat, world):
    paid_order(app, world)
    result = app.test_cli_runner().invoke(args=["deliver-messages", "--once"])
    assert result.exit_code == 0, result.output
    assert "Done:" in result.output and " 0 failed" in result.output
    assert message(app, "order_paid").status == DeliveryStatus.SENT
