"""The admin's order detail (everything that happened to one order) and the stock page with manual
adjustments: what each shows, who may do what, and that bad input changes nothing."""
import re

import pytest
from sqlalchemy import event, func, select

from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    AuditLog,
    LocationKind,
    Order,
    OrderStatus,
    StockLevel,
    StockLocation,
    StockMovement,
    StockReason,
)
from dingqiao.services import NotFound, service_cases
from dingqiao.services.accounts import create_admin
from dingqiao.services.admin_queries import order_detail, stock_locations
from dingqiao.services.messages import enqueue_message
from tests.conftest import csrf_token, log_in_admin
from tests.factories import make_outlet, make_product, make_user, stock
from tests.money_world import build_world, buy, pay, pick_up
from tests.test_access import log_in
from tests.test_money import paid_order_with_refund_requested
from tests.test_service_cases import storage


def section(page: str, section_id: str) -> str:
    match = re.search(rf'<section class="dq-admin-panel" id="{section_id}">(.*?)</section>', page, re.S)
    assert match, f"the page has a {section_id} section"
    return match.group(1)


def order_id_of(app, order_no: str) -> int:
    with app.app_context():
        return db.session.scalar(select(Order.id).where(Order.order_no == order_no))


@pytest.fixture
def operator(app) -> int:
    with app.app_context():
        return create_admin(db.session, "ops", "long-enough-pw", AdminRole.OPERATOR).id


@pytest.fixture
def picked_up(app):
    """A ¥100 order paid and picked up (lines settled at once: no cooling period), an after-sales case on it
    answered by the team, and another buyer's paid order next to it."""
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    pick_up(app, world, order_no)
    other_no = buy(app, world, buyer_id=world.grandparent)
    pay(app, other_no)
    with app.app_context():
        case = service_cases.open_case(db.session, world.buyer, kind="quality", subject="瓶盖破损", body="有点漏",
                                       order_no=order_no, **storage(app))
        kefu = create_admin(db.session, "kefu", "long-enough-pw")
        service_cases.add_admin_reply(db.session, kefu, case.id, "已为您补寄", photos=(), **storage(app))
        return world, order_no, other_no, case.id


# ------------------------------------------------------------------------------------------------ order detail

def test_order_detail_gathers_every_section_of_one_order_and_nothing_of_another(app, picked_up):
    world, order_no, other_no, case_id = picked_up
    order_id, other_id = order_id_of(app, order_no), order_id_of(app, other_no)
    with app.app_context():
        d = order_detail(db.session, order_id)
        assert (d.order.order_no, d.member.id, d.outlet.id) == (order_no, world.buyer, world.outlet_id)
        assert [(p.out_trade_no, p.transaction_id, p.amount_fen, p.status) for p in d.payments] == \
            [(order_no, f"42{order_id:016d}", 10_000, "paid")]
        assert [(e.kind, e.out_trade_no) for e in d.payment_events] == [("accepted", order_no)]
        assert sorted((line.kind, line.beneficiary_user_id, line.amount_fen, line.status)
                      for line in d.commission_lines) == [
            ("direct", world.parent, 1000, "settled"), ("regional", world.factory_owner, 200, "settled"),
            ("service_fee", world.outlet_owner, 500, "settled"), ("team", world.grandparent, 300, "settled")]
        assert sorted((entry.kind, owner) for entry, owner in d.ledger) == sorted(
            [(kind, user) for user in (world.parent, world.grandparent, world.outlet_owner, world.factory_owner)
             for kind in ("commission_frozen", "commission_settled")])
        assert [(m.reason, m.on_hand_delta, m.reserved_delta) for m, _product, _place in d.stock_movements] == \
            [("reserve", 0, 1), ("redeem", -1, -1)]
        assert {m.dedup_key for m in d.messages} == {f"order_paid:{order_id}", f"order_redeemed:{order_id}"} | {
            f"commission_{state}:{order_id}:{user}" for state in ("frozen", "settled")
            for user in (world.parent, world.grandparent, world.outlet_owner, world.factory_owner)}
        assert [c.id for c in d.cases] == [case_id]
        assert [row.action for row in d.audit] == ["payment.accepted", "order.redeem", "service.reply"]
        assert {world.parent, world.grandparent, world.outlet_owner, world.factory_owner} <= d.people.keys()
        assert other_id not in {line.order_id for line in d.commission_lines} | {p.order_id for p in d.payments}
        code = d.order.pickup_code
        assert len(code) == 12 and d.masked_pickup_code == "••••••••••" + code[-2:]


