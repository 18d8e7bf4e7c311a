"""开店向导: the one-time setup link, the first superadmin, the wizard's steps, and no sale before a commission rule."""
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    AdminUser,
    AuditLog,
    CommissionRuleVersion,
    FactoryStore,
    IdentityRuleVersion,
    LocationKind,
    Outlet,
    Region,
    ShopSettings,
    StockLocation,
)
from dingqiao.models.base import utcnow
from dingqiao.services import setup
from dingqiao.services.logins import LoginClient
from dingqiao.services.orders import NOT_OPEN_YET, OrderError, place_order
from dingqiao.setup_link import announce_setup_link
from tests.conftest import csrf_token, log_in_principal
from tests.factories import make_outlet, make_product, make_user, stock

CLIENT = LoginClient("pytest", "127.0.0.1")
LIFETIME = timedelta(hours=1)
GOOD = {"username": "boss", "password": "correct-horse-9", "password_again": "correct-horse-9", "shop": "街坊洗护"}


def claim(session, token, **changes):
    return setup.claim_setup(session, token, **{**GOOD, **changes}, lifetime=LIFETIME, client=CLIENT)


def admins(session) -> int:
    return session.scalar(select(func.count()).select_from(AdminUser))


# ---------------------------------------------------------------- the link and the first admin

def test_a_shop_without_admin_gets_a_link_that_makes_one_superadmin_once(session):
    token = setup.issue_setup_token(session)
    assert token and setup.setup_link_valid(session, token)
    stored = session.get(ShopSettings, 1)
    assert stored.setup_token_hash != token and len(stored.setup_token_hash) == 64  # only its hash is kept

    admin = claim(session, token)
    assert admin.role == AdminRole.SUPERADMIN and admin.check_password(GOOD["password"])
    assert setup.shop_name(session) == "街坊洗护"
    assert not setup.setup_link_valid(session, token)
    with pytest.raises(setup.SetupLinkInvalid):
        claim(session, token, username="second")
    assert admins(session) == 1
    assert setup.issue_setup_token(session) is None  # an admin exists: no new link
    actions = set(session.scalars(select(AuditLog.action)))
    assert {"setup.claim", "admin.create"} <= actions


def test_a_new_link_replaces_the_old_and_an_expired_link_is_refused(session):
    first = setup.issue_setup_token(session)
    second = setup.issue_setup_token(session)
    assert not setup.setup_link_valid(session, first) and setup.setup_link_valid(session, second)
    with pytest.raises(setup.SetupLinkInvalid):
        claim(session, first)
    later = utcnow() + setup.SETUP_LINK_TTL + timedelta(seconds=1)
    assert not setup.setup_link_valid(session, second, now=later)
    with pytest.raises(setup.SetupLinkInvalid):
        setup.claim_setup(session, second, **GOOD, lifetime=LIFETIME, client=CLIENT, now=later)
    assert admins(session) == 0


@pytest.mark.parametrize("changes, message", [
    ({"password_again": "something-else"}, "两次输入的密码不一致"),
    ({"password": "short", "password_again": "short"}, "密码至少"),
    ({"username": "a b"}, "用户名"),
    ({"shop": "   "}, "请填写店铺名称"),
    ({"shop": "名" * 17}, "最多 16 个字"),
])
def test_bad_input_writes_nothing_and_keeps_the_link(session, changes, message):
    token = setup.issue_setup_token(session)
    with pytest.raises(setup.DomainError) as refused:
        claim(session, token, **changes)
    assert message in refused.value.message
    session.rollback()
    assert admins(session) == 0 and setup.setup_link_valid(session, token)


def test_two_people_opening_the_link_at_once_make_one_admin(app):
    with app.app_context():
        token = setup.issue_setup_token(db.session)
        db.session.remove()
    barrier, outcomes = threading.Barrier(4), []

    def attempt(n: int) -> None:
        with app.app_context():
            barrier.wait(timeout=60)
            try:
                claim(db.session, token, username=f"boss{n}")
                outcomes.append("made")
            except setup.DomainError as exc:
                outcomes.append(exc.message)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert outcomes.count("made") == 1, outcomes
    with app.app_context():
        assert admins(db.session) == 1


def test_the_console_shows_the_link_outside_demo_mode_only(app):
    printed = []
    url = announce_setup_link(app, printed.append)
    assert url and url in printed[0] and "/setup/" in url
    token = url.rsplit("/", 1)[1]
    with app.app_context():
        assert setup.setup_link_valid(db.session, token)
    app.config["DINGQIAO_DEMO"] = True
    assert announce_setup_link(app, printed.append) is None and len(printed) == 1


# ---------------------------------------------------------------- no sale without a commission rule

def test_no_order_before_a_commission_rule_and_the_shop_says_so(app, client):
    with app.app_context():
        db.session.execute(delete(CommissionRuleVersion))
        db.session.commit()
        buyer, owner = make_user("买家"), make_user("店主")
        outlet, product = make_outlet(owner), make_product()
        stock(outlet, product, 5)
        with pytest.raises(OrderError) as refused:
            place_order(db.session, buyer, outlet.id, {product.id: 1}, timeout_minutes=15, from_cart=False)
        assert refused.value.message == NOT_OPEN_YET
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Outlet)) == 1
    assert "暂未开业" in client.get("/").get_data(as_text=True)


