"""Who may see what: ownership, login, roles, CSRF, and demo login only in demo mode."""
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from dingqiao import create_app
from dingqiao.extensions import db
from dingqiao.models import AdminRole, AuditLog
from dingqiao.services.accounts import create_admin
from tests.conftest import csrf_token, log_in_member
from tests.factories import make_order, make_outlet, make_product, make_user


def log_in(client, user_id: int) -> None:
    """Put a member in the client's session the way Flask-Login does after a real login."""
    log_in_member(client, user_id)


@pytest.fixture
def two_members_with_orders(app):
    with app.app_context():
        alice, bob = make_user("爱丽丝"), make_user("鲍勃")
        outlet = make_outlet(make_user("店主"))
        product = make_product()
        alice_order, bob_order = make_order(alice, outlet, product), make_order(bob, outlet, product)
        return alice.id, bob.id, alice_order.order_no, bob_order.order_no


def test_a_member_sees_her_order_and_gets_404_for_anothers(client, two_members_with_orders):
    alice, _bob, alice_no, bob_no = two_members_with_orders
    log_in(client, alice)
    own = client.get(f"/orders/{alice_no}")
    assert own.status_code == 200 and alice_no in own.get_data(as_text=True)
    other = client.get(f"/orders/{bob_no}")
    assert other.status_code == 404
    assert bob_no not in other.get_data(as_text=True)
    # Missing and foreign look the same, so order numbers cannot be probed.
    missing = client.get("/orders/T999999999999")

    def without_tokens(response) -> str:  # CSRF tokens carry a timestamp; everything else must be equal
        return re.sub(r'"[\w.-]{40,}"', '"TOKEN"', response.get_data(as_text=True))

    assert missing.status_code == 404 and without_tokens(missing) == without_tokens(other)
    listing = client.get("/orders/").get_data(as_text=True)
    assert alice_no in listing and bob_no not in listing


@pytest.mark.parametrize("path", ["/orders/", "/me/"])
def test_member_pages_send_strangers_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")


