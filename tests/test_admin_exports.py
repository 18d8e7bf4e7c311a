"""Exports (issue 8): orders, commission lines and withdrawals for a range of China-time dates, as CSV and XLSX.

The world has one order (with its four commission lines) and one withdrawal at each edge of 2026-11-01 …
2026-11-30 China time: a second before the first China midnight, the midnight itself, the last second of the
last day, and the next China midnight. Only the middle two belong to the range.
"""
import codecs
import csv
import io
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime

import openpyxl
import pytest
from sqlalchemy import select, update

from dingqiao.extensions import db
from dingqiao.models import AdminRole, AdminUser, AuditLog, CommissionLine, Order, OrderItem, Outlet, User
from dingqiao.models.base import utcnow
from dingqiao.services import exports
from dingqiao.services.accounts import create_admin
from dingqiao.services.audit import verify_audit_chain
from dingqiao.services.periods import china_today
from dingqiao.services.withdrawals import WithdrawalRules, reject_withdrawal, request_withdrawal
from tests.conftest import log_in_admin
from tests.factories import make_order, make_product, stock
from tests.money_world import build_world, buy, pay, pick_up

MOMENTS = {  # naive UTC, as stored
    "before": datetime(2026, 10, 31, 15, 59, 59),  # 2026-10-31 23:59:59 in China
    "first": datetime(2026, 10, 31, 16, 0, 0),  # 2026-11-01 00:00:00
    "last": datetime(2026, 11, 30, 15, 59, 59),  # 2026-11-30 23:59:59
    "after": datetime(2026, 11, 30, 16, 0, 0),  # 2026-12-01 00:00:00
}
NOVEMBER = {"start": "2026-11-01", "end": "2026-11-30"}
WITHDRAWN_FEN = {"before": 101, "first": 123, "last": 456, "after": 102}
INJECTED = '=HYPERLINK("http://evil.example/?x","点我")'
REJECT_REASON = "@SUM(1+1) 信息不符"

ORDER_HEADER = ["订单号", "下单时间", "状态", "会员", "手机", "核销网点", "商品", "金额", "支付时间", "核销时间", "退款时间"]
COMMISSION_HEADER = ["订单号", "产生时间", "类型", "层级", "受益人", "基数", "比例(%)", "金额", "状态", "结算时间"]
WITHDRAWAL_HEADER = ["提现单号", "申请时间", "会员", "手机", "金额", "手续费", "状态", "方式", "审核时间", "打款时间",
                     "拒绝/失败原因"]


@dataclass
class Boundaries:
    orders: dict[str, str]  # moment name → order_no
    withdrawals: dict[str, str]  # moment name → withdrawal_no
    finance_id: int
    operator_id: int
    outlet_name: str


@pytest.fixture
def boundaries(app) -> Boundaries:
    """Orders bought, paid and picked up (so commissions settle and the upline can withdraw), then moved to
    the edges of November; a ¥39.90 product so that the commissions have odd fen."""
    world = build_world(app)
    with app.app_context():
        db.session.get(User, world.buyer).nickname = INJECTED
        db.session.commit()
        outlet = db.session.get(Outlet, world.outlet_id)
        product = make_product(3990, name="薰衣草洗衣液")
        stock(outlet, product, 10)
        world = replace(world, product_id=product.id)
        outlet_name = outlet.name
    orders = {}
    for name, moment in MOMENTS.items():
        order_no = orders[name] = buy(app, world)
        pay(app, order_no)
        pick_up(app, world, order_no)
        with app.app_context():
            order_id = db.session.scalar(select(Order.id).where(Order.order_no == order_no))
            db.session.execute(update(Order).where(Order.id == order_id).values(created_at=moment))
            db.session.execute(update(CommissionLine).where(CommissionLine.order_id == order_id)
                               .values(created_at=moment))
            db.session.commit()
    with app.app_context():
        rules = WithdrawalRules(min_fen=100, fee_bps=100, daily_cap_fen=500_000)
        withdrawals = {name: request_withdrawal(db.session, world.parent, WITHDRAWN_FEN[name], rules, now=moment)
                       for name, moment in MOMENTS.items()}
        finance = db.session.get(AdminUser, world.finance_id)
        reject_withdrawal(db.session, finance, withdrawals["last"].id, REJECT_REASON)
        operator = create_admin(db.session, "operator", "long-enough-pw", AdminRole.OPERATOR)
        return Boundaries(orders, {name: w.withdrawal_no for name, w in withdrawals.items()}, world.finance_id,
                          operator.id, outlet_name)


