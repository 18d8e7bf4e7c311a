"""The Official Account's server callback (signed handshake, safe mode, follow/scan events that bind followers,
auto-replies), the custom menu and its push-menu command, and the fake WeChat's template-message endpoint."""
import base64
import hashlib
import json
import logging
import re
import secrets
import time
import xml.etree.ElementTree as ElementTree

import pytest
import requests
from sqlalchemy import func, select
from wechatpy.crypto import WeChatCrypto

from dingqiao.extensions import db
from dingqiao.models import BindingAttempt, CallbackNonce, ReferralBinding, User
from dingqiao.services.replay import NonceClaim, claim_nonce
from tests.conftest import run_concurrently
from tests.factories import make_user
from tests.fake_wechat import FakeWeChatUser
from tests.test_access import log_in
from tests.test_wechat_login import wechat_round_trip

TOKEN = "test-token"  # make_config's WECHAT_TOKEN


def signed(token: str = TOKEN, timestamp: int | None = None) -> dict:
    """The query WeChat signs a request with: its clock's time and a fresh nonce (a used one is a replay)."""
    timestamp, nonce = str(int(time.time()) if timestamp is None else timestamp), str(secrets.randbelow(10**10))
    signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}


def event_xml(openid: str, event: str, event_key: str = "") -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[gh_dingqiao]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{event_key}]]></EventKey>"
        f"<Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8v]]></Ticket></xml>"
    ).encode()


def message_xml(openid: str, msg_type: str, fields: str = "", account: str = "gh_dingqiao") -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{account}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{fields}"
        f"<MsgId>1234567890123456</MsgId></xml>"
    ).encode()


def text_xml(openid: str, content: str, account: str = "gh_dingqiao") -> bytes:
    return message_xml(openid, "text", f"<Content><![CDATA[{content}]]></Content>", account)


def post_callback(client, body: bytes, query: dict | None = None, **kwargs):
    return client.post("/wechat/callback", query_string=query or signed(), data=body, content_type="text/xml",
                       **kwargs)


def reply_of(answer) -> dict[str, str]:
    """A passive reply's fields; fails unless it is a well-formed ``<xml>`` document."""
    assert answer.mimetype == "application/xml"
    return xml_fields(answer.data)


def xml_fields(document: bytes | str) -> dict[str, str]:
    root = ElementTree.fromstring(document)
    assert root.tag == "xml"
    return {child.tag: child.text or "" for child in root}


def links_in(content: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)">', content)


