"""Sessions that can be ended (issue 16, item 1) and the admin login's lockout and audit (item 8).

Every login here is a real one — the admin login form, or WeChat's OAuth round trip through the fake WeChat
server — and a "copied cookie" is the cookie value that login set, put into a second, fresh client.
"""
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from dingqiao.extensions import db
from dingqiao.models import AdminRole, AdminUser, AuditLog, LoginSession, User
from dingqiao.models.base import utcnow
from dingqiao.services.accounts import create_admin
from tests.conftest import csrf_token
from tests.fake_wechat import FakeWeChatUser
from tests.test_wechat_login import wechat_round_trip

SESSION_COOKIE = "dq_session"
REMEMBER_COOKIE = "remember_token"
PASSWORD = "long-enough-password"
NEW_PASSWORD = "another-long-password"


def cookie(client, name: str) -> str | None:
    found = client.get_cookie(name)
    return found.value if found else None


def client_with(app, **cookies: str):
    """A fresh client holding only the given cookies: someone who copied them."""
    thief = app.test_client()
    for name, value in cookies.items():
        thief.set_cookie(name, value)
    return thief


def lands_on(response) -> str:
    """Where a page sent the visitor: its own path for a 200, else the redirect's path."""
    if response.status_code in (302, 303):
        return response.headers["Location"].split("?")[0].removeprefix("http://localhost")
    return str(response.status_code)


def member_login(client, fake_wechat, openid: str = "o-alice") -> None:
    fake_wechat.current_user = FakeWeChatUser(openid, "爱丽丝")
    assert wechat_round_trip(client, fake_wechat).status_code == 302
    assert client.get("/me/").status_code == 200


def admin_login(client, username: str, password: str = PASSWORD):
    return client.post("/admin/login", data={"username": username, "password": password,
                                             "csrf_token": csrf_token(client)})


@pytest.fixture
def admins(app) -> dict[str, int]:
    with app.app_context():
        return {role.value: create_admin(db.session, f"{role.value}1", PASSWORD, role).id for role in AdminRole}


def logged_in_admin(app, username: str):
    client = app.test_client()
    assert admin_login(client, username).status_code == 302
    assert client.get("/admin/").status_code == 200
    return client


def move_logins(app, **moved: timedelta) -> None:
    """Age every login: each named time column moves back by the given amount (instead of waiting)."""
    with app.app_context():  # in Python: SQLite has no date arithmetic on its text timestamps
        for login in db.session.scalars(select(LoginSession)):
            for column, by in moved.items():
                setattr(login, column, getattr(login, column) - by)
        db.session.commit()


# ---------------------------------------------------------------- members: logout ends the login


def test_a_member_session_cookie_replayed_after_logout_is_sent_to_login(app, client, fake_wechat):
    member_login(client, fake_wechat)
    copied = cookie(client, SESSION_COOKIE)
    assert lands_on(client_with(app, dq_session=copied).get("/me/")) == "200"
    client.post("/auth/logout", data={"csrf_token": csrf_token(client)})
    assert lands_on(client_with(app, dq_session=copied).get("/me/")) == "/auth/login"


def test_a_remember_cookie_replayed_after_logout_is_refused(app, client, fake_wechat):
    member_login(client, fake_wechat)
    remembered = cookie(client, REMEMBER_COOKIE)
    assert remembered
    assert lands_on(client_with(app, remember_token=remembered).get("/me/")) == "200"
    client.post("/auth/logout", data={"csrf_token": csrf_token(client)})
    assert lands_on(client_with(app, remember_token=remembered).get("/me/")) == "/auth/login"


def test_the_remember_cookie_differs_per_login_and_expires_on_the_server(app, fake_wechat):
    first, second = app.test_client(), app.test_client()
    member_login(first, fake_wechat)
    member_login(second, fake_wechat)
    assert cookie(first, REMEMBER_COOKIE) != cookie(second, REMEMBER_COOKIE)
    remembered = cookie(first, REMEMBER_COOKIE)
    move_logins(app, expires_at=timedelta(days=app.config["MEMBER_SESSION_MAX_DAYS"]))
    assert lands_on(client_with(app, remember_token=remembered).get("/me/")) == "/auth/login"


