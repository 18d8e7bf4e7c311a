"""Today's WeChat message rules: each value fitted to its key's type (and accepted by the fake WeChat's own
reading of the rules), WECHAT_MESSAGES refused at start-up when malformed, and the 订阅通知 button rendered only
inside WeChat for the page's events configured as subscribe."""
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from wechatpy.session.memorystorage import MemoryStorage

from dingqiao.config import ConfigError
from dingqiao.services.message_templates import (
    EVENT_STATUS,
    EVENT_VALUES,
    FITTERS,
    UnfittableValue,
    check_message_settings,
    fit,
    key_type,
    subscribe_template_ids,
)
from dingqiao.wechat import WeChatSettings
from dingqiao.wechat.jssdk import JsSdk
from tests.conftest import log_in_member
from tests.fake_wechat import FakeWeChat
from tests.money_world import build_world, buy

WECHAT_BROWSER = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                  "Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN")
OTHER_BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15"
CHINA = timezone(timedelta(hours=8))
LONG_PRODUCT = "顶俏臻品礼盒" * 34  # 204 characters


def wechat_accepts(key: str, value: str) -> bool:
    """The fake WeChat's independent reading of the documented rules, for a template of this one key."""
    return FakeWeChat._typed_data_error([key], {key: {"value": value}}) is None


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("thing1", LONG_PRODUCT, LONG_PRODUCT[:19] + "…"),
    ("thing1", "🎉新品上市🎉", "新品上市"),
    ("thing1", "第一行\n第二行\t\x00完", "第一行 第二行 完"),
    ("thing1", "", "-"),
    ("thing1", None, "-"),
    ("thing1", "👍🏽❤️", "-"),
    ("keyword2", LONG_PRODUCT, LONG_PRODUCT[:19] + "…"),
    ("character_string2", "订单DQ2026 0001号", "DQ20260001"),
    ("character_string2", "订单号", "-"),
    ("character_string2", "A" * 40, "A" * 32),
    ("character_string2", "DQ-2026/12#7🎉", "DQ-2026/12#7"),
    ("number3", 12, "12"),
    ("number3", "3.50", "3.50"),
    ("letter4", "abc123", "abc"),
    ("letter4", "x" * 40, "x" * 32),
    ("symbol5", "!?%&*#", "!?%&*"),
    ("symbol5", "中文abc", "-"),
    ("amount3", 1230, "¥12.30"),
    ("amount3", 5, "¥0.05"),
    ("amount3", 0, "¥0.00"),
    ("amount3", "1230", "¥12.30"),
    ("amount3", 99_999_999_99, "¥99999999.99"),
    ("time4", datetime(2026, 12, 1, 1, 30), "2026-12-01 09:30"),  # naive: UTC, as stored
    ("time4", datetime(2026, 12, 1, 9, 30, tzinfo=CHINA), "2026-12-01 09:30"),
    ("time4", "2026-12-01T01:30:00", "2026-12-01 09:30"),
    ("time4", date(2026, 12, 1), "2026-12-01 00:00"),
    ("date5", datetime(2026, 11, 30, 17, 0), "2026-12-01"),  # already the 1st in China
    ("phrase5", "待自提", "待自提"),
    ("phrase5", "已经成功到账了", "已经成功到"),
    ("phrase5", "已到账✅", "已到账"),
    ("phrase5", "OK", "无"),
    ("phrase5", "", "无"),
    ("name6", "王小明🎉", "王小明"),
    ("name6", "Tom Lee", "Tom Lee"),
    ("name6", "张三Tom李四王五赵六钱七", "张三Tom李四王五赵"),
    ("name6", "A" * 30, "A" * 20),
    ("name6", "User123", "User"),
    ("name6", "", "-"),
    ("phone_number7", "+86-0766-66888866", "+86-0766-66888866"),
    ("phone_number7", "138 0013 8000", "13800138000"),
    ("phone_number7", "", "-"),
    ("car_number8", "粤A 8Z888挂", "粤A8Z888挂"),
    ("car_number8", "浙A·12345", "浙A12345"),
])
def test_each_value_is_fitted_to_its_keys_type_and_wechat_takes_it(key, value, expected):
    assert fit(key, value) == expected
    assert wechat_accepts(key, expected), f"the fake WeChat refuses {key}={expected!r}"


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("amount3", -100, "not negative"),
    ("amount3", 10 ** 11, "more than 10 digits"),  # a billion yuan: the 10 digits WeChat allows are not enough
    ("amount3", "12.30", "amount in fen"),
    ("amount3", True, "amount in fen"),
    ("amount3", None, "no value"),
    ("number3", -1, "not a number"),
    ("number3", "1" * 33, "not a number"),
    ("number3", "三", "not a number"),
    ("letter4", "中文", "no letters"),
    ("time4", "tomorrow", "not a time"),
    ("time4", 1700000000, "not a time"),
    ("date5", "", "no value"),
    ("phone_number7", "1" * 18, "more than 17"),
    ("car_number8", "TOO-LONG-PLATE", "not a licence plate"),
    ("const3", "已支付", "rule for this key type is not known"),
])
def test_a_value_no_fitting_makes_valid_is_refused_naming_the_key(key, value, reason):
    with pytest.raises(UnfittableValue, match=reason) as refused:
        fit(key, value, "amount")
    assert str(refused.value).startswith(key)


