"""Configuration hygiene (issue 16, items 3 and 8): what the app refuses at start, rate limits that hold for
the whole deployment rather than per worker, pages with personal data never stored by a cache, and access
logs that never show a pickup code or a WeChat OAuth code. The rate limits and the logs are checked on a real
gunicorn with two workers (tests/gunicorn_server.py)."""
import re
import secrets
from collections import Counter

import pytest
from sqlalchemy import select

from dingqiao import create_app
from dingqiao.access_log import loggable_referer, loggable_target, loggable_uri
from dingqiao.config import ConfigError
from dingqiao.extensions import db, limiter
from dingqiao.models import Order, RateLimitCounter
from dingqiao.services.accounts import create_admin
from tests.conftest import log_in_admin, log_in_member, make_config
from tests.gunicorn_server import Gunicorn, Visitor, running_gunicorn
from tests.money_world import build_world, buy, pay

AES_KEY = "k" * 43
LONG_SECRET = "s" * 32


def production_config(tmp_path, **overrides) -> dict:
    """Settings as a real deployment has them (not testing, not demo), with safe mode for the callback."""
    return make_config(f"sqlite:///{tmp_path / 'p.sqlite3'}", tmp_path,
                       **{"TESTING": False, "SECRET_KEY": LONG_SECRET, "WECHAT_ENCODING_AES_KEY": AES_KEY, **overrides})


def demo_config(tmp_path, **overrides) -> dict:
    return make_config(f"sqlite:///{tmp_path / 'd.sqlite3'}", tmp_path,
                       **{"TESTING": False, "DINGQIAO_DEMO": True, "WECHAT_APP_ID": "", "WECHAT_APP_SECRET": "",
                          "WECHAT_MCH_ID": "", "WECHAT_MCH_KEY": "", **overrides})


# --- refused at start ------------------------------------------------------------------------------------------
def test_a_callback_in_plain_mode_is_refused_at_start_outside_demo(tmp_path):
    with pytest.raises(ConfigError, match="WECHAT_ENCODING_AES_KEY") as refused:
        create_app(production_config(tmp_path, WECHAT_ENCODING_AES_KEY=""))
    assert "安全模式" in str(refused.value)  # says what to choose in the WeChat admin
    create_app(production_config(tmp_path))  # safe mode
    create_app(production_config(tmp_path, WECHAT_TOKEN="", WECHAT_ENCODING_AES_KEY=""))  # no callback at all


@pytest.mark.parametrize(("secret_key", "accepted"), [
    ("x" * 31, False), ("test-secret-key", False), ("x" * 32, True), ("密" * 11, True),  # bytes, not characters
])
def test_a_secret_key_shorter_than_32_bytes_is_refused_outside_demo(tmp_path, secret_key, accepted):
    config = production_config(tmp_path, SECRET_KEY=secret_key)
    if accepted:
        create_app(config)
        return
    with pytest.raises(ConfigError, match=rf"SECRET_KEY has {len(secret_key.encode())} bytes.*at least 32"):
        create_app(config)


@pytest.mark.parametrize(("setting", "value"), [
    ("WECHAT_APP_ID", "wx1234567890abcdef"), ("WECHAT_APP_SECRET", "a-real-secret"),
    ("WECHAT_MCH_ID", "1900000109"), ("WECHAT_MCH_KEY", "a-real-merchant-key"),
    ("PUBLIC_BASE_URL", "https://shop.example.cn"), ("PUBLIC_BASE_URL", "HTTPS://shop.example.cn"),
])
def test_demo_mode_is_refused_with_any_real_wechat_setting(tmp_path, setting, value):
    create_app(demo_config(tmp_path))  # the demo itself starts, on a plain-HTTP public URL
    with pytest.raises(ConfigError, match=f"DINGQIAO_DEMO.*{setting}"):
        create_app(demo_config(tmp_path, **{setting: value}))


def test_demo_mode_needs_no_long_secret_key(tmp_path):
    assert create_app(demo_config(tmp_path, SECRET_KEY="short")).config["SECRET_KEY"] == "short"


# --- rate-limit counters in the database ------------------------------------------------------------------------
class Clock:
    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return int(self.now * 1_000_000_000)