def test_an_open_shop_shows_no_closed_notice(client):
    assert "暂未开业" not in client.get("/").get_data(as_text=True)


# ---------------------------------------------------------------- the pages

def setup_link(app) -> str:
    with app.app_context():
        token = setup.issue_setup_token(db.session)
        db.session.remove()
    return f"/setup/{token}"


def test_the_link_page_creates_the_superadmin_and_logs_them_in(app, client):
    link = setup_link(app)
    page = client.get(link)
    assert page.status_code == 200 and "创建超级管理员" in page.get_data(as_text=True)
    token = csrf_token(client)
    refused = client.post(link, data={"csrf_token": token, "username": "boss", "password": "correct-horse-9",
                                      "password_again": "typo-horse-9", "shop_name": "街坊洗护"})
    assert refused.status_code == 400 and "两次输入的密码不一致" in refused.get_data(as_text=True)
    assert 'value="boss"' in refused.get_data(as_text=True)  # the form keeps what was typed, not the passwords
    made = client.post(link, data={"csrf_token": token, "username": "boss", "password": "correct-horse-9",
                                   "password_again": "correct-horse-9", "shop_name": "街坊洗护"})
    assert made.status_code == 302 and made.headers["Location"].endswith("/admin/setup/")
    wizard = client.get("/admin/setup/")
    assert wizard.status_code == 200 and "开店向导" in wizard.get_data(as_text=True)
    assert "街坊洗护 · 运营后台" in wizard.get_data(as_text=True)
    again = app.test_client().get(link)
    assert again.status_code == 404 and "无效或已失效" in again.get_data(as_text=True)


def test_unknown_links_are_404(client):
    assert client.get("/setup/not-a-token").status_code == 404
    assert client.post("/setup/not-a-token", data={}).status_code in (400, 404)


def superadmin_client(app, client):
    with app.app_context():
        admin = AdminUser(username="root", role=AdminRole.SUPERADMIN)
        admin.set_password("correct-horse-9")
        db.session.add(admin)
        db.session.commit()
        admin_id = admin.id
    log_in_principal(client, "admin", admin_id)
    return client


def post(client, path: str, **data):
    return client.post(path, data={"csrf_token": csrf_token(client), **data})


def test_only_a_superadmin_runs_the_wizard(app, client):
    with app.app_context():
        admin = AdminUser(username="ops", role=AdminRole.OPERATOR)
        admin.set_password("correct-horse-9")
        db.session.add(admin)
        db.session.commit()
        admin_id = admin.id
    assert client.get("/admin/setup/").status_code == 302  # not logged in: to the login page
    log_in_principal(client, "admin", admin_id)
    assert client.get("/admin/setup/").status_code == 403
    assert post(client, "/admin/setup/warehouse", name="平台总仓").status_code == 403