def test_the_rules_of_the_fake_refuse_what_wechat_refuses():
    """So that a fitting rule that lets a bad value through shows up as a refused message in the tests."""
    for key, value in [("thing1", "一" * 21), ("character_string2", "订单1"), ("phrase5", "已支付成功了"),
                       ("phrase5", "OK"), ("amount3", "12.30"), ("amount3", "¥123456789.00"), ("thing1", ""),
                       ("thing1", "好🎉"), ("time4", "2026-12-01T09:30"), ("name6", "王" * 11)]:
        assert not wechat_accepts(key, value), (key, value)


def test_a_keys_type_is_its_name_without_the_number():
    assert [key_type(k) for k in ("thing1", "character_string12", "amount01", "phone_number3", "car_number1")] == [
        "thing", "character_string", "amount", "phone_number", "car_number"]


def test_every_event_has_a_status_that_fits_a_phrase_key():
    assert set(EVENT_STATUS) == set(EVENT_VALUES)
    assert all(fit("phrase1", status) == status for status in EVENT_STATUS.values())


# ---------------------------------------------------------------- WECHAT_MESSAGES

GOOD = {"order_paid": {"template_id": "Tmpl_Order-Paid01", "kind": "template",
                       "data": {"character_string1": "order_no", "amount2": "amount", "thing3": "title",
                                "time4": "time", "phrase5": "status"}},
        "withdrawal_paid": {"template_id": "SubWithdrawal", "kind": "subscribe", "data": {"amount1": "amount"}}}


def settings_of(messages) -> dict:
    return {"WECHAT_MESSAGES": messages if isinstance(messages, str) else json.dumps(messages)}


def test_a_well_formed_setting_is_accepted_and_none_at_all_too():
    check_message_settings(settings_of(GOOD))
    check_message_settings({"WECHAT_MESSAGES": GOOD})  # a test mapping may pass the object itself
    check_message_settings({"WECHAT_MESSAGES": ""})
    check_message_settings({})


@pytest.mark.parametrize(("messages", "says"), [
    ("{order_paid: x}", "must be JSON"),
    ("[]", "must be a JSON object"),
    ({"order_payed": GOOD["order_paid"]}, "['order_payed']: no such event"),
    ({"order_paid": {"template_id": "T1", "data": {"thing1": "title"}}}, "exactly template_id, kind and data"),
    ({"order_paid": {**GOOD["order_paid"], "color": "#173177"}}, "exactly template_id, kind and data"),
    ({"order_paid": {**GOOD["order_paid"], "kind": "sms"}}, "kind must be \"template\""),
    ({"order_paid": {**GOOD["order_paid"], "template_id": "Tmpl Order"}}, "template_id must be"),
    ({"order_paid": {**GOOD["order_paid"], "template_id": ""}}, "template_id must be"),
    ({"order_paid": {**GOOD["order_paid"], "data": {}}}, "data must map"),
    ({"order_paid": {**GOOD["order_paid"], "data": {"first": "title", "keyword1": "body"}}}, "first/remark"),
    ({"order_paid": {**GOOD["order_paid"], "data": {"const3": "status"}}}, "data.const3: not a key type"),
    ({"order_paid": {**GOOD["order_paid"], "data": {"thing1": "prodct"}}}, "names the value 'prodct'"),
    ({"commission_frozen": {**GOOD["order_paid"], "data": {"thing1": "product"}}}, "names the value 'product'"),
])
def test_a_malformed_setting_is_refused_with_a_clear_message(messages, says):
    with pytest.raises(ConfigError) as refused:
        check_message_settings(settings_of(messages))
    assert says in str(refused.value)
    assert "WECHAT_MESSAGES" in str(refused.value)


def test_a_page_asks_for_the_subscribe_templates_of_its_events_each_once():
    config = settings_of({**GOOD, "withdrawal_failed": {**GOOD["withdrawal_paid"], "data": {"thing1": "reason"}},
                          "withdrawal_rejected": {**GOOD["withdrawal_paid"], "template_id": "SubRejected"}})
    wallet = ["withdrawal_approved", "withdrawal_paid", "withdrawal_rejected", "withdrawal_failed"]
    assert subscribe_template_ids(config, wallet) == ["SubWithdrawal", "SubRejected"]
    assert subscribe_template_ids(config, ["order_paid"]) == []  # a 模板消息 needs no subscription


