"""Identity upgrades: rules that refuse disguised entry fees, applications, the upgrade inside the payment (or
redemption) transaction, factory-store region exclusivity, admin review, and the pages."""
import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from dingqiao.db import write_transaction
from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    AdminUser,
    ApplicationStatus,
    AuditLog,
    FactoryStore,
    Identity,
    IdentityApplication,
    IdentityRuleVersion,
    LocationKind,
    Order,
    OrderStatus,
    OutboxMessage,
    Outlet,
    Product,
    RestockItem,
    RestockOrder,
    RestockStatus,
    StockLocation,
    User,
)
from dingqiao.services import Forbidden
from dingqiao.services.accounts import create_admin
from dingqiao.services.cart import view_cart
from dingqiao.services.payments import handle_pay_notification
from dingqiao.services.upgrades import (
    ApplicationInput,
    IdentityRuleInput,
    UpgradeError,
    approve_application,
    apply_for_identity,
    create_identity_rule,
    reject_application,
    upgrade_progress,
    validate_identity_rule,
    withdraw_application,
)
from dingqiao.wechat import pay_gateway
from tests.conftest import Unexpected, csrf_token, run_concurrently
from tests.factories import make_outlet, make_region, make_user
from tests.money_world import balances, build_world, buy, pay, pick_up
from tests.test_access import log_in

OUTLET_RULE = IdentityRuleInput(target="outlet", metric="goods_purchases", threshold_fen=10_000, counts_at="paid")
FACTORY_RULE = IdentityRuleInput(target="factory", metric="restock_volume", threshold_fen=50_000)


def shop(target: str = "outlet", region_id: int | None = None, **changes) -> ApplicationInput:
    values = dict(target=target, region_id=region_id, shop_name="小周便利店", address="杭州市西湖区古荡新村 3 幢",
                  latitude="30.2741", longitude="120.1551", phone="13800000000", opening_hours="08:00-21:00")
    values.update(changes)
    return ApplicationInput(**values)


def publish(session, rule: IdentityRuleInput, role: AdminRole = AdminRole.FINANCE) -> IdentityRuleVersion:
    admin = create_admin(session, f"{role.value}-{session.scalar(select(func.count()).select_from(IdentityRuleVersion))}",
                         "long-enough-pw", role)
    return create_identity_rule(session, admin, rule)


@pytest.fixture
def world(app):
    return build_world(app)


# ---------------------------------------------------------------- the rule settings

@pytest.mark.parametrize("metric", ["product_purchase", "fee"])
def test_a_product_or_fee_that_unlocks_an_identity_is_refused_as_an_entry_fee(metric):
    with pytest.raises(UpgradeError, match="变相入门费"):
        validate_identity_rule(IdentityRuleInput(target="outlet", metric=metric, threshold_fen=398_000))


@pytest.mark.parametrize("rule, message", [
    (IdentityRuleInput(target="member", metric="goods_purchases", threshold_fen=100), "会员身份人人都有"),
    (IdentityRuleInput(target="outlet", metric="restock_volume", threshold_fen=100), "累计购买实物商品"),
    (IdentityRuleInput(target="factory", metric="goods_purchases", threshold_fen=100), "门店累计进货"),
    (IdentityRuleInput(target="outlet", metric="goods_purchases", threshold_fen=0), "门槛金额"),
    (IdentityRuleInput(target="outlet", metric="goods_purchases", threshold_fen=10**12), "门槛金额"),
    (IdentityRuleInput(target="outlet", metric="goods_purchases", threshold_fen=100, counts_at="ordered"), "支付还是以提货"),
    (IdentityRuleInput(target="outlet", metric="goods_purchases", threshold_fen=100, grant_mode="pay"), "开通方式"),
])
def test_rules_that_cannot_be_measured_are_refused_with_the_reason(rule, message):
    with pytest.raises(UpgradeError, match=message):
        validate_identity_rule(rule)


def test_the_database_refuses_an_entry_fee_metric_written_around_the_service(session):
    session.add(IdentityRuleVersion(target="outlet", metric="fee", threshold_fen=100, counts_at="paid",
                                    grant_mode="auto"))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_only_finance_or_superadmin_publish_rules_and_each_version_is_audited(session):
    with pytest.raises(Forbidden):
        publish(session, OUTLET_RULE, AdminRole.OPERATOR)
    version = publish(session, OUTLET_RULE)
    assert session.scalar(select(AuditLog).where(AuditLog.action == "identity_rule.create")).target_id == str(version.id)