def test_the_wizard_builds_a_shop_step_by_step(app, client):
    with app.app_context():
        db.session.execute(delete(CommissionRuleVersion))
        db.session.commit()
        owner, factory_owner = make_user("网点店主"), make_user("工厂店主")
        owner_id, factory_owner_id = owner.id, factory_owner.id
    superadmin_client(app, client)
    page = client.get("/admin/setup/").get_data(as_text=True)
    assert "本店尚未开业" in page and "10.00" in page  # the proposed rule, in percent
    assert "¥10.00" in page  # its ¥100 preview: 10% to the direct upline

    assert post(client, "/admin/setup/name", shop_name="街坊洗护").status_code == 302
    assert post(client, "/admin/setup/warehouse", name="平台总仓").status_code == 302
    second = post(client, "/admin/setup/warehouse", name="第二仓")
    assert second.status_code == 400
    assert post(client, "/admin/setup/region", code="SH01", name="上海浦东").status_code == 302
    with app.app_context():
        region_id = db.session.scalar(select(Region.id))
    assert post(client, "/admin/setup/factory-store", **{
        "region_id": region_id, "owner_user_id": factory_owner_id, "name": "浦东工厂店",
        "address": "浦东大道 1 号", "phone": "13900000001"}).status_code == 302
    bad = post(client, "/admin/setup/outlet", **{
        "region_id": region_id, "owner_user_id": owner_id, "name": "东方网点",
        "address": "世纪大道 2 号", "phone": "13900000002", "latitude": "999",
        "longitude": "121.5"})
    assert bad.status_code == 400 and 'value="东方网点"' in bad.get_data(as_text=True)
    assert post(client, "/admin/setup/outlet", **{
        "region_id": region_id, "owner_user_id": owner_id, "name": "东方网点",
        "address": "世纪大道 2 号", "phone": "13900000002", "opening_hours": "08:00-20:00",
        "latitude": "31.23",
        "longitude": "121.47"}).status_code == 302

    rule = {"referral_depth": "2", "direct": "10", "team": "5", "third_level": "0", "service_fee": "5",
            "regional": "3", "payout_cap": "30", "cooling_days": "7"}
    too_much = post(client, "/admin/setup/commission-rule", action="publish", **{**rule, "payout_cap": "45"})
    assert too_much.status_code == 400 and "上限" in too_much.get_data(as_text=True)
    preview = post(client, "/admin/setup/commission-rule", action="preview", **{**rule, "direct": "12.5"})
    assert preview.status_code == 200 and "¥12.50" in preview.get_data(as_text=True)
    assert post(client, "/admin/setup/finish").status_code == 400  # rules missing: not finished
    assert post(client, "/admin/setup/commission-rule", action="publish", **rule).status_code == 302
    fee = post(client, "/admin/setup/identity-rules", outlet_threshold="abc", factory_threshold="20000",
               grant_mode="review")
    assert fee.status_code == 400
    assert post(client, "/admin/setup/identity-rules", outlet_threshold="299", factory_threshold="20000",
                grant_mode="review").status_code == 302
    done = post(client, "/admin/setup/finish")
    assert done.status_code == 302 and done.headers["Location"].endswith("/admin/")

    with app.app_context():
        s = db.session
        assert setup.shop_name(s) == "街坊洗护"
        assert s.scalar(select(func.count()).select_from(StockLocation).where(
            StockLocation.kind == LocationKind.PLATFORM)) == 1
        factory = s.scalar(select(FactoryStore))
        assert factory.region_id == region_id and factory.owner_user_id == factory_owner_id
        outlet = s.scalar(select(Outlet))
        assert (outlet.owner_user_id, outlet.latitude_e6, outlet.longitude_e6) == (owner_id, 31_230_000, 121_470_000)
        rule_row = s.scalar(select(CommissionRuleVersion))
        assert (rule_row.direct_bps, rule_row.payout_cap_bps, rule_row.cooling_days) == (1000, 3000, 7)
        thresholds = {r.target: r.threshold_fen for r in s.scalars(select(IdentityRuleVersion))}
        assert thresholds == {"outlet": 29_900, "factory": 2_000_000}
        progress = setup.setup_progress(s)
        assert progress.finished_at is not None and progress.open_for_business
    assert "本店已可下单" in client.get("/admin/setup/").get_data(as_text=True)


def test_wizard_forms_refuse_junk_without_a_500(app, client):
    superadmin_client(app, client)
    post(client, "/admin/setup/region", code="SH01", name="上海浦东")
    for path, data in [("/admin/setup/region", {"code": "", "name": "x"}),
                       ("/admin/setup/outlet", {"region_id": "abc", "owner_user_id": "9" * 30}),
                       ("/admin/setup/factory-store", {"region_id": "999999", "owner_user_id": "1",
                                                       "name": "x", "address": "y"}),
                       ("/admin/setup/outlet", {"region_id": "1", "owner_user_id": "9" * 23, "name": "x",
                                                "address": "y", "phone": "13900000000", "latitude": "31.2",
                                                "longitude": "121.4"}),
                       ("/admin/setup/commission-rule", {"action": "publish", "direct": "1e9"}),
                       *[("/admin/setup/commission-rule", {"action": action, "referral_depth": "2", "direct": junk,
                                                           "team": "5", "third_level": "0", "service_fee": "5",
                                                           "regional": "3", "payout_cap": "30", "cooling_days": "7"})
                         for action in ("preview", "publish") for junk in ("NaN", "sNaN", "-Infinity", "12.345")],
                       ("/admin/setup/name", {"shop_name": "x" * 500})]:
        answer = post(client, path, **data)
        assert answer.status_code == 400, (path, answer.status_code)
        assert re.search(r'role="alert">[^<]*[\u4e00-\u9fff]', answer.get_data(as_text=True)), path


def test_setup_link_command_prints_a_new_link_until_there_is_an_admin(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["setup-link"])
    assert first.exit_code == 0 and "/setup/" in first.output
    token = re.search(r"/setup/(\S+)", first.output).group(1)
    with app.app_context():
        assert setup.setup_link_valid(db.session, token)
        claim(db.session, token)
    refused = runner.invoke(args=["setup-link"])
    assert refused.exit_code != 0 and "already has an admin" in refused.output


def test_the_dashboard_says_the_shop_is_not_open_until_a_rule_and_an_outlet(app, client):
    superadmin_client(app, client)
    page = client.get("/admin/").get_data(as_text=True)
    assert "本店尚未开业" in page and "还没有核销网点" in page and "继续开店向导" in page
    with app.app_context():
        db.session.execute(delete(CommissionRuleVersion))
        db.session.commit()
    assert "佣金规则未发布" in client.get("/admin/").get_data(as_text=True)
    with app.app_context():
        make_outlet(make_user("店主"))
    with app.app_context():
        db.session.add(CommissionRuleVersion(direct_bps=0, team_bps=0, service_fee_bps=0, regional_bps=0,
                                             payout_cap_bps=0))
        db.session.commit()
    assert "本店尚未开业" not in client.get("/admin/").get_data(as_text=True)
