"""The JS-SDK config endpoint pages call for wx.config, signed server-side with the real wechatpy code."""
import hashlib
import uuid

import pytest
import redis as redis_client

from dingqiao import create_app
from dingqiao.extensions import db

PAGE = "http://localhost/checkout/"


def expected_signature(ticket: str, noncestr: str, timestamp, url: str) -> str:
    raw = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(raw.encode()).hexdigest()


def test_config_is_signed_for_our_page_without_its_fragment(app, client, fake_wechat):
    response = client.get("/wechat/jssdk-config", query_string={"url": PAGE + "#outlets"})
    assert response.status_code == 200
    config = response.json
    assert config["enabled"] is True and config["appId"] == fake_wechat.app_id
    assert "getLocation" in config["jsApiList"] and "scanQRCode" in config["jsApiList"]
    ticket = fake_wechat.issued_tickets[-1]
    assert config["signature"] == expected_signature(ticket, config["nonceStr"], config["timestamp"], PAGE)


def test_pages_load_the_vendored_jssdk_and_point_at_the_config(client):
    html = client.get("/").get_data(as_text=True)
    assert '<script src="/static/vendor/jweixin/jweixin-1.6.5.js" defer></script>' in html
    assert '<meta name="dq-jssdk-config" content="/wechat/jssdk-config">' in html
    assert client.get("/static/vendor/jweixin/jweixin-1.6.5.js").status_code == 200


@pytest.mark.parametrize("url", ["https://evil.example/page", "http://localhost.evil.example/", "", "x" * 3000])
def test_config_is_refused_for_other_sites(client, url):
    response = client.get("/wechat/jssdk-config", query_string={"url": url})
    assert response.status_code == 400 and "本站" in response.json["error"]


def test_wechat_outage_is_a_502_with_a_reason(client, fake_wechat):
    fake_wechat.outage_status = 503
    response = client.get("/wechat/jssdk-config", query_string={"url": PAGE})
    assert response.status_code == 502 and response.json["error"]


def test_an_external_jssdk_url_is_allowed_by_the_csp(app_config):
    app_config["WECHAT_JSSDK_URL"] = "https://res.wx.qq.com/open/js/jweixin-1.6.0.js"
    app = create_app(app_config)
    with app.app_context():
        db.create_all()
    response = app.test_client().get("/")
    assert "script-src 'self' https://res.wx.qq.com;" in response.headers["Content-Security-Policy"]
    assert 'src="https://res.wx.qq.com/open/js/jweixin-1.6.0.js"' in response.get_data(as_text=True)
    with app.app_context():
        db.engine.dispose()


def test_demo_mode_has_no_jssdk(app_config):
    app_config.update(DINGQIAO_DEMO=True, WECHAT_APP_ID="", WECHAT_APP_SECRET="", WECHAT_MCH_ID="", WECHAT_MCH_KEY="")
    app = create_app(app_config)
    with app.app_context():
        db.create_all()
    client = app.test_client()
    assert client.get("/wechat/jssdk-config", query_string={"url": PAGE}).json == {"enabled": False}
    assert "jweixin" not in client.get("/").get_data(as_text=True)
    with app.app_context():
        db.engine.dispose()


def redis_url() -> str | None:
    url = "redis://127.0.0.1:6379/15"
    try:
        redis_client.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis_client.RedisError:
        return None
    return url


def test_workers_share_one_token_and_ticket_through_redis(app_config, fake_wechat):
    """Two app instances (two gunicorn workers) with WECHAT_SESSION_REDIS_URL: one token, one ticket."""
    url = redis_url()
    if url is None:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    app_config.update(WECHAT_SESSION_REDIS_URL=url, WECHAT_APP_ID=f"wx{uuid.uuid4().hex[:16]}")
    original_app_id, fake_wechat.app_id = fake_wechat.app_id, app_config["WECHAT_APP_ID"]
    workers = [create_app(dict(app_config)) for _ in range(2)]
    try:
        for worker in workers:
            with worker.app_context():
                db.create_all()
            assert worker.test_client().get("/wechat/jssdk-config", query_string={"url": PAGE}).status_code == 200
        assert len(fake_wechat.calls("/cgi-bin/token")) == 1
        assert len(fake_wechat.calls("/cgi-bin/ticket/getticket")) == 1
    finally:
        fake_wechat.app_id = original_app_id  # the fake outlives the test: later tests (and its pay_v3) expect it
        # Only this test's keys (its app id is its own): other runs may be using the same Redis database.
        store = redis_client.Redis.from_url(url)
        for key in store.scan_iter(match=f"*{app_config['WECHAT_APP_ID']}*"):
            store.delete(key)
        for worker in workers:
            with worker.app_context():
                db.engine.dispose()