def test_htmx_request_without_login_gets_401_and_a_redirect_header(client):
    response = client.get("/orders/", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/auth/login")


def test_deactivated_member_is_logged_out(app, client):
    with app.app_context():
        user = make_user("停用")
        user.is_active = False
        db.session.commit()
        user_id = user.id
    log_in(client, user_id)
    assert client.get("/me/").status_code == 302


def test_post_without_csrf_token_is_refused(app, client):
    with app.app_context():
        create_admin(db.session, "ops", "correct horse battery")
    response = client.post("/admin/login", data={"username": "ops", "password": "correct horse battery"})
    assert response.status_code == 400
    assert "页面已过期" in response.get_data(as_text=True)
    # The same post with the token from the page (as the form and htmx send it) succeeds.
    token = csrf_token(client)
    ok = client.post("/admin/login", data={"username": "ops", "password": "correct horse battery"},
                     headers={"X-CSRFToken": token})
    assert ok.status_code == 302


def test_htmx_post_with_bad_csrf_gets_an_error_fragment_in_the_message_area(client):
    response = client.post("/auth/logout", headers={"HX-Request": "true", "X-CSRFToken": "forged"})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "<html" not in body and "页面已过期" in body
    assert response.headers["HX-Retarget"] == "#flash"


def test_demo_login_is_unreachable_when_demo_mode_is_off(app, client):
    with app.app_context():
        user_id = make_user("演示").id
    token = csrf_token(client)
    response = client.post("/auth/demo", data={"user_id": user_id, "csrf_token": token})
    assert response.status_code == 404
    assert client.get("/me/").status_code == 302  # not logged in
    # /auth/login goes to WeChat, never to a user picker.
    login = client.get("/auth/login")
    assert login.status_code == 302 and "/connect/oauth2/authorize" in login.headers["Location"]


def test_demo_login_works_in_demo_mode(app_config):
    app_config.update(DINGQIAO_DEMO=True, WECHAT_APP_ID="", WECHAT_APP_SECRET="", WECHAT_MCH_ID="", WECHAT_MCH_KEY="")
    app = create_app(app_config)
    with app.app_context():
        db.create_all()
        user_id = make_user("演示会员").id
    client = app.test_client()
    picker = client.get("/auth/login").get_data(as_text=True)
    assert "演示会员" in picker
    token = csrf_token(client)
    response = client.post("/auth/demo", data={"user_id": user_id, "csrf_token": token, "next": "/me/"})
    assert response.status_code == 302 and response.headers["Location"] == "/me/"
    assert "演示会员" in client.get("/me/").get_data(as_text=True)
    # An open redirect through ?next= is not possible.
    client.post("/auth/logout", headers={"X-CSRFToken": csrf_token(client)})
    evil = client.post("/auth/demo", data={"user_id": user_id, "csrf_token": csrf_token(client),
                                          "next": "//evil.example/steal"})
    assert evil.headers["Location"] == "/"
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


def test_admin_pages_need_an_admin_not_a_member(app, client):
    with app.app_context():
        member_id = make_user("会员").id
    assert client.get("/admin/").headers["Location"].startswith("/admin/login")
    log_in(client, member_id)
    assert client.get("/admin/").headers["Location"].startswith("/admin/login")


def test_admin_login_with_wrong_password_is_refused_in_chinese(app, client):
    with app.app_context():
        create_admin(db.session, "finance1", "a-long-password", AdminRole.FINANCE)
    response = client.post("/admin/login", data={"username": "finance1", "password": "wrong-password",
                                                  "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    assert "用户名或密码错误" in response.get_data(as_text=True)
    ok = client.post("/admin/login", data={"username": "finance1", "password": "a-long-password",
                                           "csrf_token": csrf_token(client)})
    assert ok.status_code == 302
    home = client.get("/admin/")
    assert home.status_code == 200 and "财务" in home.get_data(as_text=True)
    with app.app_context():
        actions = db.session.execute(select(AuditLog.action).order_by(AuditLog.id)).scalars().all()
        assert actions == ["admin.create", "admin.login_failed", "admin.login"]  # the failed attempt is audited


def test_an_admin_session_is_not_a_member_session(app, client):
    with app.app_context():
        create_admin(db.session, "ops2", "another-long-password")
    client.post("/admin/login", data={"username": "ops2", "password": "another-long-password",
                                      "csrf_token": csrf_token(client)})
    assert client.get("/me/").status_code == 302


def test_admin_role_rule_lets_only_the_named_roles_and_superadmin_through(app):
    from flask_login import login_user
    from werkzeug.exceptions import Forbidden

    from dingqiao.blueprints.common import require_admin

    finance_only = require_admin(AdminRole.FINANCE)
    with app.app_context():
        admins = {role: create_admin(db.session, f"role-{role.value}", "long-enough-pw", role) for role in AdminRole}
        for role, admin in admins.items():
            with app.test_request_context("/admin/withdrawals"):
                login_user(admin)
                if role == AdminRole.OPERATOR:
                    with pytest.raises(Forbidden):
                        finance_only()
                else:
                    assert finance_only() is None


def test_admin_login_guessing_is_rate_limited(app, client):
    app.config["ADMIN_LOGIN_RATE"] = "3 per minute"
    with app.app_context():
        create_admin(db.session, "ops-rl", "long-enough-pw")
    token = csrf_token(client)
    codes = [client.post("/admin/login", data={"username": "ops-rl", "password": f"guess{n}", "csrf_token": token}).status_code
             for n in range(4)]
    assert codes == [401, 401, 401, 429]
    assert "操作太频繁" in client.post("/admin/login", data={"username": "ops-rl", "password": "long-enough-pw",
                                                          "csrf_token": token}).get_data(as_text=True)


def test_a_configured_default_limit_still_covers_every_page(app_config):
    """Pages without a limit skip Flask-Limiter's per-request check, but only while no default or
    application-wide limit is configured: set one and it applies to every page again. In a child process:
    a default limit stays on the shared ``limiter`` for every app made after it."""
    script = textwrap.dedent("""
        import json, sys
        from dingqiao import create_app
        from dingqiao.extensions import db
        app = create_app({**json.loads(sys.argv[1]), "RATELIMIT_DEFAULT": "2 per minute"})
        with app.app_context():
            db.create_all()
        client = app.test_client()
        print([client.get("/").status_code for _ in range(3)])
    """)
    settings = {key: value for key, value in app_config.items() if isinstance(value, (str, int, float, bool))}
    child = subprocess.run([sys.executable, "-c", script, json.dumps(settings)], capture_output=True, text=True,
                           timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert child.stdout.strip().splitlines()[-1:] == ["[200, 200, 429]"], child.stderr[-2000:]