def test_the_direct_reward_needs_no_purchase_and_no_identity(app, world):
    """Anyone may earn the direct reward without paying anything: the buyer's upline here never bought."""
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order).where(Order.user_id == world.parent)) == 0
        assert db.session.get(User, world.parent).identity == Identity.MEMBER
    order_no = buy(app, world)
    pay(app, order_no)
    assert balances(app, world.parent) == (0, 1000)


# ---------------------------------------------------------------- upgrading with the payment

def test_a_waiting_application_is_granted_in_the_payment_that_meets_the_rule(app, world):
    with app.app_context():
        publish(db.session, OUTLET_RULE)
        region_id = db.session.scalar(select(Outlet.region_id).where(Outlet.id == world.outlet_id))
        application = apply_for_identity(db.session, world.buyer, shop(region_id=region_id))
        assert application.status == ApplicationStatus.WAITING
        assert db.session.get(User, world.buyer).identity == Identity.MEMBER
    order_no = buy(app, world)
    with app.app_context():  # placed, not paid: nothing yet
        assert db.session.get(User, world.buyer).identity == Identity.MEMBER
    pay(app, order_no)
    with app.app_context():
        buyer = db.session.get(User, world.buyer)
        assert buyer.identity == Identity.OUTLET
        outlet = db.session.scalar(select(Outlet).where(Outlet.owner_user_id == buyer.id))
        assert (outlet.name, outlet.latitude_e6, outlet.longitude_e6, outlet.opening_hours) == (
            "小周便利店", 30_274_100, 120_155_100, "08:00-21:00")
        assert db.session.get(StockLocation, outlet.location_id).kind == LocationKind.OUTLET
        product = db.session.get(Product, world.product_id)
        cart = view_cart(db.session, {product.id: 1}, buyer.identity_enum)
        assert cart.lines[0].unit_price_fen == product.outlet_price_fen < product.member_price_fen
        application = db.session.get(IdentityApplication, application.id)
        assert application.status == ApplicationStatus.GRANTED and application.is_auto
        audit = db.session.scalar(select(AuditLog).where(AuditLog.action == "identity.upgrade"))
        assert audit.target_id == str(buyer.id) and '"from":"member"' in audit.detail and '"to":"outlet"' in audit.detail
        assert db.session.scalar(select(OutboxMessage).where(OutboxMessage.event == "identity_upgraded")).user_id == buyer.id


def test_the_upgrade_rolls_back_with_the_payment(app, world):
    """Same transaction: a payment transaction that fails after the upgrade leaves no upgrade behind."""
    with app.app_context():
        publish(db.session, OUTLET_RULE)
        region_id = db.session.scalar(select(Outlet.region_id).where(Outlet.id == world.outlet_id))
        apply_for_identity(db.session, world.buyer, shop(region_id=region_id))
    order_no = buy(app, world)
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        gateway = pay_gateway(app.config)
        notify = gateway.signed_notification(out_trade_no=order_no, transaction_id="4200000000000000000001",
                                             total_fee=order.total_fen, openid=db.session.get(User, world.buyer).openid)
        with pytest.raises(RuntimeError):
            with write_transaction(db.session):
                assert handle_pay_notification(db.session, gateway, notify)
                assert db.session.get(User, world.buyer).identity == Identity.OUTLET  # inside: upgraded
                raise RuntimeError("the payment transaction fails after the upgrade")
        db.session.rollback()
        assert db.session.get(User, world.buyer).identity == Identity.MEMBER
        assert db.session.scalar(select(func.count()).select_from(Outlet).where(Outlet.owner_user_id == world.buyer)) == 0
        assert db.session.scalar(select(Order.status).where(Order.order_no == order_no)) == OrderStatus.PENDING_PAYMENT


def test_a_rule_counted_at_pickup_upgrades_on_redemption_not_on_payment(app, world):
    with app.app_context():
        publish(db.session, IdentityRuleInput(target="outlet", metric="goods_purchases", threshold_fen=10_000,
                                              counts_at="redeemed"))
        region_id = db.session.scalar(select(Outlet.region_id).where(Outlet.id == world.outlet_id))
        apply_for_identity(db.session, world.buyer, shop(region_id=region_id))
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        assert db.session.get(User, world.buyer).identity == Identity.MEMBER
    pick_up(app, world, order_no)
    with app.app_context():
        assert db.session.get(User, world.buyer).identity == Identity.OUTLET