def download(client, kind: str, file_format: str, **dates):
    return client.get("/admin/exports/download", query_string={"kind": kind, "format": file_format,
                                                                **(dates or NOVEMBER)})


def csv_rows(response) -> list[list[str]]:
    body = response.get_data()
    assert body.startswith(codecs.BOM_UTF8)
    return list(csv.reader(io.StringIO(body[len(codecs.BOM_UTF8):].decode("utf-8"), newline="")))


def xlsx_sheet(response):
    return openpyxl.load_workbook(io.BytesIO(response.get_data())).active


def export_audits(app) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(select(AuditLog).where(AuditLog.action == "export").order_by(AuditLog.id)).all()
        return [{"actor_id": row.actor_id, **json.loads(row.detail)} for row in rows]


def test_orders_as_csv_hold_exactly_the_china_time_days_of_the_range(app, client, boundaries):
    log_in_admin(client, boundaries.operator_id)
    response = download(client, "orders", "csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv" and response.mimetype_params["charset"] == "utf-8"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=orders_2026-11-01_2026-11-30.csv; "
        "filename*=UTF-8''%E8%AE%A2%E5%8D%95_2026-11-01_2026-11-30.csv"
    )
    rows = csv_rows(response)
    assert rows[0] == ORDER_HEADER
    assert [row[0] for row in rows[1:]] == [boundaries.orders["first"], boundaries.orders["last"]]
    first = dict(zip(ORDER_HEADER, rows[1]))
    assert first["下单时间"] == "2026-11-01 00:00:00"
    assert dict(zip(ORDER_HEADER, rows[2]))["下单时间"] == "2026-11-30 23:59:59"
    assert first["状态"] == "已完成"
    assert first["会员"] == "'" + INJECTED  # neutralised: Excel shows the text instead of running it
    assert first["核销网点"] == boundaries.outlet_name
    assert first["商品"] == "薰衣草洗衣液×1"
    assert first["金额"] == "39.90"
    assert first["支付时间"] and first["核销时间"] and first["退款时间"] == ""


def test_orders_as_xlsx_have_the_same_rows_numbers_for_money_and_text_for_an_injected_name(app, client, boundaries):
    log_in_admin(client, boundaries.operator_id)
    response = download(client, "orders", "xlsx")
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "filename=orders_2026-11-01_2026-11-30.xlsx;" in response.headers["Content-Disposition"]
    sheet = xlsx_sheet(response)
    rows = list(sheet.iter_rows())
    assert [cell.value for cell in rows[0]] == ORDER_HEADER
    assert all(cell.font.b for cell in rows[0])
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["G"].width >= 30  # 商品 gets room
    assert [row[0].value for row in rows[1:]] == [boundaries.orders["first"], boundaries.orders["last"]]
    first = dict(zip(ORDER_HEADER, rows[1]))
    assert first["下单时间"].value == datetime(2026, 11, 1, 0, 0, 0)
    assert first["金额"].value == 39.9 and first["金额"].number_format == "0.00"
    assert first["会员"].value == INJECTED and first["会员"].data_type == "s"  # a string, not a formula