# ---------------------------------------------------------------- the subscribe button

@pytest.fixture
def pages(app):
    """The app, with the Jinja global the factory registers (dingqiao/templating.py) in place."""
    app.jinja_env.globals.setdefault("subscribe_template_ids", subscribe_template_ids)
    return app


def page(client, path: str, browser: str) -> str:
    answer = client.get(path, headers={"User-Agent": browser})
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def subscribe_config(**events: str) -> str:
    return json.dumps({event: {"template_id": template_id, "kind": "subscribe", "data": {"thing1": "title"}}
                       for event, template_id in events.items()})


def test_the_order_page_shows_wechats_subscribe_button_for_the_order_events_inside_wechat(pages, client):
    world = build_world(pages)
    order_no = buy(pages, world)
    log_in_member(client, world.buyer)
    pages.config["WECHAT_MESSAGES"] = subscribe_config(order_paid="SubPaid", order_redeemed="SubRedeemed",
                                                      commission_settled="SubCommission")
    html = page(client, f"/orders/{order_no}", WECHAT_BROWSER)
    assert '<wx-open-subscribe template="SubPaid,SubRedeemed" id="dq-subscribe" data-subscribe' in html
    assert '<script type="text/wxtag-template">' in html and "接收微信通知</button>" in html
    assert '<script src="/static/js/subscribe.js" defer></script>' in html
    assert "wx-open-subscribe" not in page(client, f"/orders/{order_no}", OTHER_BROWSER)


def test_the_me_page_shows_the_button_only_for_events_configured_as_subscribe(pages, client):
    world = build_world(pages)
    log_in_member(client, world.buyer)
    assert "wx-open-subscribe" not in page(client, "/me/", WECHAT_BROWSER)  # nothing configured
    pages.config["WECHAT_MESSAGES"] = json.dumps({
        "commission_settled": {"template_id": "TmplCommission", "kind": "template", "data": {"thing1": "title"}},
        "order_paid": {"template_id": "SubPaid", "kind": "subscribe", "data": {"thing1": "title"}}})
    assert "wx-open-subscribe" not in page(client, "/me/", WECHAT_BROWSER)  # a 模板消息, and another page's event
    pages.config["WECHAT_MESSAGES"] = subscribe_config(identity_upgraded="SubUpgraded", commission_settled="SubEarned")
    assert 'template="SubEarned,SubUpgraded"' in page(client, "/me/", WECHAT_BROWSER)
    assert "wx-open-subscribe" not in page(client, "/me/", OTHER_BROWSER)


def test_the_jssdk_config_lets_the_page_use_the_subscribe_open_tag(fake_wechat):
    settings = WeChatSettings(app_id=fake_wechat.app_id, app_secret=fake_wechat.app_secret,
                              base_url=fake_wechat.base_url, timeout_seconds=3)
    config = JsSdk(settings, session_storage=MemoryStorage()).config_for("http://localhost/me/", ["getLocation"])
    assert config["openTagList"] == ["wx-open-subscribe"]


def test_every_fitter_is_documented():
    text = (Path(__file__).resolve().parent.parent / "docs" / "messages.md").read_text(encoding="utf-8")
    assert all(f"`{kind}`" in text for kind in FITTERS)
    assert all(f"`{event}`" in text for event in EVENT_VALUES)


def test_the_values_events_write_are_the_ones_the_setting_may_name(app):
    """What services write into template_data must be names WECHAT_MESSAGES can map (EVENT_VALUES): a typo there
    would leave an operator's mapping with a placeholder and no error. The whole loop writes most events."""
    from sqlalchemy import select

    from dingqiao.extensions import db
    from dingqiao.models import OutboxMessage
    from dingqiao.services.commissions import settle_due_lines
    from dingqiao.services.withdrawals import WithdrawalRules, reject_withdrawal, request_withdrawal
    from dingqiao.models import AdminUser
    from tests.money_world import pay, pick_up

    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    pick_up(app, world, order_no)
    with app.app_context():
        settle_due_lines(db.session)
        withdrawal = request_withdrawal(db.session, world.parent, 100, WithdrawalRules())
        reject_withdrawal(db.session, db.session.get(AdminUser, world.finance_id), withdrawal.id, "测试")
        rows = db.session.scalars(select(OutboxMessage)).all()
    written = {(row.event, key) for row in rows for key in json.loads(row.template_data)}
    assert {event for event, _ in written} >= {"order_paid", "commission_frozen", "order_redeemed",
                                               "withdrawal_rejected"}
    assert all(key in EVENT_VALUES[event] for event, key in written), written