def test_a_member_ends_other_devices_and_keeps_this_one(app, fake_wechat):
    phone, laptop, tablet = app.test_client(), app.test_client(), app.test_client()
    for device in (phone, laptop, tablet):
        member_login(device, fake_wechat)
    page = phone.get("/me/devices").get_data(as_text=True)
    assert page.count("本机") == 1 and page.count("退出</button>") == 2
    assert phone.post("/me/devices/end-others", data={"csrf_token": csrf_token(phone)}).status_code == 303
    assert lands_on(phone.get("/me/")) == "200"
    assert [lands_on(device.get("/me/")) for device in (laptop, tablet)] == ["/auth/login", "/auth/login"]


def test_a_member_ends_one_device_but_never_someone_elses(app, fake_wechat):
    mine, other, stranger = app.test_client(), app.test_client(), app.test_client()
    member_login(mine, fake_wechat)
    member_login(other, fake_wechat)
    member_login(stranger, fake_wechat, openid="o-bob")
    with app.app_context():
        alice, bob = (db.session.scalar(select(User.id).where(User.openid == name)) for name in ("o-alice", "o-bob"))
        alices = db.session.scalars(select(LoginSession.id).where(LoginSession.user_id == alice)).all()
        [bobs] = db.session.scalars(select(LoginSession.id).where(LoginSession.user_id == bob)).all()
    assert mine.post(f"/me/devices/{bobs}/end", data={"csrf_token": csrf_token(mine)}).status_code == 404
    assert lands_on(stranger.get("/me/")) == "200"
    assert mine.post(f"/me/devices/{max(alices)}/end", data={"csrf_token": csrf_token(mine)}).status_code == 303
    assert lands_on(other.get("/me/")) == "/auth/login" and lands_on(mine.get("/me/")) == "200"


def test_disabling_a_member_ends_their_logins_and_enabling_does_not_bring_them_back(app, fake_wechat, admins):
    member = app.test_client()
    member_login(member, fake_wechat)
    remembered = cookie(member, REMEMBER_COOKIE)
    with app.app_context():
        member_id = db.session.scalar(select(User.id))
    admin = logged_in_admin(app, "operator1")
    for active in ("0", "1"):
        answer = admin.post(f"/admin/members/{member_id}/active",
                            data={"active": active, "reason": "核实中", "csrf_token": csrf_token(admin)})
        assert answer.status_code in (302, 303)
    assert lands_on(member.get("/me/")) == "/auth/login"
    assert lands_on(client_with(app, remember_token=remembered).get("/me/")) == "/auth/login"


# ---------------------------------------------------------------- admins


def test_an_admin_session_cookie_replayed_after_logout_is_sent_to_login(app, admins):
    client = logged_in_admin(app, "finance1")
    copied = cookie(client, SESSION_COOKIE)
    client.post("/admin/logout", data={"csrf_token": csrf_token(client)})
    assert lands_on(client_with(app, dq_session=copied).get("/admin/")) == "/admin/login"


def edit_account(superadmin, admin_id: int, **changes: str):
    """Save the team-account form of Flask-Admin (数据管理 → 后台账号) with ``changes``."""
    with superadmin.application.app_context():
        account = db.session.get(AdminUser, admin_id)
        form = {"username": account.username, "role": account.role, "new_password": "",
                "csrf_token": csrf_token(superadmin)}
        if account.is_active:
            form["is_active"] = "y"
    form.update(changes)
    if changes.get("is_active") == "":
        del form["is_active"]
    answer = superadmin.post(f"/admin/data/admin_users/edit/?id={admin_id}", data=form)
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]


@pytest.mark.parametrize("changes", [[{"new_password": NEW_PASSWORD}], [{"role": "operator"}],
                                     [{"is_active": ""}, {"is_active": "y"}]],
                         ids=["password", "role", "disabled-then-enabled"])
def test_a_password_role_or_active_change_ends_every_login_of_that_admin(app, admins, changes):
    victim, elsewhere = logged_in_admin(app, "finance1"), logged_in_admin(app, "finance1")
    copied = cookie(victim, SESSION_COOKIE)
    untouched, superadmin = logged_in_admin(app, "operator1"), logged_in_admin(app, "superadmin1")
    for change in changes:
        edit_account(superadmin, admins["finance"], **change)
    for client in (victim, elsewhere, client_with(app, dq_session=copied)):
        assert lands_on(client.get("/admin/")) == "/admin/login"
    assert lands_on(untouched.get("/admin/")) == "200"


def test_saving_an_account_unchanged_keeps_its_logins(app, admins):
    finance = logged_in_admin(app, "finance1")
    edit_account(logged_in_admin(app, "superadmin1"), admins["finance"])
    assert lands_on(finance.get("/admin/")) == "200"