def test_commissions_in_both_formats_with_exact_amounts(app, client, boundaries):
    log_in_admin(client, boundaries.finance_id)
    expected = {  # of ¥39.90 at 10% / 3% / 5% / 2%, floored to the fen
        ("直推奖励", "1"): ("10.00", "3.99"), ("团队奖励", "2"): ("3.00", "1.19"),
        ("核销服务费", ""): ("5.00", "1.99"), ("区域奖励", ""): ("2.00", "0.79"),
    }
    rows = csv_rows(download(client, "commissions", "csv"))
    assert rows[0] == COMMISSION_HEADER
    lines = [dict(zip(COMMISSION_HEADER, row)) for row in rows[1:]]
    assert [line["订单号"] for line in lines] == [boundaries.orders["first"]] * 4 + [boundaries.orders["last"]] * 4
    assert {(line["类型"], line["层级"]): (line["比例(%)"], line["金额"]) for line in lines} == expected
    assert {line["基数"] for line in lines} == {"39.90"}
    assert {line["状态"] for line in lines} == {"已结算"}
    assert lines[0]["产生时间"] == "2026-11-01 00:00:00" and lines[0]["结算时间"]

    sheet = xlsx_sheet(download(client, "commissions", "xlsx"))
    cells = [dict(zip(COMMISSION_HEADER, row)) for row in list(sheet.iter_rows())[1:]]
    assert [line["订单号"].value for line in cells] == [line["订单号"] for line in lines]
    assert sorted(line["金额"].value for line in cells) == [0.79, 0.79, 1.19, 1.19, 1.99, 1.99, 3.99, 3.99]
    assert {line["金额"].number_format for line in cells} == {"0.00"}


def test_withdrawals_in_both_formats(app, client, boundaries):
    log_in_admin(client, boundaries.finance_id)
    rows = csv_rows(download(client, "withdrawals", "csv"))
    assert rows[0] == WITHDRAWAL_HEADER
    first, last = (dict(zip(WITHDRAWAL_HEADER, row)) for row in rows[1:])
    assert [first["提现单号"], last["提现单号"]] == [boundaries.withdrawals["first"], boundaries.withdrawals["last"]]
    assert (first["申请时间"], first["金额"], first["手续费"], first["状态"], first["方式"]) == (
        "2026-11-01 00:00:00", "1.23", "0.01", "待审核", "微信零钱")
    assert (last["金额"], last["手续费"], last["状态"]) == ("4.56", "0.04", "已拒绝")
    assert last["审核时间"] and last["打款时间"] == ""
    assert last["拒绝/失败原因"] == "'" + REJECT_REASON

    sheet = xlsx_sheet(download(client, "withdrawals", "xlsx"))
    cells = [dict(zip(WITHDRAWAL_HEADER, row)) for row in list(sheet.iter_rows())[1:]]
    assert [line["提现单号"].value for line in cells] == [first["提现单号"], last["提现单号"]]
    assert [line["金额"].value for line in cells] == [1.23, 4.56]
    assert cells[1]["拒绝/失败原因"].value == REJECT_REASON and cells[1]["拒绝/失败原因"].data_type == "s"


def test_a_long_export_is_read_in_batches_with_each_orders_own_items(app, client, boundaries, monkeypatch):
    """Batches of three (yield_per, with the items loaded per batch) and CSV chunks of two rows: every order
    still carries its own items, in created_at order."""
    monkeypatch.setattr(exports, "BATCH", 3)
    monkeypatch.setattr(exports, "CSV_CHUNK_ROWS", 2)
    with app.app_context():
        buyer = db.session.scalar(select(User).where(User.nickname == INJECTED))
        outlet = db.session.scalar(select(Outlet).where(Outlet.name == boundaries.outlet_name))
        soap, towel = make_product(1250, name="香皂"), make_product(999, name="毛巾")
        placed = []
        for day in range(7, 0, -1):  # made newest first, so id order is not created_at order
            order = make_order(buyer, outlet, soap, quantity=day)
            order.created_at = datetime(2026, 11, day, 4, 0)
            placed.append((order.created_at, order.order_no, f"香皂×{day}"))
        db.session.add(OrderItem(order_id=order.id, product_id=towel.id, product_name="毛巾", unit_price_fen=999,
                                 quantity=2, subtotal_fen=1998))
        order.total_fen += 1998
        db.session.commit()
        placed[-1] = (*placed[-1][:2], "香皂×1、毛巾×2")
    log_in_admin(client, boundaries.finance_id)
    rows = [dict(zip(ORDER_HEADER, row)) for row in csv_rows(download(client, "orders", "csv"))[1:]]
    expected = [(boundaries.orders["first"], "薰衣草洗衣液×1")] + [(no, items) for _, no, items in sorted(placed)]
    expected.append((boundaries.orders["last"], "薰衣草洗衣液×1"))
    assert [(row["订单号"], row["商品"]) for row in rows] == expected
    assert [row["金额"] for row in rows[1:8]] == ["32.48", "25.00", "37.50", "50.00", "62.50", "75.00", "87.50"]


