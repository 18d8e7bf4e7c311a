"""Fixtures: a fresh app and database per test, on a real SQLite file by default, or on Postgres when
TEST_DATABASE_URL points there (the same suite runs on both; see scripts/test).

The suite runs in parallel under pytest-xdist (scripts/test: ``-n auto``) as well as plainly: every worker has its
own scratch Postgres database, its own fake WeChat on a free port and its own tmp_path; the load tests and the
single-file build take the whole machine for themselves (``pytest_runtest_protocol`` below)."""
import fcntl
import os
import re
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from dingqiao import create_app
from dingqiao.config import normalise_database_url
from dingqiao.extensions import db
from dingqiao.models import CommissionRuleVersion
from tests.fake_wechat import start_fake_wechat

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_reachable(url: str = POSTGRES_URL) -> bool:
    try:
        with psycopg.connect(_libpq(url), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _libpq(url: str) -> str:
    return make_url(normalise_database_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


def create_postgres_database(admin_url: str, template: str | None = None) -> str:
    """A brand-new database next to the one ``admin_url`` names (a copy of the database ``template``, when given:
    nobody may be connected to that one); returns its SQLAlchemy URL."""
    name = f"dingqiao_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        if template:
            assert re.fullmatch(r"dingqiao_test_[0-9a-f]{12}", template)
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(normalise_database_url(admin_url)).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    assert re.fullmatch(r"dingqiao_test_[0-9a-f]{12}", name)
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------- parallel workers

# Markers of tests that need the machine to themselves: under xdist nothing else runs while one of them does.
# load: many clients against a real gunicorn, with deadlines. single_file: scripts/build runs `scripts/bootstrap
# build`, which reinstalls the project into .venv (`pip install -e .`): a test starting .venv/bin/dingqiao or
# gunicorn meanwhile could find it half-installed.
WHOLE_MACHINE_MARKERS = ("load", "single_file")


@contextmanager
def _flock(path: Path, mode: int):
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def machine_share(config, exclusive: bool):
    """A readers-writer lock shared by the xdist workers of one run: every test holds it shared, a whole-machine
    test exclusively. A waiting writer goes first: readers pass the gate one at a time and the writer keeps it."""
    folder = Path(tempfile.gettempdir()) / f"dingqiao-pytest-{config.workerinput['testrunuid']}"
    folder.mkdir(exist_ok=True)
    gate, share = folder / "gate", folder / "share"
    if exclusive:
        with _flock(gate, fcntl.LOCK_EX), _flock(share, fcntl.LOCK_EX):
            yield
    else:
        with _flock(gate, fcntl.LOCK_EX):
            handle = share.open("a")
            fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Under xdist, a whole-machine test runs alone, as it does in a plain run: the other workers wait for it, and it
    waits for their tests in flight."""
    if not hasattr(item.config, "workerinput"):
        return (yield)
    exclusive = any(item.get_closest_marker(name) for name in WHOLE_MACHINE_MARKERS)
    with machine_share(item.config, exclusive):
        return (yield)


def on_postgres() -> bool:
    return TEST_DATABASE_URL.startswith(("postgres", "postgresql"))


@pytest.fixture(scope="session")
def postgres_database():
    """One scratch Postgres database for the whole run, dropped at the end."""
    if not postgres_reachable(TEST_DATABASE_URL):
        pytest.fail(f"TEST_DATABASE_URL={TEST_DATABASE_URL} is set but Postgres does not answer")
    url = create_postgres_database(TEST_DATABASE_URL)
    yield url
    drop_postgres_database(TEST_DATABASE_URL, url)


@pytest.fixture
def database_url(request, tmp_path):
    if on_postgres():
        return request.getfixturevalue("postgres_database")
    return f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def fake_wechat_server():
    fake, stop = start_fake_wechat()
    yield fake
    stop()


@pytest.fixture
def fake_wechat(fake_wechat_server):
    fake_wechat_server.reset()
    return fake_wechat_server


def v3_settings(tmp_path, fake_wechat) -> dict:
    """The merchant's API v3 settings against the fake: its merchant key and WeChat Pay public key as the PEM
    files a merchant downloads from the merchant platform."""
    pay = fake_wechat.pay_v3
    key_path, public_path = tmp_path / "apiclient_key.pem", tmp_path / "pub_key.pem"
    key_path.write_text(pay.merchant_private_key_pem)
    public_path.write_text(pay.public_key_pem)
    return {"WECHAT_MCH_SERIAL_NO": pay.merchant_serial_no, "WECHAT_MCH_KEY_PATH": str(key_path),
            "WECHAT_APIV3_KEY": pay.apiv3_key, "WECHAT_PAY_PUBLIC_KEY_PATH": str(public_path),
            "WECHAT_PAY_PUBLIC_KEY_ID": pay.public_key_id}


def make_config(database_url: str, tmp_path, fake_wechat=None, **overrides) -> dict:
    """Most tests predate API v3 and exercise v2, which merchants already on it keep (WECHAT_PAY_API "v2" here,
    with the v3 settings present too, as for a merchant switching); the v3 tests ask for "v3"."""
    config = {
        "WECHAT_PAY_API": "v2",
        **(v3_settings(tmp_path, fake_wechat) if fake_wechat else {}),
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-of-at-least-32-bytes",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "DINGQIAO_DEMO": False,
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "PUBLIC_BASE_URL": "http://localhost",
        "SESSION_COOKIE_SECURE": False,
        "WECHAT_APP_ID": fake_wechat.app_id if fake_wechat else "wxtestappid",
        "WECHAT_APP_SECRET": fake_wechat.app_secret if fake_wechat else "test-app-secret",
        "WECHAT_MCH_ID": fake_wechat.mch_id if fake_wechat else "",
        "WECHAT_MCH_KEY": fake_wechat.mch_key if fake_wechat else "",
        "WECHAT_TOKEN": "test-token",
        "WECHAT_BASE_URL": fake_wechat.base_url if fake_wechat else "http://127.0.0.1:9",
        # The limiter's in-memory storage outlives one app; a fresh prefix keeps tests from sharing counts.
        "RATELIMIT_KEY_PREFIX": uuid.uuid4().hex,
        # Every page fresh from the database: tests change prices and stock and look at once
        # (tests/test_catalog_cache.py turns the cache on).
        "CATALOG_CACHE_SECONDS": 0,
    }
    config.update(overrides)
    return config


@pytest.fixture
def app_config(database_url, tmp_path, fake_wechat):
    """Settings for this test's app; a test may change them before ``app`` is first used."""
    return make_config(database_url, tmp_path, fake_wechat)


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    with app.app_context():
        db.create_all()
        open_for_business(db.session)
    yield app
    empty_database(app)


OPEN_RULE_NOTE = "tests: open, no commissions"


def open_for_business(session) -> None:
    """A shop sells only once a commission rule is published (services/orders.py NOT_OPEN_YET). Each test's
    shop starts open with a rule that pays nothing, so a test sees commissions only from the rule it publishes;
    tests of the closed shop delete it."""
    session.add(CommissionRuleVersion(direct_bps=0, team_bps=0, service_fee_bps=0, regional_bps=0, payout_cap_bps=0,
                                      note=OPEN_RULE_NOTE))
    session.commit()


def empty_database(app) -> None:
    """After a test: Postgres (shared by the worker's tests) is emptied and its ids start again at 1; a SQLite file is
    per test anyway. DELETE, not TRUNCATE: a test leaves a few rows, and TRUNCATE makes every table's and index's
    files anew (seconds a test on a busy disk), while deleting a few rows is milliseconds."""
    with app.app_context():
        db.session.remove()
        if on_postgres():
            with db.engine.begin() as conn:
                conn.exec_driver_sql("; ".join(f'DELETE FROM "{t.name}"' for t in reversed(db.metadata.sorted_tables)))
                used = conn.execute(text("SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) "
                                         "FROM pg_sequences WHERE last_value IS NOT NULL")).scalars().all()
                if used:
                    conn.exec_driver_sql("; ".join(f"ALTER SEQUENCE {name} RESTART" for name in used))
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def session(app):
    """The app's database session, inside an app context, for service-level tests."""
    with app.app_context():
        yield db.session


def csrf_token(client) -> str:
    """The CSRF token of the client's session, as a page hands it to forms and htmx."""
    page = client.get("/").get_data(as_text=True)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert match, "the layout carries the CSRF token"
    return match.group(1)


def log_in_principal(client, kind: str, principal_id: int) -> str:
    """Open a real login session for a member (``kind`` "user") or an admin ("admin") and put it in the test
    client's session, as a login would. Returns the id Flask-Login keeps (an id that names no account, when
    there is no such account)."""
    from dingqiao.services.logins import admin_policy, member_policy
    from dingqiao.models import AdminUser, User
    from dingqiao.services.logins import LoginClient, open_login_session

    app = client.application
    with app.app_context():
        principal = db.session.get(AdminUser if kind == "admin" else User, principal_id)
        policy = admin_policy(app.config) if kind == "admin" else member_policy(app.config)
        login_id = (open_login_session(db.session, principal, policy.lifetime, LoginClient("pytest", "127.0.0.1"))
                    if principal is not None else f"{kind}:no-such-login")
        db.session.remove()
    with client.session_transaction() as s:
        s["_user_id"] = login_id
        s["_fresh"] = True
    return login_id


def log_in_admin(client, admin_id: int) -> str:
    """Make the test client's session an admin's, as the admin login would."""
    return log_in_principal(client, "admin", admin_id)


def log_in_member(client, user_id: int) -> str:
    """Make the test client's session a member's, as a member login would."""
    return log_in_principal(client, "user", user_id)


class Unexpected(Exception):
    """Raised in place of anything but a domain error inside ``run_concurrently``: always a bug."""


def wait_for(condition, what: str, seconds: float = 30, *, step: float = 0.1, explain=None, pause=time.sleep):
    """The one way a test waits for something another thread or process does: poll ``condition`` every ``step``
    seconds until it returns something true (which is returned), or fail after ``seconds`` saying ``what`` and, if
    given, ``explain()`` (a server's last log lines). Generous deadlines, never a fixed sleep: CI shares its cores.
    Between polls ``pause(step)``: a browser test passes a Playwright wait (``test_browser.browser_wait_for``),
    because Playwright delivers its events (requests seen, routes held) only while one of its calls runs."""
    deadline = time.monotonic() + seconds
    while True:
        if value := condition():
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}" + (f"\n{explain()}" if explain else ""))
        pause(step)


def run_concurrently(app, work, arguments: list[tuple], timeout: float = 120) -> list:
    """Call ``work(*args)`` once per tuple, each in its own thread and app context, released together by a
    barrier so they really race. Returns each call's result, the DomainError it raised, or an Unexpected."""
    import threading

    from dingqiao.services import DomainError

    results: list = [None] * len(arguments)
    barrier = threading.Barrier(len(arguments))

    def run(index: int, args: tuple) -> None:
        with app.app_context():
            barrier.wait()
            try:
                results[index] = work(*args)
            except DomainError as exc:
                results[index] = exc
            except Exception as exc:  # noqa: BLE001 - reported to the test as a failure
                results[index] = Unexpected(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i, args)) for i, args in enumerate(arguments)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return results