def test_an_admin_login_ends_after_the_idle_timeout(app, admins):
    client = logged_in_admin(app, "operator1")
    move_logins(app, last_seen_at=timedelta(minutes=app.config["ADMIN_SESSION_IDLE_MINUTES"] - 2))
    assert lands_on(client.get("/admin/")) == "200"  # still inside: and this request counts as activity
    move_logins(app, last_seen_at=timedelta(minutes=app.config["ADMIN_SESSION_IDLE_MINUTES"] - 2))
    assert lands_on(client.get("/admin/")) == "200"
    move_logins(app, last_seen_at=timedelta(minutes=app.config["ADMIN_SESSION_IDLE_MINUTES"] + 1))
    assert lands_on(client.get("/admin/")) == "/admin/login"


def test_an_admin_login_ends_at_its_absolute_lifetime_however_busy(app, admins):
    client = logged_in_admin(app, "operator1")
    move_logins(app, created_at=timedelta(hours=app.config["ADMIN_SESSION_MAX_HOURS"]),
                expires_at=timedelta(hours=app.config["ADMIN_SESSION_MAX_HOURS"]) - timedelta(minutes=1))
    assert lands_on(client.get("/admin/")) == "200"
    move_logins(app, expires_at=timedelta(minutes=2))
    assert lands_on(client.get("/admin/")) == "/admin/login"


def test_last_seen_is_written_at_most_once_a_minute(app, admins):
    client = logged_in_admin(app, "operator1")

    def last_seen():
        with app.app_context():
            return db.session.scalar(select(LoginSession.last_seen_at))

    first = last_seen()
    for _ in range(3):
        client.get("/admin/")
    assert last_seen() == first
    move_logins(app, last_seen_at=timedelta(minutes=2))
    client.get("/admin/")
    assert last_seen() > first - timedelta(seconds=1)


def test_a_superadmin_ends_another_admins_login_and_an_operator_cannot(app, admins):
    finance, operator = logged_in_admin(app, "finance1"), logged_in_admin(app, "operator1")
    superadmin = logged_in_admin(app, "superadmin1")
    with app.app_context():
        [finance_login] = db.session.scalars(
            select(LoginSession.id).where(LoginSession.admin_user_id == admins["finance"])).all()
    assert "finance1" not in operator.get("/admin/sessions/").get_data(as_text=True)
    refused = operator.post(f"/admin/sessions/{finance_login}/end", data={"csrf_token": csrf_token(operator)})
    assert refused.status_code == 404 and lands_on(finance.get("/admin/")) == "200"
    assert "finance1" in superadmin.get("/admin/sessions/").get_data(as_text=True)
    ended = superadmin.post(f"/admin/sessions/{finance_login}/end", data={"csrf_token": csrf_token(superadmin)})
    assert ended.status_code in (302, 303)
    assert lands_on(finance.get("/admin/")) == "/admin/login"
    assert lands_on(operator.get("/admin/")) == "200"
    with app.app_context():
        audit = db.session.scalars(select(AuditLog).where(AuditLog.action == "admin_session.end")).all()
        assert [(row.actor_id, row.target_id) for row in audit] == [(admins["superadmin"], str(admins["finance"]))]


def test_log_out_everywhere_ends_all_of_an_admins_logins(app, admins):
    here, there = logged_in_admin(app, "operator1"), logged_in_admin(app, "operator1")
    other = logged_in_admin(app, "finance1")
    answer = here.post(f"/admin/sessions/admins/{admins['operator']}/end-all", data={"csrf_token": csrf_token(here)})
    assert answer.status_code in (302, 303)
    assert [lands_on(c.get("/admin/")) for c in (here, there, other)] == ["/admin/login", "/admin/login", "200"]
    refused = other.post(f"/admin/sessions/admins/{admins['superadmin']}/end-all",
                         data={"csrf_token": csrf_token(other)})
    assert refused.status_code == 404


# ---------------------------------------------------------------- admin login: lockout and audit


def failed_logins(app) -> list[dict]:
    with app.app_context():
        return [json.loads(detail) for detail in db.session.scalars(
            select(AuditLog.detail).where(AuditLog.action == "admin.login_failed").order_by(AuditLog.id))]