def test_the_detail_page_shows_the_order_to_any_admin_with_the_pickup_code_masked(app, client, operator, picked_up):
    world, order_no, other_no, case_id = picked_up
    order_id = order_id_of(app, order_no)
    with app.app_context():
        code = db.session.get(Order, order_id).pickup_code
    log_in_admin(client, operator)
    response = client.get(f"/admin/orders/{order_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert code not in page and code[-2:] in section(page, "order")
    header = section(page, "order")
    assert "已完成" in header and "¥100.00" in header and "会员价" in header and "王小明" in header
    assert f'href="/admin/members/{world.buyer}"' in header and "测试路 1 号" in header
    assert "¥100 套装" in section(page, "items")
    payments = section(page, "payments")
    assert order_no in payments and f"42{order_id:016d}" in payments and "已支付" in payments and "已入账" in payments
    commissions = section(page, "commissions")
    for label, amount, beneficiary in (("直推奖励", "¥10.00", world.parent), ("团队奖励", "¥3.00", world.grandparent),
                                       ("核销服务费", "¥5.00", world.outlet_owner),
                                       ("区域奖励", "¥2.00", world.factory_owner)):
        assert re.search(rf"{label}.*?/admin/members/{beneficiary}\".*?{re.escape(amount)}", commissions, re.S)
    assert "10.00%" in commissions and "已结算" in commissions
    ledger = section(page, "ledger")
    assert re.search(r"佣金结算</td>\s*<td>¥10.00</td><td>-¥10.00</td>", ledger)  # from frozen to available
    movements = section(page, "stock")
    assert "订单预留" in movements and "顾客提货" in movements and "+1" in movements and "-1" in movements
    messages = section(page, "messages")
    assert "支付成功，待自提" in messages and "已提货" in messages and "收益已到账" in messages
    cases = section(page, "cases")
    assert f'href="/admin/service/{case_id}"' in cases and "瓶盖破损" in cases
    audit = section(page, "audit")
    assert "order.redeem" in audit and "service.reply" in audit and "kefu" in audit
    assert other_no not in page


def test_messages_are_linked_by_the_exact_key_not_by_a_number_that_starts_the_same(app, picked_up):
    _world, order_no, _other, _case = picked_up
    order_id = order_id_of(app, order_no)
    with app.app_context():
        stranger = make_user("路人")
        for object_id in (f"{order_id}0", f"{order_id}0:{stranger.id}", f"1{order_id}:{stranger.id}"):
            for event_name in ("order_paid", "commission_frozen"):
                enqueue_message(db.session, user_id=stranger.id, event=event_name, object_id=object_id,
                                title="别的订单", body="")
        db.session.commit()
        d = order_detail(db.session, order_id)
        assert stranger.id not in {m.user_id for m in d.messages} and len(d.messages) == 10


def test_the_detail_takes_a_fixed_number_of_queries_however_many_lines(app, picked_up):
    _world, order_no, _other, _case = picked_up
    order_id = order_id_of(app, order_no)
    statements = []
    with app.app_context():
        listen = lambda *args: statements.append(args[2])  # noqa: E731 - the statement text
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            order_detail(db.session, order_id)
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 14, selects  # one per section, people and admins each in one


def test_an_unpaid_order_shows_its_empty_sections(app, client, operator):
    world = build_world(app)
    order_no = buy(app, world)
    log_in_admin(client, operator)
    page = client.get(f"/admin/orders/{order_id_of(app, order_no)}").get_data(as_text=True)
    assert "待支付" in section(page, "order") and "核销码</th><td>—" in section(page, "order")
    assert "没有支付记录" in section(page, "payments") and "没有佣金" in section(page, "commissions")
    assert "订单预留" in section(page, "stock") and "没有消息" in section(page, "messages")


def test_a_missing_order_is_404(app, client, operator):
    log_in_admin(client, operator)
    assert client.get("/admin/orders/999999").status_code == 404
    with app.app_context(), pytest.raises(NotFound):
        order_detail(db.session, 999999)


def test_an_operator_sees_the_refund_buttons_disabled_and_is_refused_while_finance_approves(
        app, client, fake_wechat, operator):
    world = build_world(app)
    order_no, refund_id = paid_order_with_refund_requested(app, fake_wechat, world)
    order_id = order_id_of(app, order_no)
    log_in_admin(client, operator)
    refunds = section(client.get(f"/admin/orders/{order_id}").get_data(as_text=True), "refunds")
    assert "不想要了" in refunds and "待审核" in refunds and "仅财务可操作" in refunds
    assert f'action="/admin/refunds/{refund_id}/approve"' in refunds
    assert re.search(r'type="submit" disabled>同意并退款', refunds)
    refused = client.post(f"/admin/refunds/{refund_id}/approve", data={"csrf_token": csrf_token(client)})
    assert refused.status_code == 403
    with app.app_context():
        assert db.session.get(Order, order_id).status == OrderStatus.PAID

    finance = app.test_client()
    log_in_admin(finance, world.finance_id)
    refunds = section(finance.get(f"/admin/orders/{order_id}").get_data(as_text=True), "refunds")
    assert "仅财务可操作" not in refunds and "disabled" not in refunds
    assert finance.post(f"/admin/refunds/{refund_id}/approve",
                        data={"csrf_token": csrf_token(finance)}).status_code == 302
    with app.app_context():
        assert db.session.get(Order, order_id).status == OrderStatus.REFUNDED
    page = finance.get(f"/admin/orders/{order_id}").get_data(as_text=True)
    refunds = section(page, "refunds")
    assert "已退款" in refunds and "finance" in refunds and "/approve" not in refunds
    assert "refund.approve" in section(page, "audit") and "已撤销" in section(page, "commissions")
    assert "退款成功" in section(page, "messages") and "取消释放" in section(page, "stock")


# ------------------------------------------------------------------------------------------------ stock

@pytest.fixture
def depots(app):
    """The platform warehouse with 50 of a product (threshold 60: low) and 8 of another, and an outlet with 3."""
    with app.app_context():
        platform = StockLocation(kind=LocationKind.PLATFORM, name="平台总仓")
        db.session.add(platform)
        db.session.flush()
        soap, towel = make_product(1990, name="香皂"), make_product(2990, name="毛巾")
        for product, on_hand, threshold in ((soap, 50, 60), (towel, 8, 0)):
            db.session.add(StockLevel(location_id=platform.id, product_id=product.id, on_hand=on_hand,
                                      low_stock_threshold=threshold))
            db.session.add(StockMovement(location_id=platform.id, product_id=product.id, on_hand_delta=on_hand,
                                         reason=StockReason.INITIAL))
        db.session.commit()
        outlet = make_outlet(make_user("网点主"))
        stock(outlet, soap, 3)
        return platform.id, outlet.location_id, soap.id, towel.id


def level(app, location_id: int, product_id: int) -> int:
    with app.app_context():
        return db.session.scalar(select(StockLevel.on_hand).where(StockLevel.location_id == location_id,
                                                                  StockLevel.product_id == product_id))


def counts(app) -> tuple[int, int]:
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(StockMovement)),
                db.session.scalar(select(func.count()).select_from(AuditLog)))