def test_a_refunded_purchase_does_not_count(app, world):
    with app.app_context():
        publish(db.session, OUTLET_RULE)
        order = buy(app, world)
        db.session.execute(Order.__table__.update().where(Order.order_no == order).values(status=OrderStatus.REFUNDED))
        db.session.commit()
        buyer = db.session.get(User, world.buyer)
        outlet_progress = upgrade_progress(db.session, buyer)[0]
        assert outlet_progress.value_fen == 0 and not outlet_progress.met


def test_a_member_who_qualifies_without_applying_is_told_once(app, world):
    with app.app_context():
        publish(db.session, IdentityRuleInput(target="outlet", metric="goods_purchases", threshold_fen=5_000,
                                              counts_at="paid"))
    for _ in range(2):
        pay(app, buy(app, world))
    with app.app_context():
        assert db.session.get(User, world.buyer).identity == Identity.MEMBER  # no shop details: no outlet
        messages = db.session.scalars(select(OutboxMessage).where(OutboxMessage.event == "identity_eligible")).all()
        assert [m.user_id for m in messages] == [world.buyer]


def test_an_application_is_granted_at_once_when_the_rule_already_holds(app, world):
    pay(app, buy(app, world))
    with app.app_context():
        publish(db.session, OUTLET_RULE)
        region = make_region()
        application = apply_for_identity(db.session, world.buyer, shop(region_id=region.id))
        assert application.status == ApplicationStatus.GRANTED
        assert db.session.get(User, world.buyer).identity == Identity.OUTLET


def test_in_review_mode_an_operator_grants_and_finance_may_not(app, world):
    pay(app, buy(app, world))
    with app.app_context():
        publish(db.session, IdentityRuleInput(target="outlet", metric="goods_purchases", threshold_fen=10_000,
                                              counts_at="paid", grant_mode="review"))
        application = apply_for_identity(db.session, world.buyer, shop(region_id=make_region().id))
        assert application.status == ApplicationStatus.REVIEW
        assert db.session.get(User, world.buyer).identity == Identity.MEMBER
        finance = create_admin(db.session, "fin2", "long-enough-pw", AdminRole.FINANCE)
        with pytest.raises(Forbidden):
            approve_application(db.session, finance, application.id)
        operator = create_admin(db.session, "ops2", "long-enough-pw", AdminRole.OPERATOR)
        approve_application(db.session, operator, application.id)
        assert db.session.get(User, world.buyer).identity == Identity.OUTLET
        audit = db.session.scalar(select(AuditLog).where(AuditLog.action == "identity.upgrade"))
        assert (audit.actor_kind, audit.actor_id) == ("admin", operator.id)
        with pytest.raises(UpgradeError, match="待审核"):
            approve_application(db.session, operator, application.id)


@pytest.mark.parametrize("changes, message", [
    ({"shop_name": "店"}, "店名"),
    ({"address": "短"}, "详细地址"),
    ({"phone": "call me"}, "电话"),
    ({"latitude": "", "longitude": ""}, "使用我的位置"),
    ({"latitude": "91", "longitude": "120"}, "地图位置无效"),
    ({"latitude": "nan", "longitude": "120"}, "地图位置无效"),
    ({"region_id": None}, "所在区域"),
    ({"region_id": 999_999}, "所在区域"),
    ({"target": "member"}, "申请的身份"),
])
def test_a_bad_application_is_refused_and_nothing_is_written(app, world, changes, message):
    with app.app_context():
        publish(db.session, OUTLET_RULE)
        region_id = make_region().id
        values = {"region_id": region_id, **changes}
        with pytest.raises(UpgradeError, match=message):
            apply_for_identity(db.session, world.buyer, shop(**values))
        assert db.session.scalar(select(func.count()).select_from(IdentityApplication)) == 0