def count_users(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def test_the_url_verification_handshake_echoes_only_when_signed(client):
    ok = client.get("/wechat/callback", query_string={**signed(), "echostr": "4711"})
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "4711"
    forged = client.get("/wechat/callback", query_string={**signed("another-token"), "echostr": "4711"})
    assert forged.status_code == 403 and "4711" not in forged.get_data(as_text=True)


def test_the_official_signature_vector_passes():
    from dingqiao.wechat.callback import signature_ok

    assert signature_ok("test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", "1410685589", "test")
    assert not signature_ok("test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443fe", "1410685589", "test")


def test_a_follow_through_a_members_qr_binds_the_follower(app, client):
    with app.app_context():
        sharer = make_user("分享者")
        sharer_id, code = sharer.id, sharer.referral_code
    answer = client.post("/wechat/callback", query_string=signed(),
                         data=event_xml("o-new-follower", "subscribe", f"qrscene_ref_{code}"), content_type="text/xml")
    assert answer.status_code == 200
    welcome = reply_of(answer)
    assert welcome["ToUserName"] == "o-new-follower" and "欢迎关注" in welcome["Content"]
    with app.app_context():
        follower = db.session.scalar(select(User).where(User.openid == "o-new-follower"))
        binding = db.session.get(ReferralBinding, follower.id)
        assert binding.upline_id == sharer_id and binding.source == "follow"


def test_a_scan_by_an_existing_follower_binds_and_a_second_qr_is_refused(app, client):
    with app.app_context():
        first, second, follower = make_user("甲"), make_user("乙"), make_user("粉丝", openid="o-fan")
        codes, follower_id, first_id = (first.referral_code, second.referral_code), follower.id, first.id
    for code in codes:
        answer = client.post("/wechat/callback", query_string=signed(), data=event_xml("o-fan", "SCAN", f"ref_{code}"),
                             content_type="text/xml")
        assert answer.status_code == 200 and answer.get_data(as_text=True) == "success"
    with app.app_context():
        assert db.session.get(ReferralBinding, follower_id).upline_id == first_id
        reasons = [(a.source, a.accepted, a.reason) for a in db.session.scalars(select(BindingAttempt).order_by(BindingAttempt.id))]
        assert reasons == [("qrcode", True, ""), ("qrcode", False, "already_bound")]


# Any DTD is refused, also one behind a long comment (a check of the first kilobyte only would let it in).
LATE_DTD = b"<!--" + b"x" * 2000 + b"--><!DOCTYPE xml>" + text_xml("o-dtd", "hi")


@pytest.mark.parametrize("body", [
    b"", b"   ", b"<xml><broken>", b'<!DOCTYPE x [<!ENTITY e "x">]><xml>&e;</xml>', b"\xff\xfe", b"hello, WeChat",
    b'{"MsgType": "text"}', b"<xml>just text</xml>", b"<other><MsgType>text</MsgType></other>",
    b"<xml><MsgType><![CDATA[text]]></MsgType><Content>hi</Content></xml>",  # no From/ToUserName
    b"<xml><MsgType><a>text</a></MsgType></xml>",
    b"<xml><ToUserName>gh_dingqiao</ToUserName><FromUserName>o-x]]&gt;</FromUserName><MsgType>text</MsgType>"
    b"<Content>hi</Content></xml>",  # the user name would break out of the reply's CDATA
    LATE_DTD,
])
def test_malformed_events_are_answered_without_a_500(app, client, body):
    answer = post_callback(client, body)
    assert answer.status_code == 400 and "Traceback" not in answer.get_data(as_text=True)
    assert count_users(app) == 0


def test_a_huge_body_is_refused_before_it_is_parsed(app, client):
    padding = "好" * (64 * 1024 // 3 + 1)
    answer = post_callback(client, text_xml("o-huge", padding))
    assert answer.status_code == 413 and "Traceback" not in answer.get_data(as_text=True)
    just_under = post_callback(client, text_xml("o-big", "好" * (60 * 1024 // 3)))
    assert just_under.status_code == 200 and reply_of(just_under)["ToUserName"] == "o-big"


def test_an_unsigned_event_changes_nothing(app, client):
    with app.app_context():
        code = make_user("分享者").referral_code
    answer = client.post("/wechat/callback", query_string=signed("wrong"),
                         data=event_xml("o-intruder", "subscribe", f"qrscene_ref_{code}"), content_type="text/xml")
    assert answer.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(User).where(User.openid == "o-intruder")) is None


# --- replay: a signed URL is good for one request, within five minutes --------------------------------------
def test_a_replayed_callback_url_is_refused_and_binds_nobody(app, client):
    """In plain mode the signature covers the timestamp and nonce, not the body: one logged callback URL used
    to let anyone post follows that bind new followers to a code of their choosing."""
    with app.app_context():
        sharer, attacker = make_user("分享者"), make_user("冒用者")
        code, attacker_code = sharer.referral_code, attacker.referral_code
    query = signed()
    follow = event_xml("o-follower", "subscribe", f"qrscene_ref_{code}")
    first = post_callback(client, follow, query)
    assert first.status_code == 200 and "欢迎关注" in reply_of(first)["Content"]
    forged = post_callback(client, event_xml("o-victim", "subscribe", f"qrscene_ref_{attacker_code}"), query)
    assert forged.status_code == 403
    # Byte for byte the first request again (WeChat retrying a message whose answer it missed, or a replay):
    # "success", so WeChat stops, and nothing is done a second time.
    again = post_callback(client, follow, query)
    assert again.status_code == 200 and again.get_data(as_text=True) == "success"
    with app.app_context():
        assert db.session.scalar(select(User).where(User.openid == "o-victim")) is None
        assert [a.accepted for a in db.session.scalars(select(BindingAttempt))] == [True]


def test_a_follow_that_failed_midway_is_acted_on_when_wechat_retries_the_same_request(app, client, monkeypatch):
    """The nonce is claimed before the binding; if the binding then fails (a busy database), the claim is given
    back, so WeChat's retry of that same signed request binds instead of being taken for a repeat."""
    from dingqiao.blueprints.wechat import routes as wechat_views

    with app.app_context():
        code = make_user("分享者").referral_code
    real_bind, calls = wechat_views.bind_by_openid, []

    def busy_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return real_bind(*args, **kwargs)

    monkeypatch.setattr(wechat_views, "bind_by_openid", busy_once)
    query, follow = signed(), event_xml("o-unlucky", "subscribe", f"qrscene_ref_{code}")
    assert post_callback(client, follow, query).status_code == 500
    retried = post_callback(client, follow, query)
    assert retried.status_code == 200 and "欢迎关注" in reply_of(retried)["Content"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ReferralBinding)) == 1


def test_wechats_retries_of_a_follow_with_new_nonces_bind_once(app, client):
    with app.app_context():
        code = make_user("分享者").referral_code
    follow = event_xml("o-retried", "subscribe", f"qrscene_ref_{code}")
    for _ in range(3):  # the first try and WeChat's retries, each signed anew
        assert "欢迎关注" in reply_of(post_callback(client, follow))["Content"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ReferralBinding)) == 1
        attempts = db.session.scalars(select(BindingAttempt).order_by(BindingAttempt.id))
        assert [(a.accepted, a.reason) for a in attempts] == [(True, ""), (False, "already_bound"),
                                                               (False, "already_bound")]


def test_a_replayed_handshake_url_with_another_echostr_is_refused(client):
    query = signed()
    for _ in range(2):  # the same request again is harmless: the same echo
        answer = client.get("/wechat/callback", query_string={**query, "echostr": "4711"})
        assert answer.status_code == 200 and answer.get_data(as_text=True) == "4711"
    assert client.get("/wechat/callback", query_string={**query, "echostr": "0815"}).status_code == 403


# Seconds from now (far enough outside the five minutes that the test's own pace cannot matter), or a
# timestamp that is no time at all.
@pytest.mark.parametrize("timestamp", [-360, 360, -86400 * 365, "0", "", "17e8", "-5", "9" * 40])
def test_a_callback_signed_outside_five_minutes_is_refused(app, client, timestamp):
    with app.app_context():
        code = make_user("分享者").referral_code
    if isinstance(timestamp, int):
        query = signed(timestamp=int(time.time()) + timestamp)
    else:  # signed over the odd timestamp, so only its value can be wrong
        query = {**signed(), "timestamp": timestamp}
        query["signature"] = hashlib.sha1("".join(sorted([TOKEN, timestamp, query["nonce"]])).encode()).hexdigest()
    answer = post_callback(client, event_xml("o-late", "subscribe", f"qrscene_ref_{code}"), query)
    assert answer.status_code == 403
    assert client.get("/wechat/callback", query_string={**query, "echostr": "4711"}).status_code == 403
    assert count_users(app) == 1


def test_a_clock_a_few_minutes_off_is_tolerated(client):
    for offset in (-240, 240):
        answer = post_callback(client, text_xml("o-skewed", "你好"), signed(timestamp=int(time.time()) + offset))
        assert answer.status_code == 200 and reply_of(answer)["ToUserName"] == "o-skewed"


def test_two_workers_given_the_same_nonce_at_once_act_on_it_once(app):
    now = int(time.time())
    results = run_concurrently(app, lambda: claim_nonce(db.session, now, "4711", b"<xml/>", oldest=now - 300),
                               [()] * 6)
    assert sorted(results) == sorted([NonceClaim.FIRST] + [NonceClaim.REPEAT] * 5)


def test_used_nonces_are_forgotten_once_too_old_to_be_accepted(session):
    assert claim_nonce(session, 1000, "a", b"x", oldest=700) is NonceClaim.FIRST
    assert claim_nonce(session, 1001, "a", b"y", oldest=701) is NonceClaim.FIRST  # another timestamp: another key
    assert claim_nonce(session, 1400, "b", b"z", oldest=1100) is NonceClaim.FIRST
    assert session.scalars(select(CallbackNonce.nonce)).all() == ["b"]


def test_a_share_link_binds_at_the_first_wechat_login(app, client, fake_wechat):
    with app.app_context():
        sharer = make_user("分享者")
        sharer_id, code = sharer.id, sharer.referral_code
    client.get(f"/products/1?ref={code}")
    fake_wechat.current_user = FakeWeChatUser("o-invited", "新朋友")
    wechat_round_trip(client, fake_wechat)
    with app.app_context():
        invited = db.session.scalar(select(User).where(User.openid == "o-invited"))
        assert db.session.get(ReferralBinding, invited.id).upline_id == sharer_id
    assert sharer_id and "分享者" in client.get("/me/").get_data(as_text=True)  # 我的推荐人


def test_a_share_link_opened_after_login_binds_a_member_without_upline(app, client):
    with app.app_context():
        sharer, member = make_user("分享者"), make_user("会员")
        code, member_id, sharer_id = sharer.referral_code, member.id, sharer.id
    log_in(client, member_id)
    client.get(f"/?ref={code}")
    with app.app_context():
        assert db.session.get(ReferralBinding, member_id).upline_id == sharer_id
    client.get(f"/?ref={code}")  # opening it again changes nothing and writes no second attempt
    with app.app_context():
        assert len(db.session.scalars(select(BindingAttempt)).all()) == 1


def test_the_share_page_shows_the_code_link_and_a_qr_of_the_link(app, client):
    import io

    from PIL import Image

    with app.app_context():
        member = make_user("推广者")
        member_id, code = member.id, member.referral_code
    log_in(client, member_id)
    page = client.get("/me/share").get_data(as_text=True)
    assert code in page and f"http://localhost/?ref={code}" in page
    qr = client.get("/me/share-qr.png")
    assert qr.status_code == 200 and qr.mimetype == "image/png" and "private" in qr.headers["Cache-Control"]
    assert Image.open(io.BytesIO(qr.data)).size[0] >= 200
    # The picture is exactly qrcode's rendering of the link (the matrix, module for module).
    import qrcode

    expected = qrcode.QRCode(border=2)
    expected.add_data(f"http://localhost/?ref={code}")
    expected.make(fit=True)
    side = len(expected.get_matrix())
    image = Image.open(io.BytesIO(qr.data)).convert("1")
    module = image.size[0] // side
    cells = [[image.getpixel((x * module + module // 2, y * module + module // 2)) == 0 for x in range(side)]
             for y in range(side)]
    assert cells == expected.get_matrix()


def _qr_matrix_in(image, box: tuple[int, int, int, int], size: int) -> list[list[bool]]:
    """Read a size×size QR matrix (border included) off an image region by sampling module centres."""
    left, top, right, _bottom = box
    module = (right - left) / size
    return [[image.getpixel((int(left + (x + 0.5) * module), int(top + (y + 0.5) * module))) < 128
             for x in range(size)] for y in range(size)]


def test_the_poster_carries_a_qr_of_the_share_link_and_is_cached_until_inputs_change(app, client):
    import io

    import qrcode
    from PIL import Image

    with app.app_context():
        member = make_user("海报达人")
        member_id, code = member.id, member.referral_code
    log_in(client, member_id)
    first = client.get("/me/poster.png")
    assert first.status_code == 200 and first.mimetype == "image/png"
    image = Image.open(io.BytesIO(first.data)).convert("L")
    assert image.size == (750, 1200)
    expected = qrcode.QRCode(box_size=6, border=2)
    expected.add_data(f"http://localhost/?ref={code}")
    expected.make(fit=True)
    matrix = expected.get_matrix()
    assert _qr_matrix_in(image, (490, 950, 710, 1170), len(matrix)) == matrix

    posters = __import__("pathlib").Path(app.instance_path) / "posters"
    files_before = set(posters.iterdir())
    assert client.get("/me/poster.png").data == first.data and set(posters.iterdir()) == files_before  # cached
    with app.app_context():
        db.session.get(User, member_id).nickname = "改了名字"
        db.session.commit()
    assert client.get("/me/poster.png").data != first.data  # inputs changed: drawn again
    product_poster = client.get("/me/poster.png", query_string={"product": 999999})
    assert product_poster.status_code == 404


def test_without_a_chinese_font_the_poster_fails_clearly_instead_of_drawing_boxes(app, client):
    app.config["CJK_FONT_PATH"] = "/nonexistent/font.ttc"
    with app.app_context():
        member_id = make_user("无字体").id
    log_in(client, member_id)
    response = client.get("/me/poster.png")
    assert response.status_code == 503 and "中文字体" in response.get_data(as_text=True)


def test_a_product_page_shared_from_wechat_carries_the_sharers_code(app, client):
    from tests.factories import make_product

    with app.app_context():
        product_id = make_product().id
        member = make_user("分享者")
        member_id, code = member.id, member.referral_code
    assert "data-share-link" not in client.get(f"/products/{product_id}").get_data(as_text=True)  # a visitor
    log_in(client, member_id)
    page = client.get(f"/products/{product_id}").get_data(as_text=True)
    assert f'data-share-link="http://localhost/products/{product_id}?ref={code}"' in page


def test_the_share_page_shows_the_official_accounts_parametric_qr_made_once(app, client, fake_wechat):
    with app.app_context():
        member = make_user("公众号推广")
        member_id, code = member.id, member.referral_code
    log_in(client, member_id)
    for _ in range(2):
        page = client.get("/me/share").get_data(as_text=True)
        assert "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=gQ" in page
    created = fake_wechat.calls("/cgi-bin/qrcode/create")
    assert len(created) == 1  # cached: one permanent code per member
    fake_wechat.outage_status = 503
    degraded = client.get("/me/share")
    assert degraded.status_code == 200 and code in degraded.get_data(as_text=True)  # the link still works


# --- auto-replies -------------------------------------------------------------------------------------------
BASE = "http://localhost"  # make_config's PUBLIC_BASE_URL


def test_a_text_message_gets_a_reply_with_links_into_the_h5(app, client):
    answer = post_callback(client, text_xml("o-asker", "你好"))
    assert answer.status_code == 200
    reply = reply_of(answer)
    assert reply["ToUserName"] == "o-asker" and reply["FromUserName"] == "gh_dingqiao"  # swapped
    assert reply["MsgType"] == "text" and abs(int(reply["CreateTime"]) - time.time()) < 60
    assert links_in(reply["Content"]) == [f"{BASE}/", f"{BASE}/orders/", f"{BASE}/service/", f"{BASE}/me/share"]
    assert count_users(app) == 0  # answering writes nothing


@pytest.mark.parametrize(("text", "first", "also"), [
    ("我的订单到哪了？", "/orders/", "/service/"),
    ("物流怎么查", "/orders/", "/service/"),
    ("提货码在哪里", "/orders/", "/service/"),
    ("我要退款", "/service/", "/orders/"),
    ("售后找谁", "/service/", "/orders/"),
    ("转人工客服", "/service/", "/orders/"),
    ("推广有什么奖励", "/me/share", "/wallet/"),
    ("分享给朋友", "/me/share", "/wallet/"),
    ("佣金什么时候到账", "/me/share", "/wallet/"),
])
def test_keywords_put_the_matching_links_first(client, text, first, also):
    links = links_in(reply_of(post_callback(client, text_xml("o-asker", text)))["Content"])
    assert links[0] == BASE + first and BASE + also in links
    assert f"{BASE}/" in links  # the shop is always offered
    assert len(links) == len(set(links))


def test_links_use_the_requests_host_when_public_base_url_is_empty(app, client):
    app.config["PUBLIC_BASE_URL"] = ""
    answer = post_callback(client, text_xml("o-asker", "订单"), base_url="https://shop.example.cn")
    assert links_in(reply_of(answer)["Content"])[0] == "https://shop.example.cn/orders/"
    app.config["PUBLIC_BASE_URL"] = "https://dq.example.com"
    answer = post_callback(client, text_xml("o-asker", "订单"), base_url="https://shop.example.cn")
    assert links_in(reply_of(answer)["Content"])[0] == "https://dq.example.com/orders/"


@pytest.mark.parametrize(("msg_type", "fields"), [
    ("image", "<PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl><MediaId><![CDATA[m1]]></MediaId>"),
    ("voice", "<MediaId><![CDATA[m2]]></MediaId><Format><![CDATA[amr]]></Format>"),
    ("location", "<Location_X>30.27</Location_X><Location_Y>120.15</Location_Y><Scale>15</Scale>"
                 "<Label><![CDATA[杭州]]></Label>"),
])
def test_other_messages_get_the_generic_help(client, msg_type, fields):
    reply = reply_of(post_callback(client, message_xml("o-sender", msg_type, fields)))
    assert reply["ToUserName"] == "o-sender" and reply["MsgType"] == "text"
    assert links_in(reply["Content"]) == [f"{BASE}/", f"{BASE}/orders/", f"{BASE}/service/", f"{BASE}/me/share"]


def test_a_plain_follow_is_welcomed_with_links_and_binds_nobody(app, client):
    reply = reply_of(post_callback(client, event_xml("o-plain-follower", "subscribe")))
    assert reply["ToUserName"] == "o-plain-follower" and reply["FromUserName"] == "gh_dingqiao"
    assert "欢迎关注" in reply["Content"]
    assert links_in(reply["Content"]) == [f"{BASE}/", f"{BASE}/orders/", f"{BASE}/me/share"]
    assert count_users(app) == 0


def test_an_unfollow_is_logged_and_answered_success(app, client, caplog):
    with app.app_context():
        make_user("粉丝", openid="o-leaver")
    with caplog.at_level(logging.INFO, logger=app.logger.name):
        answer = post_callback(client, event_xml("o-leaver", "unsubscribe"))
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "success"
    assert any("unsubscribe" in r.getMessage() and "o-leaver" in r.getMessage() for r in caplog.records)
    assert count_users(app) == 1


@pytest.mark.parametrize("body", [
    message_xml("o-odd", "hologram", "<Content><![CDATA[订单]]></Content>"),
    event_xml("o-odd", "TEMPLATESENDJOBFINISH"),
    event_xml("o-odd", "VIEW", "http://localhost/orders/"),
])
def test_unknown_types_and_quiet_events_are_answered_success_and_write_nothing(app, client, body):
    answer = post_callback(client, body)
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "success"
    assert count_users(app) == 0


# --- safe mode (安全模式) and compatible mode ---------------------------------------------------------------
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")  # 43 characters, like the admin hands out


@pytest.fixture
def safe_app_config(app_config):
    app_config["WECHAT_ENCODING_AES_KEY"] = AES_KEY
    return app_config


def wechat_crypto(app, app_id: str | None = None, key: str = AES_KEY) -> WeChatCrypto:
    return WeChatCrypto(TOKEN, key, app_id or app.config["WECHAT_APP_ID"])


def encrypted(crypto: WeChatCrypto, message: bytes, plain_copy: bytes = b"") -> tuple[bytes, dict]:
    """The body and query WeChat sends in safe mode (or compatible mode, with ``plain_copy``'s fields too)."""
    query = signed()
    envelope = xml_fields(crypto.encrypt_message(message.decode(), query["nonce"], query["timestamp"]))
    inner = b"<ToUserName><![CDATA[gh_dingqiao]]></ToUserName>"
    if plain_copy:
        inner = plain_copy[len(b"<xml>"):-len(b"</xml>")]
    body = b"<xml>" + inner + f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>".encode()
    return body, {**query, "encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]}


def decrypted_reply(crypto: WeChatCrypto, answer) -> dict[str, str]:
    envelope = reply_of(answer)
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    return xml_fields(crypto.decrypt_message(answer.data, envelope["MsgSignature"], envelope["TimeStamp"],
                                             envelope["Nonce"]))


def test_safe_mode_decrypts_the_message_and_encrypts_the_reply(safe_app_config, app, client):
    crypto = wechat_crypto(app)
    body, query = encrypted(crypto, text_xml("o-secret", "退款"))
    answer = post_callback(client, body, query)
    assert answer.status_code == 200 and "退款" not in answer.get_data(as_text=True)
    reply = decrypted_reply(crypto, answer)
    assert reply["ToUserName"] == "o-secret" and reply["FromUserName"] == "gh_dingqiao" and reply["MsgType"] == "text"
    assert links_in(reply["Content"])[0] == f"{BASE}/service/"


def test_safe_mode_follow_through_a_members_qr_binds_and_welcomes(safe_app_config, app, client):
    with app.app_context():
        sharer = make_user("分享者")
        sharer_id, code = sharer.id, sharer.referral_code
    crypto = wechat_crypto(app)
    body, query = encrypted(crypto, event_xml("o-safe-follower", "subscribe", f"qrscene_ref_{code}"))
    reply = decrypted_reply(crypto, post_callback(client, body, query))
    assert reply["ToUserName"] == "o-safe-follower" and "欢迎关注" in reply["Content"]
    with app.app_context():
        follower = db.session.scalar(select(User).where(User.openid == "o-safe-follower"))
        assert db.session.get(ReferralBinding, follower.id).upline_id == sharer_id


def test_compatible_mode_trusts_only_the_encrypted_copy(safe_app_config, app, client):
    crypto = wechat_crypto(app)
    body, query = encrypted(crypto, text_xml("o-real", "佣金"), plain_copy=text_xml("o-forged", "订单"))
    reply = decrypted_reply(crypto, post_callback(client, body, query))
    assert reply["ToUserName"] == "o-real" and links_in(reply["Content"])[0] == f"{BASE}/me/share"


def test_safe_mode_unfollow_is_answered_success_in_plain(safe_app_config, app, client):
    body, query = encrypted(wechat_crypto(app), event_xml("o-leaver", "unsubscribe"))
    answer = post_callback(client, body, query)
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "success"


def test_safe_mode_refuses_a_wrong_msg_signature_and_changes_nothing(safe_app_config, app, client):
    with app.app_context():
        code = make_user("分享者").referral_code
    body, query = encrypted(wechat_crypto(app), event_xml("o-intruder", "subscribe", f"qrscene_ref_{code}"))
    for msg_signature in ("0" * 40, ""):
        answer = post_callback(client, body, {**query, "msg_signature": msg_signature})
        assert answer.status_code == 403 and "Traceback" not in answer.get_data(as_text=True)
    # Signed with our token but encrypted with another key or for another app: not ours either.
    for crypto in (wechat_crypto(app, app_id="wxsomeoneelse0001"), wechat_crypto(app, key="A" * 43)):
        other_body, other_query = encrypted(crypto, event_xml("o-intruder", "subscribe", f"qrscene_ref_{code}"))
        assert post_callback(client, other_body, other_query).status_code in (400, 403)
    with app.app_context():
        assert db.session.scalar(select(User).where(User.openid == "o-intruder")) is None


def test_safe_mode_acts_on_a_replayed_message_once(safe_app_config, app, client):
    with app.app_context():
        code = make_user("分享者").referral_code
    body, query = encrypted(wechat_crypto(app), event_xml("o-safe-twice", "subscribe", f"qrscene_ref_{code}"))
    assert post_callback(client, body, query).status_code == 200
    again = post_callback(client, body, query)
    assert again.status_code == 200 and again.get_data(as_text=True) == "success"
    with app.app_context():
        assert len(db.session.scalars(select(BindingAttempt)).all()) == 1


@pytest.mark.parametrize("message", [
    b'<!DOCTYPE xml [<!ENTITY e "o-entity">]>' + text_xml("o-dtd", "hi"),
    b"<!--" + b"x" * 2000 + b'--><!doctype xml SYSTEM "http://evil.example/x.dtd">' + text_xml("o-dtd", "hi"),
])
def test_safe_mode_refuses_a_dtd_inside_the_encrypted_message(safe_app_config, app, client, message):
    body, query = encrypted(wechat_crypto(app), message)
    answer = post_callback(client, body, query)
    assert answer.status_code == 400 and "Traceback" not in answer.get_data(as_text=True)
    assert count_users(app) == 0


def test_safe_mode_refuses_plain_messages(safe_app_config, app, client):
    with app.app_context():
        code = make_user("分享者").referral_code
    answer = post_callback(client, event_xml("o-plain", "subscribe", f"qrscene_ref_{code}"))
    assert answer.status_code == 403
    assert count_users(app) == 1


@pytest.mark.parametrize("ciphertext", ["%%% not base64 %%%", base64.b64encode(b"ten bytes!").decode(), ""])
def test_safe_mode_answers_an_undecryptable_body_400(safe_app_config, app, client, ciphertext):
    query = signed()
    msg_signature = hashlib.sha1("".join(sorted([TOKEN, query["timestamp"], query["nonce"], ciphertext])).encode())
    body = f"<xml><ToUserName>gh_dingqiao</ToUserName><Encrypt><![CDATA[{ciphertext}]]></Encrypt></xml>".encode()
    answer = post_callback(client, body, {**query, "encrypt_type": "aes", "msg_signature": msg_signature.hexdigest()})
    assert answer.status_code == 400 and "Traceback" not in answer.get_data(as_text=True)


@pytest.mark.parametrize("body", [b"", b"<xml><broken>", b"<xml><ToUserName>gh</ToUserName></xml>", b"\xff"])
def test_safe_mode_answers_a_malformed_envelope_without_a_500(safe_app_config, client, body):
    answer = post_callback(client, body, {**signed(), "encrypt_type": "aes", "msg_signature": "0" * 40})
    assert answer.status_code == 400 and "Traceback" not in answer.get_data(as_text=True)


def test_safe_mode_still_answers_the_handshake(safe_app_config, client):
    answer = client.get("/wechat/callback", query_string={**signed(), "echostr": "4711"})
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "4711"


def test_compatible_mode_without_a_key_is_answered_from_the_plain_copy(app, client):
    crypto = WeChatCrypto(TOKEN, AES_KEY, app.config["WECHAT_APP_ID"])
    body, query = encrypted(crypto, text_xml("o-compat", "你好"), plain_copy=text_xml("o-compat", "订单"))
    reply = reply_of(post_callback(client, body, query))
    assert reply["ToUserName"] == "o-compat" and links_in(reply["Content"])[0] == f"{BASE}/orders/"


# --- custom menu (自定义菜单) and push-menu --------------------------------------------------------------------
def test_the_menu_has_three_buttons_of_absolute_links_within_wechats_limits():
    from dingqiao.wechat.menu import official_account_menu

    menu = official_account_menu("https://dq.example.com")
    buttons = menu["button"]
    assert [b["name"] for b in buttons] == ["逛商城", "我的", "服务"]
    assert buttons[0] == {"type": "view", "name": "逛商城", "url": "https://dq.example.com/"}
    mine, service = ({s["name"]: s["url"] for s in b["sub_button"]} for b in buttons[1:])
    assert mine == {"我的订单": "https://dq.example.com/orders/", "我的钱包": "https://dq.example.com/wallet/",
                    "推广赚钱": "https://dq.example.com/me/share", "附近门店": "https://dq.example.com/nearby/"}
    assert service == {"联系客服": "https://dq.example.com/service/", "品牌故事": "https://dq.example.com/articles/"}
    for button in buttons:
        assert len(button["name"].encode()) <= 16 and len(button.get("sub_button", [])) <= 5
        for sub in button.get("sub_button", []):
            assert sub["type"] == "view" and len(sub["name"].encode()) <= 60


def run_cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_push_menu_creates_the_menu_at_wechat(app, fake_wechat):
    from dingqiao.wechat.menu import official_account_menu

    result = run_cli(app, "push-menu")
    assert result.exit_code == 0, result.output
    assert "Menu pushed" in result.output
    assert fake_wechat.menu == official_account_menu(BASE)
    [call] = fake_wechat.calls("/cgi-bin/menu/create")
    assert call["access_token"]


def test_push_menu_replaces_a_stale_cached_token_once(app, fake_wechat):
    from dingqiao.wechat import js_sdk

    with app.app_context():
        storage = js_sdk(app)._client.session
        storage.set(f"{app.config['WECHAT_APP_ID']}_access_token", "stale-token")  # as another worker left it
    result = run_cli(app, "push-menu")
    assert result.exit_code == 0, result.output
    assert [c["access_token"] == "stale-token" for c in fake_wechat.calls("/cgi-bin/menu/create")] == [True, False]
    assert fake_wechat.menu is not None


def test_push_menu_dry_run_prints_the_menu_and_sends_nothing(app, fake_wechat):
    from dingqiao.wechat.menu import official_account_menu

    app.config["WECHAT_APP_SECRET"] = ""  # a preview needs no credentials
    result = run_cli(app, "push-menu", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == official_account_menu(BASE)
    assert "逛商城" in result.output  # readable Chinese, not \\u escapes
    assert fake_wechat.requests == [] and fake_wechat.menu is None


@pytest.mark.parametrize(("setting", "value", "dry_run", "message"), [
    ("PUBLIC_BASE_URL", "", False, "PUBLIC_BASE_URL"),
    ("PUBLIC_BASE_URL", "", True, "PUBLIC_BASE_URL"),
    ("PUBLIC_BASE_URL", "shop.example.com", False, "PUBLIC_BASE_URL"),
    ("WECHAT_APP_ID", "", False, "WECHAT_APP_ID"),
    ("WECHAT_APP_SECRET", "", False, "WECHAT_APP_SECRET"),
])
def test_push_menu_refuses_clearly_without_its_settings(app, fake_wechat, setting, value, dry_run, message):
    app.config[setting] = value
    result = run_cli(app, "push-menu", *(["--dry-run"] if dry_run else []))
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert fake_wechat.requests == [] and fake_wechat.menu is None


def test_push_menu_reports_wechat_being_down(app, fake_wechat):
    fake_wechat.outage_status = 503
    result = run_cli(app, "push-menu")
    assert result.exit_code != 0 and "暂时无法连接微信" in result.output and "Traceback" not in result.output
    assert fake_wechat.menu is None


# --- the fake's menu and template-message endpoints --------------------------------------------------------
def fake_token(fake) -> str:
    answer = requests.get(f"{fake.base_url}/cgi-bin/token", timeout=5, params={
        "grant_type": "client_credential", "appid": fake.app_id, "secret": fake.app_secret})
    return answer.json()["access_token"]


def fake_post(fake, path: str, token: str, payload) -> dict:
    answer = requests.post(f"{fake.base_url}/cgi-bin/{path}", params={"access_token": token}, timeout=5,
                           data=json.dumps(payload, ensure_ascii=False).encode())
    return answer.json()


def test_the_fake_refuses_menus_wechat_would_refuse(fake_wechat):
    token = fake_token(fake_wechat)
    view = {"type": "view", "name": "看看", "url": "https://dq.example.com/"}
    assert fake_post(fake_wechat, "menu/create", "wrong", {"button": [view]})["errcode"] == 40001
    assert fake_post(fake_wechat, "menu/create", token, {"button": []})["errcode"] == 40016
    assert fake_post(fake_wechat, "menu/create", token, {"button": [view] * 4})["errcode"] == 40016
    too_many = {"name": "更多", "sub_button": [view] * 6}
    assert fake_post(fake_wechat, "menu/create", token, {"button": [too_many]})["errcode"] == 40023
    teleport = {"name": "怪", "type": "teleport"}
    assert fake_post(fake_wechat, "menu/create", token, {"button": [teleport]})["errcode"] == 40017
    relative = {"name": "更多", "sub_button": [{**view, "url": "/orders/"}]}
    assert fake_post(fake_wechat, "menu/create", token, {"button": [relative]})["errcode"] == 40027
    assert fake_wechat.menu is None
    assert fake_post(fake_wechat, "menu/create", token, {"button": [view] * 3}) == {"errcode": 0, "errmsg": "ok"}
    assert fake_wechat.menu == {"button": [view] * 3}


def test_the_fake_sends_template_messages_and_injects_failures(fake_wechat):
    token = fake_token(fake_wechat)
    message = {"touser": "o-member", "template_id": "TmplOrderPaid", "url": "https://dq.example.com/orders/",
               "data": {"first": {"value": "订单已支付"}}}
    assert fake_post(fake_wechat, "message/template/send", "wrong", message)["errcode"] == 40001
    sent = fake_post(fake_wechat, "message/template/send", token, message)
    assert sent["errcode"] == 0 and sent["errmsg"] == "ok" and isinstance(sent["msgid"], int)
    assert fake_wechat.template_messages == [{**message, "msgid": sent["msgid"]}]

    fake_wechat.template_failures = 2
    answers = [fake_post(fake_wechat, "message/template/send", token, message)["errcode"] for _ in range(3)]
    assert answers == [-1, -1, 0] and fake_wechat.template_failures == 0
    assert len(fake_wechat.template_messages) == 2

    fake_wechat.template_errcode = 43004
    assert [fake_post(fake_wechat, "message/template/send", token, message)["errcode"] for _ in range(2)] == [43004] * 2
    fake_wechat.outage_status = 503
    down = requests.post(f"{fake_wechat.base_url}/cgi-bin/message/template/send", params={"access_token": token},
                         json=message, timeout=5)
    assert down.status_code == 503
    assert len(fake_wechat.template_messages) == 2

    fake_wechat.reset()
    assert (fake_wechat.template_messages, fake_wechat.template_failures, fake_wechat.template_errcode,
            fake_wechat.outage_status) == ([], 0, 0, None)


def test_wechatpys_send_template_is_accepted_by_the_fake(fake_wechat):
    from wechatpy import WeChatClient
    from wechatpy.exceptions import WeChatClientException

    client = WeChatClient(fake_wechat.app_id, fake_wechat.app_secret, access_token=fake_token(fake_wechat))
    client.API_BASE_URL = fake_wechat.base_url + "/cgi-bin/"
    answer = client.message.send_template("o-member", "TmplOrderPaid", {"first": {"value": "已发货"}})
    assert answer["msgid"] == fake_wechat.template_messages[-1]["msgid"]
    assert fake_wechat.template_messages[-1]["touser"] == "o-member"
    fake_wechat.template_failures = 1
    with pytest.raises(WeChatClientException) as failure:
        client.message.send_template("o-member", "TmplOrderPaid", {"first": {"value": "已发货"}})
    assert failure.value.errcode == -1