def test_an_operator_may_export_orders_only(app, client, boundaries):
    log_in_admin(client, boundaries.operator_id)
    page = client.get("/admin/exports/").get_data(as_text=True)
    assert 'value="orders"' in page and 'value="commissions"' not in page and 'value="withdrawals"' not in page
    for kind in ("commissions", "withdrawals"):
        for file_format in ("csv", "xlsx"):
            response = download(client, kind, file_format)
            assert response.status_code == 403
            assert "Content-Disposition" not in response.headers
    assert export_audits(app) == []


def test_a_superadmin_may_export_money(app, client, boundaries):
    with app.app_context():
        superadmin_id = create_admin(db.session, "boss", "long-enough-pw", AdminRole.SUPERADMIN).id
    log_in_admin(client, superadmin_id)
    assert download(client, "withdrawals", "csv").status_code == 200


@pytest.mark.parametrize("dates, message, field", [
    ({"start": "", "end": "2026-11-30"}, "请选择开始日期和结束日期。", "start"),
    ({"start": "2026-11-01"}, "请选择开始日期和结束日期。", "end"),
    ({"start": "2026-11-30", "end": "2026-11-01"}, "结束日期不能早于开始日期。", "end"),
    ({"start": "2025-01-01", "end": "2026-01-02"}, "一次最多导出 366 天", "end"),  # 367 days
    ({"start": "2026-02-30", "end": "2026-03-01"}, "日期格式不正确", "start"),
    ({"start": "20261101", "end": "2026-11-30"}, "日期格式不正确", "start"),
])
def test_invalid_ranges_show_the_form_again_with_a_chinese_message(app, client, boundaries, dates, message, field):
    log_in_admin(client, boundaries.finance_id)
    response = download(client, "orders", "csv", **dates)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page and 'name="start"' in page
    # Next to the day it is about, that field marked; not above the form.
    assert re.search(rf'name="{field}"[^>]*aria-invalid="true"[^>]*><span class="dq-field-error"[^>]*>{message}', page)
    assert "dq-toast--error" not in page
    assert export_audits(app) == []


def test_366_days_are_allowed(app, client, boundaries):
    log_in_admin(client, boundaries.finance_id)
    assert download(client, "orders", "xlsx", start="2028-01-01", end="2028-12-31").status_code == 200  # leap year
    assert download(client, "orders", "xlsx", start="2025-01-01", end="2026-01-01").status_code == 200


def test_an_unknown_kind_or_format_is_refused(app, client, boundaries):
    log_in_admin(client, boundaries.finance_id)
    assert download(client, "members", "csv").status_code == 400
    assert download(client, "orders", "pdf").status_code == 400
    assert export_audits(app) == []


def test_every_export_writes_an_audit_row(app, client, boundaries):
    log_in_admin(client, boundaries.finance_id)
    download(client, "orders", "csv").get_data()
    download(client, "commissions", "xlsx").get_data()
    assert export_audits(app) == [
        {"actor_id": boundaries.finance_id, "kind": "orders", "format": "csv", "first": "2026-11-01",
         "last": "2026-11-30", "rows": 2},
        {"actor_id": boundaries.finance_id, "kind": "commissions", "format": "xlsx", "first": "2026-11-01",
         "last": "2026-11-30", "rows": 8},
    ]
    with app.app_context():
        assert verify_audit_chain(db.session) is None


def test_the_form_defaults_to_this_month_so_far(app, client, boundaries):
    log_in_admin(client, boundaries.finance_id)
    response = client.get("/admin/exports/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    today = china_today(utcnow())
    assert f'name="start" value="{today.replace(day=1).isoformat()}"' in page
    assert f'name="end" value="{today.isoformat()}"' in page
    assert all(f'value="{kind}"' in page for kind in ("orders", "commissions", "withdrawals"))


def test_exports_need_an_admin(client):
    response = client.get("/admin/exports/download", query_string={"kind": "orders", "format": "csv", **NOVEMBER})
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]
