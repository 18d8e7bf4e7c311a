"""The admin in one look: the data tables speak Chinese (labels, names, an audit row's changes as a table), errors
under /admin stay in the admin's layout with their status, commission rates are typed and shown in percent, the
menu is the same on every admin page, and saving a product's text unchanged is no change."""
import json
import re
from decimal import Decimal

import pytest
from sqlalchemy import event, select, update

from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    AdminUser,
    AuditLog,
    CommissionRuleVersion,
    DeliveryStatus,
    LedgerEntry,
    Order,
    OutboxMessage,
    Product,
    Wallet,
    Withdrawal,
)
from dingqiao.blueprints.admin.data import audit_detail_rows
from dingqiao.db import write_transaction
from dingqiao.services.audit import record_audit
from dingqiao.services.commissions import RuleError, format_percent, parse_rule, percent_to_bps
from dingqiao.services.refunds import reject_refund, request_refund
from dingqiao.services.service_cases import open_case
from tests.conftest import csrf_token, log_in_admin, log_in_member
from tests.factories import make_product, make_user
from tests.money_world import build_world, buy, pay
from tests.test_admin_data import admins, audit_rows, product_form  # noqa: F401 - admins is a fixture

ADMIN_BAR = 'class="dq-admin-bar"'
TAB_BAR = 'class="dq-tabbar"'


