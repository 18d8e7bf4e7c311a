"""The JS-SDK config, signed on the server against the fake WeChat over real HTTP."""
import hashlib

import pytest
from wechatpy.client.api.jsapi import WeChatJSAPI
from wechatpy.session.memorystorage import MemoryStorage

from dingqiao.wechat import WeChatError, WeChatSettings
from dingqiao.wechat.jssdk import JsSdk

API_LIST = ["scanQRCode", "getLocation", "updateAppMessageShareData", "updateTimelineShareData"]


@pytest.fixture
def fake(fake_wechat):
    fake_wechat.reset()
    yield fake_wechat
    fake_wechat.reset()  # the server lives for the whole run: leave no switch on for the next test


@pytest.fixture
def settings(fake) -> WeChatSettings:
    return WeChatSettings(app_id=fake.app_id, app_secret=fake.app_secret, base_url=fake.base_url, timeout_seconds=3)


@pytest.fixture
def jssdk(settings) -> JsSdk:
    return JsSdk(settings, session_storage=MemoryStorage())  # its own cache, whatever other tests left behind


def expected_signature(ticket: str, config: dict, url: str) -> str:
    signed = f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}&timestamp={config['timestamp']}&url={url}"
    return hashlib.sha1(signed.encode()).hexdigest()


def test_wechatpy_signs_the_official_jssdk_vector():
    signature = WeChatJSAPI().get_jsapi_signature(
        "Wm3WZYTPz0wzccnW",
        "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
        1414587457,
        "http://mp.weixin.qq.com?params=value",
    )
    assert signature == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


def test_config_signs_the_page_url_without_its_fragment(jssdk, fake, settings):
    config = jssdk.config_for("http://localhost/products/7?ref=ABC123#reviews", API_LIST)
    assert set(config) == {"appId", "timestamp", "nonceStr", "signature", "jsApiList", "openTagList"}
    assert config["openTagList"] == ["wx-open-subscribe"]
    assert config["appId"] == settings.app_id
    assert config["jsApiList"] == API_LIST
    assert isinstance(config["timestamp"], int) and config["nonceStr"]
    [ticket] = fake.issued_tickets
    assert config["signature"] == expected_signature(ticket, config, "http://localhost/products/7?ref=ABC123")

    token_call = fake.calls("/cgi-bin/token")[0]
    assert token_call == {"grant_type": "client_credential", "appid": settings.app_id, "secret": settings.app_secret}
    assert fake.calls("/cgi-bin/ticket/getticket")[0]["type"] == "jsapi"


def test_token_and_ticket_are_fetched_once_and_reused(jssdk, fake):
    first = jssdk.config_for("http://localhost/a", API_LIST)
    second = jssdk.config_for("http://localhost/b", ["scanQRCode"])
    assert len(fake.calls("/cgi-bin/token")) == 1
    assert len(fake.calls("/cgi-bin/ticket/getticket")) == 1
    [ticket] = fake.issued_tickets
    assert second["signature"] == expected_signature(ticket, second, "http://localhost/b")
    assert first["signature"] != second["signature"]


def test_the_cache_is_shared_through_the_session_storage(settings, fake):
    """Each request may build its own JsSdk; the storage (Redis with several workers) carries the ticket."""
    storage = MemoryStorage()
    JsSdk(settings, session_storage=storage).config_for("http://localhost/a", API_LIST)
    JsSdk(settings, session_storage=storage).config_for("http://localhost/a", API_LIST)
    assert len(fake.calls("/cgi-bin/token")) == len(fake.calls("/cgi-bin/ticket/getticket")) == 1


def test_a_stale_token_is_refreshed_once(jssdk, fake):
    fake.ticket_errcodes.append(40001)
    config = jssdk.config_for("http://localhost/a", API_LIST)
    assert len(fake.calls("/cgi-bin/token")) == 2
    assert len(fake.calls("/cgi-bin/ticket/getticket")) == 2
    [ticket] = fake.issued_tickets
    assert config["signature"] == expected_signature(ticket, config, "http://localhost/a")


def test_a_token_wechat_keeps_refusing_is_an_error_not_a_loop(jssdk, fake):
    fake.ticket_errcodes.extend([40001, 40001])
    with pytest.raises(WeChatError) as failed:
        jssdk.config_for("http://localhost/a", API_LIST)
    assert failed.value.errcode == 40001
    assert failed.value.message == "微信接口调用失败，请稍后再试。"
    assert len(fake.calls("/cgi-bin/ticket/getticket")) == 2


def test_a_wrong_app_secret_is_a_chinese_message(settings, fake):
    wrong = JsSdk(WeChatSettings(**{**settings.__dict__, "app_secret": "not-the-secret"}), MemoryStorage())
    with pytest.raises(WeChatError) as failed:
        wrong.config_for("http://localhost/a", API_LIST)
    assert failed.value.errcode == 40125
    assert "微信" in failed.value.message
    assert fake.calls("/cgi-bin/ticket/getticket") == []


def test_an_outage_is_a_chinese_message(jssdk, fake):
    fake.outage_status = 503
    with pytest.raises(WeChatError) as failed:
        jssdk.config_for("http://localhost/a", API_LIST)
    assert failed.value.message == "暂时无法连接微信，请稍后再试。"


def test_nobody_listening_is_a_chinese_message(settings):
    unreachable = JsSdk(WeChatSettings(**{**settings.__dict__, "base_url": "http://127.0.0.1:9"}), MemoryStorage())
    with pytest.raises(WeChatError) as failed:
        unreachable.config_for("http://localhost/a", API_LIST)
    assert failed.value.message == "暂时无法连接微信，请稍后再试。"