def test_wrong_passwords_lock_the_account_even_for_the_right_one_until_the_backoff_passes(app, admins):
    client = app.test_client()
    attempts = app.config["ADMIN_LOCKOUT_FAILURES"]
    for _ in range(attempts - 1):
        assert admin_login(client, "finance1", "wrong-password").status_code == 401
    locked = admin_login(client, "finance1", "wrong-password")
    assert locked.status_code == 429 and "已暂时锁定" in locked.get_data(as_text=True)
    refused = admin_login(client, "finance1")  # the right password, while locked
    assert refused.status_code == 429 and "后再试" in refused.get_data(as_text=True)
    assert lands_on(client.get("/admin/")) == "/admin/login"
    with app.app_context():
        until = db.session.get(AdminUser, admins["finance"]).locked_until
    assert timedelta(seconds=50) < until - utcnow() <= timedelta(minutes=1)

    with app.app_context():  # a minute later
        db.session.execute(update(AdminUser).values(locked_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    again = admin_login(client, "finance1", "wrong-password")  # one more wrong one: locked twice as long
    assert again.status_code == 429
    with app.app_context():
        until = db.session.get(AdminUser, admins["finance"]).locked_until
        assert timedelta(minutes=1) < until - utcnow() <= timedelta(minutes=2)
        db.session.execute(update(AdminUser).values(locked_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert admin_login(client, "finance1").status_code == 302
    assert lands_on(client.get("/admin/")) == "200"
    with app.app_context():
        account = db.session.get(AdminUser, admins["finance"])
        assert (account.failed_logins, account.locked_until) == (0, None)


def test_the_lock_doubles_up_to_the_longest(app, admins):
    from dingqiao.services.accounts import LockoutPolicy

    policy = LockoutPolicy()
    assert [policy.lock_for(n) for n in (1, 4)] == [None, None]
    assert [policy.lock_for(n).total_seconds() for n in (5, 6, 7, 11, 12, 1000)] == [60, 120, 240, 3600, 3600, 3600]


def test_a_lock_on_one_account_leaves_the_others_alone(app, admins):
    client = app.test_client()
    for _ in range(app.config["ADMIN_LOCKOUT_FAILURES"]):
        admin_login(client, "finance1", "wrong-password")
    assert admin_login(client, "operator1").status_code == 302


def test_every_failed_admin_login_is_audited_with_the_name_address_and_reason(app, admins):
    client = app.test_client()
    admin_login(client, "finance1", "wrong-password")
    admin_login(client, "nobody-by-this-name", "whatever-password")
    with app.app_context():
        db.session.execute(update(AdminUser).where(AdminUser.id == admins["operator"]).values(is_active=False))
        db.session.commit()
    admin_login(client, "operator1")
    for _ in range(app.config["ADMIN_LOCKOUT_FAILURES"]):  # the first of them was above
        admin_login(client, "finance1", "wrong-password")
    admin_login(client, "finance1")
    reasons = [(row["username"], row["ip"], row["reason"]) for row in failed_logins(app)]
    assert reasons[:3] == [("finance1", "127.0.0.1", "wrong_password"),
                           ("nobody-by-this-name", "127.0.0.1", "unknown_user"),
                           ("operator1", "127.0.0.1", "disabled")]
    # The 5th wrong password in a row locks (and says until when); attempts while locked are refused uncounted.
    assert [reason for _, _, reason in reasons[3:]] == ["wrong_password"] * 4 + ["locked"] * 2
    assert ["locked_until" in row for row in failed_logins(app)[3:]] == [False] * 3 + [True] * 3
    with app.app_context():
        assert db.session.get(AdminUser, admins["finance"]).failed_logins == app.config["ADMIN_LOCKOUT_FAILURES"]


def test_a_superadmin_lifts_a_lockout(app, admins):
    client = app.test_client()
    for _ in range(app.config["ADMIN_LOCKOUT_FAILURES"]):
        admin_login(client, "finance1", "wrong-password")
    superadmin = logged_in_admin(app, "superadmin1")
    assert "finance1" in superadmin.get("/admin/sessions/").get_data(as_text=True)
    operator = logged_in_admin(app, "operator1")
    assert operator.post(f"/admin/sessions/admins/{admins['finance']}/unlock",
                         data={"csrf_token": csrf_token(operator)}).status_code == 403
    assert admin_login(client, "finance1").status_code == 429
    superadmin.post(f"/admin/sessions/admins/{admins['finance']}/unlock", data={"csrf_token": csrf_token(superadmin)})
    assert admin_login(client, "finance1").status_code == 302