def cell_values(page: str) -> set[str]:
    """The text of every table cell of a page, stripped."""
    return {re.sub(r"\s+", " ", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", page, re.S)}


@pytest.fixture
def paid_world(app):
    """An order paid (payment, commission lines, ledger entries, wallets) and a withdrawal finance rejected."""
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        wallet = db.session.scalar(select(Wallet).where(Wallet.user_id == world.parent))
        withdrawal = Withdrawal(withdrawal_no="W-LOOK-1", user_id=world.parent, wallet_id=wallet.id, amount_fen=500,
                                status="rejected", payout_method="wechat", reject_reason="信息不符")
        db.session.add(withdrawal)
        db.session.commit()
        world.withdrawal_id = withdrawal.id
        world.order_no = order_no
    return world


# ---------------------------------------------------------------- labels and names, not stored values


def test_the_money_tables_show_chinese_labels_and_members_by_name(app, client, paid_world):
    log_in_admin(client, paid_world.finance_id)
    expected = {
        "withdrawals": {"已拒绝", "微信零钱", "二级"},
        "payments": {"已支付"},
        "orders": {"待自提", "王小明"},
        "commission_lines": {"直推奖励", "团队奖励", "核销服务费", "区域奖励", "待结算", "10%", "3%", "二级", "一级"},
        "wallets": {"二级", "一级"},
        "ledger_entries": {"佣金入账（冻结）", "二级"},
    }
    raw = {"rejected", "wechat", "paid", "pending_payment", "direct", "team", "frozen", "commission_frozen", "1000"}
    for table, labels in expected.items():
        page = client.get(f"/admin/data/{table}/").get_data(as_text=True)
        cells = {re.sub(r"<[^>]+>", "", cell) for cell in cell_values(page)}
        assert labels <= cells, (table, labels - cells)
        assert not raw & cells, (table, raw & cells)
    details = client.get(f"/admin/data/withdrawals/details/?id={paid_world.withdrawal_id}").get_data(as_text=True)
    cells = {re.sub(r"<[^>]+>", "", cell) for cell in cell_values(details)}
    assert {"已拒绝", "微信零钱", "二级"} <= cells and not {"rejected", "wechat"} & cells
    # The filter offers the labels too
    listing = client.get("/admin/data/withdrawals/").get_data(as_text=True)
    assert json.dumps("已拒绝") in listing.split("filter-groups-data", 1)[-1]


def test_a_member_name_links_to_the_member_page(app, client, paid_world):
    log_in_admin(client, paid_world.finance_id)
    page = client.get("/admin/data/wallets/").get_data(as_text=True)
    assert f'href="/admin/members/{paid_world.parent}">二级</a>' in page


def test_orders_and_members_in_the_money_tables_and_the_queues_link_to_their_pages(app, client, paid_world):
    with app.app_context():
        order_id = db.session.scalar(select(Order.id).where(Order.order_no == paid_world.order_no))
        request_refund(db.session, paid_world.buyer, paid_world.order_no, "不想要了")
        wallet = db.session.scalar(select(Wallet).where(Wallet.user_id == paid_world.parent))
        db.session.add(Withdrawal(withdrawal_no="W-LOOK-2", user_id=paid_world.parent, wallet_id=wallet.id,
                                  amount_fen=300, status="requested", payout_method="wechat"))
        db.session.execute(update(OutboxMessage).where(OutboxMessage.user_id == paid_world.buyer)
                           .values(status=DeliveryStatus.FAILED, last_error="40037 invalid template_id"))
        db.session.commit()
        case_id = open_case(db.session, paid_world.buyer, kind="quality", subject="瓶盖漏液", body="收到时漏了",
                            order_no=paid_world.order_no, upload_folder=app.config["UPLOAD_FOLDER"],
                            max_bytes=app.config["UPLOAD_MAX_BYTES"]).id
    log_in_admin(client, paid_world.finance_id)
    order_link = f'<a href="/admin/orders/{order_id}">{paid_world.order_no}</a>'
    for table in ("payments", "commission_lines", "ledger_entries", "refunds"):  # the order's number, not its id
        assert order_link in client.get(f"/admin/data/{table}/").get_data(as_text=True), table
    assert order_link in client.get("/admin/refunds").get_data(as_text=True)
    parent_link = f'<a href="/admin/members/{paid_world.parent}">二级</a>'
    assert parent_link in client.get("/admin/withdrawals").get_data(as_text=True)
    assert f'<a href="/admin/members/{paid_world.buyer}">#{paid_world.buyer}</a>' in client.get(
        "/admin/messages").get_data(as_text=True)
    buyer_link = f'<a href="/admin/members/{paid_world.buyer}">王小明</a>'
    assert buyer_link in client.get("/admin/service/").get_data(as_text=True)
    case = client.get(f"/admin/service/{case_id}").get_data(as_text=True)
    assert buyer_link in case and order_link in case


def test_a_data_page_reads_names_numbers_and_owners_for_the_page_at_once_however_many_rows(app, client, paid_world):
    def selects_for(url: str) -> int:
        statements = []
        with app.app_context():
            listen = lambda *args: statements.append(args[2])  # noqa: E731 - the statement text
            event.listen(db.engine, "before_cursor_execute", listen)
            try:
                assert client.get(url).status_code == 200
            finally:
                event.remove(db.engine, "before_cursor_execute", listen)
        return sum(statement.lstrip().upper().startswith("SELECT") for statement in statements)

    log_in_admin(client, paid_world.finance_id)
    url, orders = "/admin/data/ledger_entries/", "/admin/data/orders/"
    selects_for(url)  # the first request after login reads what later ones remember
    few, few_orders = selects_for(url), selects_for(orders)
    for _ in range(2):  # more orders, so more order numbers on the page
        pay(app, buy(app, paid_world))
    for number in range(2):  # more buyers
        with app.app_context():
            buyer = make_user(f"买家{number}").id
        pay(app, buy(app, paid_world, buyer_id=buyer))
    with app.app_context():  # more members' wallets
        for number in range(3):
            wallet = Wallet(user_id=make_user(f"钱包{number}").id)
            db.session.add(wallet)
            db.session.flush()
            db.session.add(LedgerEntry(wallet_id=wallet.id, kind="withdrawal_returned", available_delta_fen=1,
                                       memo="look"))
        db.session.commit()
    page = client.get(url).get_data(as_text=True)
    assert "钱包2" in page and page.count('href="/admin/orders/') >= 3
    assert selects_for(url) == few
    assert "买家1" in client.get(orders).get_data(as_text=True) and selects_for(orders) == few_orders


# ---------------------------------------------------------------- the audit log's detail


def test_audit_detail_rows_pair_old_and_new_values():
    assert audit_detail_rows("products.update", {"changes": {"name": ["旧名", "新名"]}, "images_added": ["a.jpg"]}) == [
        ("name", "旧名", "新名"), ("images_added", None, ["a.jpg"])]
    assert audit_detail_rows("categories.create", {"values": {"name": "洗衣"}}) == [("name", None, "洗衣")]
    assert audit_detail_rows("categories.delete", {"values": {"name": "洗衣"}}) == [("name", "洗衣", None)]
    assert audit_detail_rows("member.upline_corrected", {"old_upline_id": 1, "new_upline_id": 2, "reason": "核实"}) == [
        ("upline_id", 1, 2), ("reason", None, "核实")]


def test_the_audit_log_shows_each_change_as_field_old_new_and_the_admin_by_name(app, client, admins):
    with app.app_context():
        with write_transaction(db.session):
            record_audit(db.session, actor_kind="admin", actor_id=admins[AdminRole.FINANCE], action="products.update",
                         target_type="products", target_id=7,
                         detail={"changes": {"name": ["旧名", "新名"], "is_on_sale": [True, False]}})
        row_id = db.session.scalar(select(AuditLog.id).where(AuditLog.action == "products.update"))
    log_in_admin(client, admins[AdminRole.FINANCE])
    for url in ("/admin/data/audit_log/", f"/admin/data/audit_log/details/?id={row_id}"):
        page = client.get(url).get_data(as_text=True)
        assert '<table class="dq-audit-detail">' in page, url
        assert "<th>字段</th><th>原值</th><th>新值</th>" in page, url
        assert "<tr><th>name</th><td>旧名</td><td>新名</td></tr>" in page, url
        assert "<tr><th>is_on_sale</th><td>是</td><td>否</td></tr>" in page, url
        assert '{"changes"' not in page and "&#34;changes&#34;" not in page, url
        assert "data-finance" in page, url  # the actor's username, not their id


# ---------------------------------------------------------------- errors inside the admin layout


def assert_admin_error(response, status: int, message: str) -> None:
    page = response.get_data(as_text=True)
    assert response.status_code == status, page[:300]
    assert ADMIN_BAR in page and TAB_BAR not in page
    assert f'<div class="dq-toast dq-toast--error" role="alert">{message}' in page


def test_errors_under_admin_keep_their_status_and_the_admin_layout(app, client, admins, paid_world):
    log_in_admin(client, admins[AdminRole.FINANCE])
    token = csrf_token(client)
    assert_admin_error(client.get("/admin/no-such-page"), 404, "页面不存在，或您无权查看。")
    assert_admin_error(client.get("/admin/orders/999999"), 404, "订单不存在。")
    assert_admin_error(client.post("/admin/withdrawals/review", data={"csrf_token": token, "action": "approve"}),
                       400, "请选择提现申请和操作。")
    # A refund finance already turned down cannot be approved: the service's 409, in the admin's page
    with app.app_context():
        refund = request_refund(db.session, paid_world.buyer, paid_world.order_no, "不想要了")
        reject_refund(db.session, db.session.get(AdminUser, paid_world.finance_id), refund.id, "已发货")
        refund_id = refund.id
    assert_admin_error(client.post(f"/admin/refunds/{refund_id}/approve", data={"csrf_token": token}),
                       409, "该退款已处理。")
    log_in_admin(client, admins[AdminRole.OPERATOR])
    assert_admin_error(client.get("/admin/data/audit_log/"), 403, "没有权限访问此页面。")
    # An htmx request gets the message alone, for the page's #flash
    fragment = client.post("/admin/withdrawals/review", data={"csrf_token": csrf_token(client), "action": "approve"},
                           headers={"HX-Request": "true"})
    assert fragment.status_code == 400 and fragment.headers["HX-Retarget"] == "#flash"
    assert "<html" not in fragment.get_data(as_text=True)


def test_a_member_error_is_still_the_members_page(app, client, paid_world):
    log_in_member(client, paid_world.buyer)
    page = client.get("/orders/999999")
    assert page.status_code == 404 and ADMIN_BAR not in page.get_data(as_text=True)


def test_a_boosted_link_into_the_data_area_loads_the_page_whole(app, client, admins):
    log_in_admin(client, admins[AdminRole.OPERATOR])
    boosted = client.get("/admin/data/orders/?page=1", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert boosted.status_code == 204 and boosted.headers["HX-Redirect"] == "/admin/data/orders/?page=1"
    whole = client.get("/admin/data/orders/?page=1").get_data(as_text=True)
    assert ADMIN_BAR in whole and "bootstrap.min.css" in whole and " onclick=" not in whole


def test_the_menu_is_the_same_on_our_pages_and_the_data_pages_and_data_links_are_not_boosted(app, client, admins):
    log_in_admin(client, admins[AdminRole.SUPERADMIN])

    def menu(url: str) -> list[str]:
        page = client.get(url).get_data(as_text=True)
        nav = page.split('<nav class="dq-admin-nav"', 1)[1].split("</nav>", 1)[0]
        return re.findall(r'<a href="([^"]+)"', nav)

    ours, data = menu("/admin/"), menu("/admin/data/products/")
    assert ours == data and len(ours) > 20
    page = client.get("/admin/").get_data(as_text=True)
    for href in ("/admin/data/orders/", "/admin/data/audit_log/", "/admin/data/audit-verify/"):
        assert f'<a href="{href}" hx-boost="false"' in page, href
    log_in_admin(client, admins[AdminRole.OPERATOR])
    assert "/admin/data/audit_log/" not in menu("/admin/")  # finance's tables are not offered to an operator


# ---------------------------------------------------------------- commission rates in percent


def test_percent_is_parsed_to_basis_points_in_one_place():
    typed = ("12.5", "12.5%", " 0 ", "100", "0.01", "７")
    assert [percent_to_bps(raw) for raw in typed] == [1250, 1250, 0, 10000, 1, 700]
    assert percent_to_bps(Decimal("3.25")) == 325
    for junk in ("", "abc", "-1", "100.01", "12.345", "NaN", "1e3", "Infinity", "9" * 40, None):
        with pytest.raises(RuleError, match="百分数"):
            percent_to_bps(junk)
    assert [format_percent(bps) for bps in (1250, 1000, 5, 0)] == ["12.5%", "10%", "0.05%", "0%"]
    rule = parse_rule({"referral_depth": "2", "cooling_days": "7", "direct": "12.5", "team": "3", "third_level": "0",
                       "service_fee": "5", "regional": "2", "payout_cap": "30"}, "双十二")
    assert (rule.direct_bps, rule.team_bps, rule.payout_cap_bps, rule.cooling_days, rule.note) == (
        1250, 300, 3000, 7, "双十二")


RULE_FORM = {"referral_depth": "2", "direct": "12.5", "team": "3", "third_level": "0", "service_fee": "5",
             "regional": "2", "payout_cap": "30", "cooling_days": "7", "note": "双十二"}


def test_finance_types_rates_in_percent_and_they_are_stored_as_basis_points(app, client, paid_world):
    log_in_admin(client, paid_world.finance_id)
    page = client.get("/admin/commission-rules").get_data(as_text=True)
    assert 'name="direct" inputmode="decimal" value="10"' in page  # the rule in force, in percent
    assert "hx-confirm=" in page.split('value="publish"', 1)[1].split(">", 1)[0]
    refused = client.post("/admin/commission-rules", data={"csrf_token": csrf_token(client), **RULE_FORM,
                                                           "direct": "12.345", "action": "publish"})
    assert refused.status_code == 400 and "最多两位小数的百分数" in refused.get_data(as_text=True)
    assert 'value="12.345"' in refused.get_data(as_text=True)  # given back as typed
    published = client.post("/admin/commission-rules", data={"csrf_token": csrf_token(client), **RULE_FORM,
                                                             "action": "publish"}, headers={"HX-Request": "true"})
    assert published.status_code == 204 and published.headers["HX-Redirect"] == "/admin/commission-rules"
    with app.app_context():
        newest = db.session.scalars(select(CommissionRuleVersion).order_by(CommissionRuleVersion.id.desc())).first()
        assert (newest.direct_bps, newest.team_bps, newest.payout_cap_bps, newest.note) == (1250, 300, 3000, "双十二")
    page = client.get("/admin/commission-rules").get_data(as_text=True)
    assert "<td>12.5%</td><td>3%</td>" in page and 'name="direct" inputmode="decimal" value="12.5"' in page
    lines = client.get("/admin/data/commission_lines/").get_data(as_text=True)
    assert "基点" not in lines


# ---------------------------------------------------------------- a product saved unchanged


def test_saving_a_product_whose_text_the_browser_sends_with_crlf_audits_nothing(app, client, admins):
    with app.app_context():
        product = make_product(3990)
        product.description = "第一行\n第二行"
        product.subtitle = "好用"
        db.session.commit()
        product_id, category_id = product.id, product.category_id
    log_in_admin(client, admins[AdminRole.FINANCE])
    form = dict(member_price="39.90", outlet_price="31.92", factory_price="25.93", name="测试洗衣液", subtitle="好用",
                unit="件", is_on_sale="y")
    before = len(audit_rows(app, "products.update"))
    client.post(f"/admin/data/products/edit/?id={product_id}",
                data=product_form(client, category_id, description="第一行\r\n第二行", **form))
    assert len(audit_rows(app, "products.update")) == before, "an unchanged text is no change"
    client.post(f"/admin/data/products/edit/?id={product_id}",
                data=product_form(client, category_id, description="第一行\r\n第三行", **form))
    updates = audit_rows(app, "products.update")
    assert len(updates) == before + 1
    changes = json.loads(updates[-1].detail)["changes"]
    assert changes["description"] == ["第一行\n第二行", "第一行\n第三行"] and set(changes) == {"description", "updated_at"}
    with app.app_context():
        assert db.session.get(Product, product_id).description == "第一行\n第三行"