def test_one_open_application_per_person_even_when_two_arrive_at_once(app, world):
    with app.app_context():
        publish(db.session, OUTLET_RULE)
        region_id = make_region().id
    results = run_concurrently(app, lambda: apply_for_identity(db.session, world.buyer, shop(region_id=region_id)),
                               [()] * 4)
    assert not [r for r in results if isinstance(r, Unexpected)], results
    assert sum(isinstance(r, IdentityApplication) for r in results) == 1
    assert all("处理中" in r.message for r in results if isinstance(r, UpgradeError))
    with app.app_context():
        application = db.session.scalar(select(IdentityApplication))
        withdraw_application(db.session, world.buyer, application.id)
        again = apply_for_identity(db.session, world.buyer, shop(region_id=region_id))
        assert again.id != application.id


def test_closed_rules_and_wrong_identities_cannot_apply(app, world):
    with app.app_context():
        region_id = make_region().id
        with pytest.raises(UpgradeError, match="暂未开放"):
            apply_for_identity(db.session, world.buyer, shop(region_id=region_id))
        publish(db.session, IdentityRuleInput(target="outlet", metric="goods_purchases", threshold_fen=1,
                                              grant_mode="closed"))
        with pytest.raises(UpgradeError, match="暂未开放"):
            apply_for_identity(db.session, world.buyer, shop(region_id=region_id))
        publish(db.session, FACTORY_RULE)
        with pytest.raises(UpgradeError, match="需由核销网点申请"):
            apply_for_identity(db.session, world.buyer, shop("factory", region_id))
        with pytest.raises(UpgradeError, match="您已是核销网点"):
            apply_for_identity(db.session, world.outlet_owner, shop(region_id=region_id))


# ---------------------------------------------------------------- factory stores

def received_restock(session, outlet: Outlet, amount_fen: int, product_id: int) -> None:
    """Goods the outlet received (the restock flow itself belongs to the operations issue)."""
    source = StockLocation(kind=LocationKind.PLATFORM, name=f"仓{outlet.id}")
    session.add(source)
    session.flush()
    order = RestockOrder(restock_no=f"R{outlet.id}-{amount_fen}", from_location_id=source.id,
                         to_location_id=outlet.location_id, status=RestockStatus.RECEIVED, total_fen=amount_fen)
    session.add(order)
    session.flush()
    session.add(RestockItem(restock_order_id=order.id, product_id=product_id, unit_price_fen=amount_fen, quantity=1,
                            shipped_quantity=1, received_quantity=1))
    session.commit()


def test_a_factory_store_for_a_taken_region_is_refused_with_the_reason(app, world):
    with app.app_context():
        publish(db.session, FACTORY_RULE)
        taken = db.session.scalar(select(FactoryStore)).region_id
        outlet = db.session.get(Outlet, world.outlet_id)
        received_restock(db.session, outlet, 60_000, world.product_id)
        with pytest.raises(UpgradeError, match="已有工厂店"):
            apply_for_identity(db.session, world.outlet_owner, shop("factory", taken))
        free = make_region("余杭区")
        application = apply_for_identity(db.session, world.outlet_owner, shop("factory", free.id, latitude="",
                                                                              longitude=""))
        assert application.status == ApplicationStatus.GRANTED
        owner = db.session.get(User, world.outlet_owner)
        assert owner.identity == Identity.FACTORY
        assert db.session.scalar(select(FactoryStore).where(FactoryStore.region_id == free.id)).owner_user_id == owner.id


def test_two_reviews_for_one_region_grant_exactly_one_even_at_once(app, world):
    with app.app_context():
        publish(db.session, IdentityRuleInput(target="factory", metric="restock_volume", threshold_fen=50_000,
                                              grant_mode="review"))
        region_id = make_region("萧山区").id
        ids = []
        for name in ("甲", "乙", "丙"):
            owner = make_user(f"店主{name}", identity=Identity.OUTLET)
            outlet = make_outlet(owner)
            received_restock(db.session, outlet, 60_000, world.product_id)
            ids.append(apply_for_identity(db.session, owner.id, shop("factory", region_id, shop_name=f"{name}工厂店")).id)
        operator_id = create_admin(db.session, "ops3", "long-enough-pw", AdminRole.OPERATOR).id
        assert [db.session.get(IdentityApplication, i).status for i in ids] == [ApplicationStatus.REVIEW] * 3
    results = run_concurrently(
        app, lambda i: approve_application(db.session, db.session.get(AdminUser, operator_id), i), [(i,) for i in ids])
    assert not [r for r in results if isinstance(r, Unexpected)], results
    with app.app_context():
        statuses = sorted(db.session.get(IdentityApplication, i).status for i in ids)
        assert statuses == [ApplicationStatus.GRANTED, ApplicationStatus.REFUSED, ApplicationStatus.REFUSED]
        assert db.session.scalar(select(func.count()).select_from(FactoryStore).where(FactoryStore.region_id == region_id)) == 1
        refused = db.session.scalars(select(IdentityApplication).where(IdentityApplication.status == ApplicationStatus.REFUSED)).all()
        assert all("已有工厂店" in a.decision_reason for a in refused)
        factories = db.session.scalar(select(func.count()).select_from(User).where(User.identity == Identity.FACTORY))
        assert factories == 2  # the world's own factory store and the one granted here


