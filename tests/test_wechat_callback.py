"""The Official Account's server callback: signed handshake, and follow/scan events that bind followers."""
import hashlib
import time

import pytest
from sqlalchemy import select

from dingqiao.extensions import db
from dingqiao.models import BindingAttempt, ReferralBinding, User
from tests.factories import make_user
from tests.fake_wechat import FakeWeChatUser
from tests.test_access import log_in
from tests.test_wechat_login import wechat_round_trip

TOKEN = "test-token"  # make_config's WECHAT_TOKEN


def signed(token: str = TOKEN) -> dict:
    timestamp, nonce = str(int(time.time())), "n0nce"
    signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}


def event_xml(openid: str, event: str, event_key: str = "") -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[gh_dingqiao]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{event_key}]]></EventKey>"
        f"<Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8v]]></Ticket></xml>"
    ).encode()


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
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "success"
    with app.app_context():
        follower = db.session.scalar(select(User).where(User.openid == "o-new-follower"))
        binding = db.session.get(ReferralBinding, follower.id)
        assert binding.upline_id == sharer_id and binding.source == "follow"


def test_a_scan_by_an_existing_follower_binds_and_a_second_qr_is_refused(app, client):
    with app.app_context():
        first, second, follower = make_user("甲"), make_user("乙"), make_user("粉丝", openid="o-fan")
        codes, follower_id, first_id = (first.referral_code, second.referral_code), follower.id, first.id
    for code in codes:
        client.post("/wechat/callback", query_string=signed(), data=event_xml("o-fan", "SCAN", f"ref_{code}"),
                    content_type="text/xml")
    with app.app_context():
        assert db.session.get(ReferralBinding, follower_id).upline_id == first_id
        reasons = [(a.source, a.accepted, a.reason) for a in db.session.scalars(select(BindingAttempt).order_by(BindingAttempt.id))]
        assert reasons == [("qrcode", True, ""), ("qrcode", False, "already_bound")]


@pytest.mark.parametrize("body", [b"", b"<xml><broken>", b'<!DOCTYPE x [<!ENTITY e "x">]><xml>&e;</xml>', b"\xff\xfe"])
def test_malformed_events_are_answered_without_a_500(client, body):
    answer = client.post("/wechat/callback", query_string=signed(), data=body, content_type="text/xml")
    assert answer.status_code == 400 and "Traceback" not in answer.get_data(as_text=True)


def test_an_unsigned_event_changes_nothing(app, client):
    with app.app_context():
        code = make_user("分享者").referral_code
    answer = client.post("/wechat/callback", query_string=signed("wrong"),
                         data=event_xml("o-intruder", "subscribe", f"qrscene_ref_{code}"), content_type="text/xml")
    assert answer.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(User).where(User.openid == "o-intruder")) is None


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
