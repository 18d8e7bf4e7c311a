"""The outlet's scan-to-redeem pages, the member's wallet, and the finance withdrawal queue, over HTTP."""
import pytest
from sqlalchemy import select

from dingqiao.extensions import db
from dingqiao.models import Order, OrderStatus, Withdrawal, WithdrawalStatus
from dingqiao.services.withdrawals import request_withdrawal, WithdrawalRules
from tests.conftest import OPEN_RULE_NOTE, csrf_token
from tests.money_world import assert_money_consistent, balances, build_world, buy, pay, pick_up
from tests.test_access import log_in


def code_of(app, order_no: str) -> str:
    with app.app_context():
        return db.session.scalar(select(Order.pickup_code).where(Order.order_no == order_no))


@pytest.fixture
def paid_order(app):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    return world, order_no, code_of(app, order_no)


def test_outlet_types_the_code_confirms_and_the_upline_earns(app, client, paid_order):
    world, order_no, code = paid_order
    log_in(client, world.outlet_owner)
    page = client.get("/outlet/redeem").get_data(as_text=True)
    assert "扫码核销" in page and "data-scan-url" in page
    shown = client.get("/outlet/redeem/lookup", query_string={"code": f"{code[:4]} {code[4:8]} {code[8:]}"},
                       headers={"HX-Request": "true"})
    body = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "<html" not in body
    assert "¥100.00" in body and "¥100 套装" in body and "王*" in body and "确认核销" in body
    done = client.post(f"/outlet/redeem/{code}", headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client)})
    assert done.status_code == 200 and "核销成功" in done.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Order.status).where(Order.order_no == order_no)) == OrderStatus.COMPLETED
    assert balances(app, world.parent) == (1000, 0)
    again = client.post(f"/outlet/redeem/{code}", headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client)})
    assert again.status_code == 409 and "使用过" in again.get_data(as_text=True)
    assert_money_consistent(app)


def test_the_pickup_qr_url_opens_the_confirm_page(app, client, paid_order):
    world, _order_no, code = paid_order
    log_in(client, world.outlet_owner)
    page = client.get(f"/outlet/redeem/{code}")
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True) and "确认核销" in page.get_data(as_text=True)


@pytest.mark.parametrize(("code", "status", "message"), [("123", 409, "12 位数字"), ("000000000000", 404, "不存在")])
def test_wrong_codes_get_clear_messages(app, client, paid_order, code, status, message):
    world, *_ = paid_order
    log_in(client, world.outlet_owner)
    response = client.get("/outlet/redeem/lookup", query_string={"code": code}, headers={"HX-Request": "true"})
    assert response.status_code == status and message in response.get_data(as_text=True)


def test_members_who_are_not_staff_cannot_open_the_outlet_pages(app, client, paid_order):
    world, _order_no, code = paid_order
    log_in(client, world.buyer)
    assert client.get("/outlet/redeem").status_code == 403
    assert client.post(f"/outlet/redeem/{code}", headers={"X-CSRFToken": csrf_token(client)}).status_code == 403
    with app.app_context():
        assert db.session.scalar(select(Order.status).where(Order.pickup_code == code)) == OrderStatus.PAID


def test_guessing_codes_is_rate_limited(app_config, database_url, tmp_path, fake_wechat):
    from dingqiao import create_app

    app_config["REDEEM_RATE_PER_USER"] = "3 per minute"
    app = create_app(app_config)
    with app.app_context():
        db.create_all()
    try:
        world = build_world(app)
        client = app.test_client()
        log_in(client, world.outlet_owner)
        answers = [client.get("/outlet/redeem/lookup", query_string={"code": f"{n:012d}"},
                              headers={"HX-Request": "true"}) for n in range(5)]
        assert [a.status_code for a in answers] == [404, 404, 404, 429, 429]
        assert "操作太频繁" in answers[-1].get_data(as_text=True)
    finally:
        with app.app_context():
            db.session.remove()
            db.drop_all()
            db.engine.dispose()