def test_the_database_holds_one_factory_store_per_region(app, world):
    with app.app_context():
        region_id = db.session.scalar(select(FactoryStore.region_id))
        location = StockLocation(kind=LocationKind.FACTORY, name="第二家")
        db.session.add(location)
        db.session.flush()
        db.session.add(FactoryStore(region_id=region_id, owner_user_id=world.outlet_owner, location_id=location.id,
                                    name="第二家"))
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()


def test_a_rejection_needs_a_reason_and_tells_the_applicant(app, world):
    with app.app_context():
        publish(db.session, OUTLET_RULE)
        application = apply_for_identity(db.session, world.buyer, shop(region_id=make_region().id))
        operator = create_admin(db.session, "ops4", "long-enough-pw", AdminRole.OPERATOR)
        with pytest.raises(UpgradeError, match="原因") as refused:
            reject_application(db.session, operator, application.id, "  ")
        assert refused.value.field == "reason"  # said next to the queue row's reason input
        reject_application(db.session, operator, application.id, "地址与营业执照不符")
        assert db.session.get(IdentityApplication, application.id).status == ApplicationStatus.REFUSED
        message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.event == "identity_refused"))
        assert message.user_id == world.buyer and "营业执照" in message.body


# ---------------------------------------------------------------- pages

def test_the_member_applies_on_the_upgrade_page_and_the_menu_follows(app, client, world):
    pay(app, buy(app, world))
    with app.app_context():
        publish(db.session, OUTLET_RULE)
        region_id = make_region("拱墅区").id
    log_in(client, world.buyer)
    page = client.get("/me/upgrade").get_data(as_text=True)
    assert "累计购买实物商品满 ¥100.00（以支付为准），达标自动开通" in page and "已达标" in page
    assert "使用我的位置" in page and "拱墅区" in page
    token = csrf_token(client)
    headers = {"HX-Request": "true", "X-CSRFToken": token}
    bad = client.post("/me/upgrade", data={"target": "outlet", "region_id": str(region_id), "shop_name": "小周便利店",
                                           "address": "杭州市拱墅区大关路 8 号", "phone": "13800000000"}, headers=headers)
    assert bad.status_code == 400 and "使用我的位置" in bad.get_data(as_text=True)
    # The refusal is the position's: said under the 使用我的位置 button, the form (only) coming back as typed.
    form = bad.get_data(as_text=True).strip()
    assert "HX-Retarget" not in bad.headers and form.startswith("<form") and "<html" not in form
    assert re.search(r'data-locate-button aria-invalid="true"[^>]*>使用我的位置</button>.*'
                     r'<span class="dq-field-error"[^>]*>请点击「使用我的位置」', form, re.S)
    assert 'value="小周便利店"' in form and 'value="杭州市拱墅区大关路 8 号"' in form and 'value="13800000000"' in form
    assert re.search(rf'<option value="{region_id}" selected>拱墅区', form)
    short = client.post("/me/upgrade", data={"target": "outlet", "region_id": str(region_id), "shop_name": "小", "csrf_token": token,
                                             "address": "杭州市拱墅区大关路 8 号", "phone": "13800000000"})
    page = short.get_data(as_text=True)  # without htmx: the whole page, the message after the shop's name
    assert short.status_code == 400 and "<html" in page
    assert re.search(r'name="shop_name"[^>]*value="小" aria-invalid="true"[^>]*>'
                     r'<span class="dq-field-error" id="shop_name-error" role="alert">店名需为 2 到 32 个字。', page)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(IdentityApplication)) == 0  # nothing written
    home_before = client.get("/me/").get_data(as_text=True)
    assert "/outlet/redeem" not in home_before
    done = client.post("/me/upgrade", data={"target": "outlet", "region_id": str(region_id), "shop_name": "小周便利店",
                                            "address": "杭州市拱墅区大关路 8 号", "phone": "13800000000",
                                            "latitude": "30.3", "longitude": "120.1"}, headers=headers)
    assert done.status_code == 204 and done.headers["HX-Redirect"] == "/me/upgrade"
    page = client.get("/me/upgrade").get_data(as_text=True)
    assert "已开通" in page
    assert "/outlet/redeem" in client.get("/me/").get_data(as_text=True)  # the outlet tab bar