def test_database_counters_count_per_window_and_drop_ended_windows(app, monkeypatch):
    clock = Clock(1_000_000.0)
    monkeypatch.setattr("dingqiao.ratelimit.time", clock)
    storage = limiter.storage
    with app.app_context():
        assert [storage.incr("a", 60) for _ in range(3)] == [1, 2, 3]
        assert storage.get("a") == 3 and storage.get_expiry("a") == 1_000_060.0
        assert storage.incr("b", 10, amount=2) == 2
        clock.now += 30  # b's window has ended, a's has not
        assert storage.get("b") == 0 and storage.incr("a", 60) == 4
        assert storage.incr("c", 60) == 1  # opening a window drops the ended ones
        assert set(db.session.scalars(select(RateLimitCounter.name))) == {"a", "c"}
        clock.now += 60
        assert storage.incr("a", 60) == 1  # a new window for a (and c's, ended too, is dropped)
        storage.clear("a")
        assert storage.get("a") == 0 and storage.check()
        storage.incr("d", 60)
        assert storage.reset() == 1 and storage.get("d") == 0


# --- no copies of personal pages in any cache -------------------------------------------------------------------
def test_pages_with_orders_pickup_codes_wallets_and_personal_data_are_never_stored(app):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        code = db.session.scalar(select(Order.pickup_code).where(Order.order_no == order_no))
    pages = {
        world.buyer: ["/orders/", f"/orders/{order_no}", "/wallet/", "/me/", "/me/share", "/cart/", "/"],
        world.outlet_owner: [f"/outlet/redeem/{code}", f"/outlet/redeem/lookup?code={code}", "/outlet/orders"],
    }
    for user_id, paths in pages.items():
        client = app.test_client()
        log_in_member(client, user_id)
        for path in paths:
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert {"private", "no-store"} <= set(re.split(r",\s*", answer.headers["Cache-Control"])), path
    admin = app.test_client()
    with app.app_context():
        order_id = db.session.scalar(select(Order.id).where(Order.order_no == order_no))
        log_in_admin(admin, create_admin(db.session, "boss", "a-long-enough-password").id)
    for path in ("/admin/", f"/admin/orders/{order_id}"):
        answer = admin.get(path)
        assert answer.status_code == 200 and "no-store" in answer.headers["Cache-Control"], path


def test_static_files_and_anonymous_pages_keep_their_own_caching(app, client):
    world = build_world(app)
    log_in_member(client, world.buyer)
    # A logged-in person's static file keeps what Flask gives it (revalidated, stored).
    static = client.get("/static/favicon.svg")
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")
    # The share QR carries only the member's own public link and is cached on purpose.
    qr = client.get("/me/share-qr.png")
    assert qr.status_code == 200 and qr.headers["Cache-Control"] == "private, max-age=3600"
    visitor = app.test_client()
    assert "Cache-Control" not in visitor.get(f"/products/{world.product_id}").headers


# --- access logs ---------------------------------------------------------------------------------------------
def test_log_lines_show_the_route_and_query_keys_never_the_values():
    assert loggable_target("/outlet/redeem/123456789012", "", "/outlet/redeem/<code>") == "/outlet/redeem/<code>"
    assert loggable_target("/auth/wechat/callback", "code=0a1b2c&state=XyZ", "/auth/wechat/callback") == (
        "/auth/wechat/callback?code=*&state=*")
    assert loggable_target("/outlet/redeem/123456789012/x", "", None) == "/outlet/*"  # no route matched
    assert loggable_target("/outlet/redeem/lookup", "123456789012", None) == "/outlet/*?*=*"  # a code as a key
    assert loggable_uri("/auth/wechat/callback?code=0a1b2c&state=XyZ") == "/auth/*?code=*&state=*"
    assert loggable_referer("https://shop.example/outlet/redeem/123456789012?x=1") == "https://shop.example"
    assert loggable_referer("") == "-"


# --- on a real gunicorn with two workers -----------------------------------------------------------------------
def _fresh_connection() -> dict:
    """Each request on a new TCP connection, so that the kernel hands it to either worker."""
    return {"Connection": "close"}


def _statuses(send, attempts: int) -> list[int]:
    return [send(n).status_code for n in range(attempts)]


def _answers_per_worker(access_log, request_line: str) -> Counter:
    """How many of the requests starting with ``request_line`` each worker answered (by pid, from the access log
    lines ``<pid> request-line status``)."""
    return Counter(pid for pid, line in re.findall(r"^<(\d+)> (.*)$", access_log.read_text(), flags=re.MULTILINE)
                   if line.startswith(request_line))