def test_the_stock_page_defaults_to_the_platform_warehouse_and_switches_location(app, client, operator, depots):
    platform, outlet_location, soap, _towel = depots
    log_in_admin(client, operator)
    page = client.get("/admin/stock/").get_data(as_text=True)
    assert re.search(rf'<option value="{platform}" selected>平台仓库 · 平台总仓</option>', page)
    assert f'<option value="{outlet_location}">网点 · ' in page
    levels = section(page, "levels")
    assert re.search(r'data-product="%d"><td>香皂 <span class="dq-badge dq-badge--warn">库存低</span></td>\s*'
                     r"<td>50</td><td>0</td><td><strong>50</strong></td><td>60</td>" % soap, levels)
    assert re.search(r"<td>毛巾</td>\s*<td>8</td>", levels)

    outlet_page = client.get(f"/admin/stock/?location_id={outlet_location}").get_data(as_text=True)
    assert re.search(r"<td>香皂</td>\s*<td>3</td>", section(outlet_page, "levels"))
    assert client.get("/admin/stock/?location_id=999999").status_code == 404
    with app.app_context():
        assert [location.kind for location in stock_locations(db.session)] == ["platform", "outlet"]


def test_any_admin_adjusts_stock_with_a_reason_and_it_is_recorded_and_audited(app, client, operator, depots):
    platform, _outlet_location, soap, _towel = depots
    log_in_admin(client, operator)
    response = client.post("/admin/stock/adjust", data={"csrf_token": csrf_token(client), "location_id": platform,
                                                         "product_id": soap, "delta": "-5", "note": "盘点 少 5 件"})
    assert response.status_code == 303 and response.location.endswith(f"/admin/stock/?location_id={platform}")
    assert level(app, platform, soap) == 45
    with app.app_context():
        movement = db.session.scalars(select(StockMovement).order_by(StockMovement.id.desc())).first()
        assert (movement.location_id, movement.product_id, movement.on_hand_delta, movement.reason, movement.note) \
            == (platform, soap, -5, "adjust", "盘点 少 5 件")
        audit = db.session.scalars(select(AuditLog).order_by(AuditLog.id.desc())).first()
        assert (audit.actor_kind, audit.actor_id, audit.action, audit.target_type, audit.target_id) == \
            ("admin", operator, "stock.adjust", "stock_location", str(platform))
    assert "盘点 少 5 件" in section(client.get(response.location).get_data(as_text=True), "movements")