def test_admin_publishes_rules_refuses_entry_fees_and_reviews_applications(app, client, world):
    with app.app_context():
        create_admin(db.session, "boss", "long-enough-pw", AdminRole.SUPERADMIN)
    client.post("/admin/login", data={"username": "boss", "password": "long-enough-pw", "csrf_token": csrf_token(client)})
    page = client.get("/admin/identity-rules").get_data(as_text=True)
    assert "变相入门费，不可用" in page
    refused = client.post("/admin/identity-rules", data={"target": "outlet", "metric": "product_purchase",
                                                         "threshold": "3980", "grant_mode": "auto",
                                                         "csrf_token": csrf_token(client)})
    assert refused.status_code == 400 and "变相入门费" in refused.get_data(as_text=True)
    bad_amount = client.post("/admin/identity-rules", data={"target": "outlet", "metric": "goods_purchases",
                                                            "threshold": "1e9", "grant_mode": "auto",
                                                            "csrf_token": csrf_token(client)})
    assert bad_amount.status_code == 400 and "金额" in bad_amount.get_data(as_text=True)
    published = client.post("/admin/identity-rules", data={"target": "outlet", "metric": "goods_purchases",
                                                           "threshold": "100", "counts_at": "paid",
                                                           "grant_mode": "review", "csrf_token": csrf_token(client)})
    assert published.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(IdentityRuleVersion)).threshold_fen == 10_000
    pay(app, buy(app, world))
    with app.app_context():
        application = apply_for_identity(db.session, world.buyer, shop(region_id=make_region().id))
        assert application.status == ApplicationStatus.REVIEW
    queue = client.get("/admin/applications").get_data(as_text=True)
    assert "小周便利店" in queue and "待审核" in queue and "通过并开通" in queue
    client.post(f"/admin/applications/{application.id}/approve", data={"csrf_token": csrf_token(client)})
    assert "已开通" in client.get("/admin/applications").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, world.buyer).identity == Identity.OUTLET



def test_a_repeated_approval_or_refusal_form_answers_like_the_first_and_writes_once(app, world):
    from dingqiao.services import submissions

    with app.app_context():
        publish(db.session, IdentityRuleInput(target="factory", metric="restock_volume", threshold_fen=50_000,
                                              grant_mode="review"))
        ids = []
        for name in ("甲", "乙"):
            owner = make_user(f"店主{name}", identity=Identity.OUTLET)
            received_restock(db.session, make_outlet(owner), 60_000, world.product_id)
            ids.append(apply_for_identity(db.session, owner.id,
                                          shop("factory", make_region(f"{name}区").id, shop_name=f"{name}工厂店")).id)
        operator = create_admin(db.session, "ops9", "long-enough-pw", AdminRole.OPERATOR)

        def audits() -> int:
            return db.session.scalar(select(func.count()).select_from(AuditLog))

        key = submissions.new_key()
        assert approve_application(db.session, operator, ids[0], submission_key=key).status == ApplicationStatus.GRANTED
        written = audits()
        again = approve_application(db.session, operator, ids[0], submission_key=key)  # a double click
        assert (again.id, again.status, audits()) == (ids[0], ApplicationStatus.GRANTED, written)

        refusal = submissions.new_key()
        assert reject_application(db.session, operator, ids[1], "资料不全", submission_key=refusal).status \
            == ApplicationStatus.REFUSED
        written = audits()
        again = reject_application(db.session, operator, ids[1], "资料不全", submission_key=refusal)
        assert (again.status, audits()) == (ApplicationStatus.REFUSED, written)
        with pytest.raises(submissions.SubmissionRefused):  # the approval's key on the refusal form
            reject_application(db.session, operator, ids[1], "资料不全", submission_key=key)