def test_rate_limits_hold_across_two_gunicorn_workers(app, database_url, tmp_path):
    """Documented: 20 pickup-code lookups a minute per person, 10 admin login attempts a minute per address.
    With memory:// counters per worker, two workers let 35–40 wrong codes and 18–19 passwords through.

    Which worker accepts a connection is the kernel's choice, and here one of them often takes them all; so
    each worker (one thread) is also replaced after 8 requests (gunicorn's max_requests, no jitter), and the
    attempts are sent one after the other, each on a new connection. They are then answered by several
    processes, none of which sees more than 9 of them (the one it may accept while finishing its 8th): only
    counters that all processes share can refuse the 21st code and the 11th password."""
    world = build_world(app)
    with app.app_context():
        create_admin(db.session, "boss", "a-long-enough-password")
    access_log = tmp_path / "access.log"
    arguments = "--max-requests-jitter 0 --access-logformat '%(p)s %(r)s %(s)s'"
    options = {"workers": 2, "threads": 1, "access_log": str(access_log),
               "extra_env": {"GUNICORN_MAX_REQUESTS": "8", "GUNICORN_CMD_ARGS": arguments}}
    with running_gunicorn(database_url, tmp_path / "gunicorn.log", **options) as server:
        outlet = Visitor(server.url)
        outlet.log_in(world.outlet_owner)
        wrong_codes = _statuses(lambda n: outlet.get("/outlet/redeem/lookup", headers=_fresh_connection(),
                                                     params={"code": f"{secrets.randbelow(10**12):012d}"}), 30)
        guesser = Visitor(server.url)
        guesser.get("/admin/login")
        wrong_passwords = _statuses(lambda n: guesser.post("/admin/login", {"username": f"guess{n}",
                                                                            "password": "wrong-password"},
                                                           headers=_fresh_connection()), 16)
        assert server.unhandled_errors() == []
    lookups, logins = (_answers_per_worker(access_log, line) for line in ("GET /outlet/redeem/", "POST /admin/login"))
    assert max(lookups.values()) < 10 and max(logins.values()) < 10, (lookups, logins)
    assert wrong_codes == [404] * 20 + [429] * 10  # "核销码不存在" twenty times, then refused
    assert wrong_passwords == [401] * 10 + [429] * 6


def test_gunicorn_refuses_memory_counters_with_several_workers(database_url, tmp_path):
    server = Gunicorn(database_url, tmp_path / "gunicorn.log", workers=2, threads=1,
                      extra_env={"RATELIMIT_STORAGE_URI": "memory://"})
    with pytest.raises(RuntimeError, match="gunicorn exited") as refused:
        server.start()
    message = str(refused.value)
    assert "RATELIMIT_STORAGE_URI=memory://" in message and "redis://" in message and "GUNICORN_WORKERS=1" in message
    with running_gunicorn(database_url, tmp_path / "one.log", workers=1, threads=1,
                          extra_env={"RATELIMIT_STORAGE_URI": "memory://"}):
        pass  # one worker: one counter, which is the whole deployment's


def test_no_pickup_code_or_oauth_code_reaches_the_logs(app, database_url, tmp_path):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        code = db.session.scalar(select(Order.pickup_code).where(Order.order_no == order_no))
    oauth_code, oauth_state = "oauthcode" + secrets.token_hex(8), "oauthstate" + secrets.token_hex(8)
    access_log, error_log = tmp_path / "access.log", tmp_path / "gunicorn.log"
    with running_gunicorn(database_url, error_log, workers=2, threads=2, access_log=str(access_log)) as server:
        outlet = Visitor(server.url)
        outlet.log_in(world.outlet_owner)
        scanned = f"{server.url}/outlet/redeem/{code}"
        assert outlet.get(f"/outlet/redeem/{code}").status_code == 200  # the scanned QR
        looked_up = outlet.get("/outlet/redeem/lookup", params={"code": code}, headers={"Referer": scanned})
        assert looked_up.status_code == 200
        assert outlet.get(f"/outlet/redeem/{code}/x").status_code == 404  # no route: nothing of the path either
        outlet.get(f"/outlet/redeem/lookup?{code}")  # a code where a key goes
        assert outlet.get("/auth/wechat/callback", params={"code": oauth_code, "state": oauth_state}).status_code == 400
    logs = access_log.read_text() + error_log.read_text()
    assert "GET /outlet/redeem/<code> HTTP/1.1" in logs and "/auth/wechat/callback?code=*&state=*" in logs
    for secret in (code, oauth_code, oauth_state):
        assert secret not in logs