def test_the_wallet_shows_balances_filters_earnings_and_withdraws(app, client, paid_order):
    world, order_no, _code = paid_order
    pick_up(app, world, order_no)
    log_in(client, world.parent)
    page = client.get("/wallet/").get_data(as_text=True)
    assert "¥10.00" in page and "直推奖励" in page and "+¥10.00" in page
    only_team = client.get("/wallet/", query_string={"kind": "team"}, headers={"HX-Request": "true"})
    team_body = only_team.get_data(as_text=True)
    assert "<html" not in team_body and "+¥10.00" not in team_body and "暂无收益" in team_body
    other_month = client.get("/wallet/", query_string={"month": "2001-01"}, headers={"HX-Request": "true"})
    assert "暂无收益" in other_month.get_data(as_text=True)
    # The month filter is a list of the last 12 China-time months (a month input showed dashes on phones).
    from dingqiao.models.base import utcnow
    from dingqiao.services.periods import china_today
    today = china_today(utcnow())
    this_month = f"{today.year}-{today.month:02d}"
    assert '<option value="">全部月份</option>' in page and f'<option value="{this_month}">{today.year}年{today.month}月' in page
    picked = client.get("/wallet/", query_string={"month": this_month}).get_data(as_text=True)
    assert f'<option value="{this_month}" selected>' in picked and "+¥10.00" in picked

    token = csrf_token(client)
    too_much = client.post("/wallet/withdrawals", data={"amount": "10.01"}, headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert too_much.status_code == 409 and "可用余额不足" in too_much.get_data(as_text=True)
    junk = client.post("/wallet/withdrawals", data={"amount": "1e3"}, headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert junk.status_code == 409 and "正确的金额" in junk.get_data(as_text=True)
    ok = client.post("/wallet/withdrawals", data={"amount": "6.50"}, headers={"X-CSRFToken": token})
    assert ok.status_code == 303
    assert balances(app, world.parent) == (350, 0)
    assert "审核中" in client.get("/wallet/").get_data(as_text=True)
    assert_money_consistent(app)


def test_an_earning_line_shows_the_order_with_a_masked_buyer_and_only_to_its_owner(app, client, paid_order):
    world, order_no, _code = paid_order
    log_in(client, world.parent)
    page = client.get("/wallet/").get_data(as_text=True)
    line_url = page[page.index("/wallet/earnings/"):].split('"')[0]
    detail = client.get(line_url).get_data(as_text=True)
    assert order_no in detail and "王*" in detail and "王小明" not in detail
    log_in(client, world.grandparent)
    assert client.get(line_url).status_code == 404


def test_finance_works_the_withdrawal_queue_in_bulk(app, client, fake_wechat, paid_order):
    from dingqiao.models import AdminRole
    from dingqiao.services.accounts import create_admin

    world, order_no, _code = paid_order
    pick_up(app, world, order_no)
    rules = WithdrawalRules()
    with app.app_context():
        ids = [request_withdrawal(db.session, world.parent, 200, rules).id for _ in range(3)]
        create_admin(db.session, "ops9", "long-enough-pw", AdminRole.OPERATOR)
    staff = app.test_client()
    staff.post("/admin/login", data={"username": "ops9", "password": "long-enough-pw", "csrf_token": csrf_token(staff)})
    forbidden = staff.post("/admin/withdrawals/review", data={"csrf_token": csrf_token(staff), "action": "approve",
                                                              "withdrawal_id": ids})
    assert forbidden.status_code == 403
    staff.post("/admin/logout", data={"csrf_token": csrf_token(staff)})
    staff.post("/admin/login", data={"username": "finance", "password": "long-enough-pw", "csrf_token": csrf_token(staff)})
    queue = staff.get("/admin/withdrawals").get_data(as_text=True)
    assert queue.count('name="withdrawal_id"') == 3
    staff.post("/admin/withdrawals/review", data={"csrf_token": csrf_token(staff), "action": "approve",
                                                  "withdrawal_id": ids[:2]})
    staff.post("/admin/withdrawals/review", data={"csrf_token": csrf_token(staff), "action": "reject",
                                                  "withdrawal_id": [ids[2]], "reason": "核实中"})
    with app.app_context():
        statuses = [db.session.get(Withdrawal, wid).status for wid in ids]
    assert statuses == [WithdrawalStatus.PAID, WithdrawalStatus.PAID, WithdrawalStatus.REJECTED]
    assert len(fake_wechat.transfers) == 2
    assert "没有待审核的提现" in staff.get("/admin/withdrawals").get_data(as_text=True)
    assert balances(app, world.parent) == (600, 0)
    assert_money_consistent(app)


def test_finance_previews_and_publishes_a_rule_version_and_depth_four_is_refused(app, client):
    from dingqiao.models import CommissionRuleVersion

    world = build_world(app)
    client.post("/admin/login", data={"username": "finance", "password": "long-enough-pw", "csrf_token": csrf_token(client)})
    page = client.get("/admin/commission-rules").get_data(as_text=True)
    assert "生效中" in page and "¥10.00" in page  # the current version's preview of a ¥100 order
    # Rates are typed in percent (8 = 8 %) and stored in basis points.
    form = {"csrf_token": csrf_token(client), "referral_depth": "2", "direct": "8", "team": "2",
            "third_level": "0", "service_fee": "5", "regional": "2", "payout_cap": "30",
            "cooling_days": "7", "note": "双十二"}
    preview = client.post("/admin/commission-rules", data={**form, "action": "preview"}).get_data(as_text=True)
    assert "¥8.00" in preview and "¥17.00" in preview
    refused = client.post("/admin/commission-rules", data={**form, "referral_depth": "4", "action": "publish"})
    assert refused.status_code == 400 and "最多 3 级" in refused.get_data(as_text=True)
    junk = client.post("/admin/commission-rules", data={**form, "direct": "-5", "action": "publish"})
    assert junk.status_code == 400 and "百分数" in junk.get_data(as_text=True)
    with app.app_context():
        assert len(db.session.scalars(select(CommissionRuleVersion)
                                      .where(CommissionRuleVersion.note != OPEN_RULE_NOTE)).all()) == 1
    published = client.post("/admin/commission-rules", data={**form, "action": "publish"})
    assert published.status_code == 302
    with app.app_context():
        newest = db.session.scalars(select(CommissionRuleVersion).order_by(CommissionRuleVersion.id.desc())).first()
        assert (newest.direct_bps, newest.cooling_days, newest.note) == (800, 7, "双十二")
    # Orders paid from now on use it; the world's parent earns 8% instead of 10%.
    order_no = buy(app, world)
    pay(app, order_no)
    assert balances(app, world.parent) == (0, 800)
    assert_money_consistent(app)


def test_check_money_command_names_a_tampered_wallet(app, paid_order):
    from sqlalchemy import update

    from dingqiao.models import Wallet

    ok = app.test_cli_runner().invoke(args=["check-money"])
    assert ok.exit_code == 0 and "hold" in ok.output
    world, *_ = paid_order
    with app.app_context():
        db.session.execute(update(Wallet).where(Wallet.user_id == world.parent).values(frozen_fen=Wallet.frozen_fen + 1))
        db.session.commit()
    broken = app.test_cli_runner().invoke(args=["check-money"])
    assert broken.exit_code == 1 and f"(user {world.parent})" in broken.output