@pytest.mark.parametrize(("fields", "message"), [
    ({"delta": "3", "note": "   "}, "请填写调整原因"),
    ({"delta": "-51", "note": "破损"}, "少于已被订单预留"),
    ({"delta": "abc", "note": "盘点"}, "调整数量需为整数"),
    ({"delta": "1.5", "note": "盘点"}, "调整数量需为整数"),
    ({"delta": "0", "note": "盘点"}, "调整数量需为 1 到 100000"),
    ({"delta": "100001", "note": "盘点"}, "调整数量需为 1 到 100000"),
    ({"delta": "3", "note": "盘点", "product_id": "999999"}, "商品不存在"),
    ({"delta": "3", "note": "盘点", "product_id": ""}, "请选择商品"),
    ({"delta": "3", "note": "盘点", "location_id": "999999"}, "库存地点不存在"),
])
def test_a_bad_adjustment_shows_the_page_again_with_why_and_writes_nothing(app, client, operator, depots, fields,
                                                                           message):
    platform, _outlet_location, soap, _towel = depots
    log_in_admin(client, operator)
    before = counts(app)
    response = client.post("/admin/stock/adjust", data={"csrf_token": csrf_token(client), "location_id": platform,
                                                         "product_id": soap, **fields})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in section(page, "adjust") and 'id="levels"' in page
    assert level(app, platform, soap) == 50 and counts(app) == before


def test_strangers_and_members_are_sent_to_the_admin_login(app, client, depots):
    platform, _outlet_location, soap, _towel = depots
    with app.app_context():
        member = make_user("会员").id
    for who in ("stranger", "member"):
        if who == "member":
            log_in(client, member)
        for path in ("/admin/stock/", "/admin/orders/1"):
            response = client.get(path)
            assert response.status_code == 302 and "/admin/login" in response.location, (who, path)
        posted = client.post("/admin/stock/adjust", data={"csrf_token": csrf_token(client), "location_id": platform,
                                                           "product_id": soap, "delta": "5", "note": "盘点"})
        assert posted.status_code == 302 and "/admin/login" in posted.location
    assert level(app, platform, soap) == 50
