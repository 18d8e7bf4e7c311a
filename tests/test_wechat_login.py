"""WeChat OAuth2 web login, end to end through the real wechatpy code and the fake WeChat server:
authorize redirect → callback with code → token exchange → user info."""
import urllib.request
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import User
from tests.fake_wechat import FakeWeChatUser


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def wechat_round_trip(client, fake, entry: str = "/me/"):
    """Do what WeChat's webview does: open our page, follow to WeChat's authorize page, come back."""
    first = client.get(entry)
    assert first.status_code == 302
    login = client.get(first.headers["Location"])
    assert login.status_code == 302
    authorize_url = login.headers["Location"]
    assert authorize_url.startswith(fake.base_url + "/connect/oauth2/authorize?")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(authorize_url.split("#")[0])
        raise AssertionError("WeChat's authorize page redirects back")
    except urllib.error.HTTPError as redirect:
        back = redirect.headers["Location"]
    parts = urlsplit(back)
    assert parts.path == "/auth/wechat/callback"
    return client.get(f"{parts.path}?{parts.query}")


def count_users(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def test_first_login_creates_one_user_and_second_login_reuses_it(app, client, fake_wechat):
    fake_wechat.current_user = FakeWeChatUser("o-alice", "爱丽丝", "https://thirdwx.qlogo.cn/a.png", unionid="u-1")
    done = wechat_round_trip(client, fake_wechat, entry="/me/")
    assert done.status_code == 302 and done.headers["Location"].endswith("/me/")
    assert "爱丽丝" in client.get("/me/").get_data(as_text=True)
    assert count_users(app) == 1
    token_calls = fake_wechat.calls("/sns/oauth2/access_token")
    assert token_calls[0]["appid"] == fake_wechat.app_id and token_calls[0]["grant_type"] == "authorization_code"

    # Logged out, WeChat nickname changed: the same account is found and refreshed.
    client.post("/auth/logout", headers={"X-CSRFToken": _token(client)})
    fake_wechat.current_user = FakeWeChatUser("o-alice", "爱丽丝2", "https://thirdwx.qlogo.cn/b.png", unionid="u-1")
    wechat_round_trip(client, fake_wechat)
    assert count_users(app) == 1
    with app.app_context():
        user = db.session.execute(select(User)).scalar_one()
        assert (user.openid, user.nickname, user.unionid) == ("o-alice", "爱丽丝2", "u-1")
        assert user.avatar_url == "https://thirdwx.qlogo.cn/b.png"
        assert len(user.referral_code) == 8


def test_ref_code_on_the_entry_link_survives_the_oauth_round_trip(app, client, fake_wechat):
    client.get("/products/999?ref=abc234")  # a share link, even to a page that does not exist
    fake_wechat.current_user = FakeWeChatUser("o-bob", "鲍勃")
    wechat_round_trip(client, fake_wechat)
    with app.app_context():
        assert db.session.execute(select(User.signup_ref_code)).scalar_one() == "ABC234"


def test_a_later_ref_does_not_replace_the_first(app, client, fake_wechat):
    client.get("/?ref=FIRST1")
    client.get("/?ref=SECOND2")
    fake_wechat.current_user = FakeWeChatUser("o-carol", "卡罗尔")
    wechat_round_trip(client, fake_wechat)
    with app.app_context():
        assert db.session.execute(select(User.signup_ref_code)).scalar_one() == "FIRST1"


def test_callback_with_a_forged_state_is_refused(app, client, fake_wechat):
    client.get("/auth/login")  # puts a state in the session
    response = client.get("/auth/wechat/callback?code=whatever&state=forged")
    assert response.status_code == 400
    assert "登录链接已失效" in response.get_data(as_text=True)
    assert count_users(app) == 0
    assert fake_wechat.calls("/sns/oauth2/access_token") == []


def test_a_replayed_code_is_refused_by_wechat_and_creates_nobody(app, client, fake_wechat):
    client.get("/auth/login")
    with client.session_transaction() as s:
        state = s["oauth_state"]
    response = client.get(f"/auth/wechat/callback?code=never-issued&state={state}")
    assert response.status_code == 502
    assert "微信授权失败" in response.get_data(as_text=True)
    assert count_users(app) == 0


def test_declined_authorisation_explains_itself(app, client, fake_wechat):
    fake_wechat.current_user = None  # the user tapped "reject"
    response = wechat_round_trip(client, fake_wechat)
    assert response.status_code == 400
    assert "需要您的授权" in response.get_data(as_text=True)


def test_snapshot_virtual_user_gets_no_account(app, client, fake_wechat):
    fake_wechat.current_user = FakeWeChatUser("o-snap", "", is_snapshotuser=True)
    response = wechat_round_trip(client, fake_wechat)
    assert response.status_code == 502
    assert "使用完整服务" in response.get_data(as_text=True)
    assert count_users(app) == 0


def test_wechat_outage_is_a_clear_message_not_a_stack_trace(app, client, fake_wechat):
    fake_wechat.current_user = FakeWeChatUser("o-dave", "戴夫")
    fake_wechat.outage_status = 502
    response = wechat_round_trip(client, fake_wechat)
    body = response.get_data(as_text=True)
    assert response.status_code == 502
    assert "微信" in body and "Traceback" not in body
    assert count_users(app) == 0


def test_wrong_app_secret_is_refused(app_config, fake_wechat):
    from dingqiao import create_app

    app_config["WECHAT_APP_SECRET"] = "not-the-secret"
    app = create_app(app_config)
    with app.app_context():
        db.create_all()
    client = app.test_client()
    fake_wechat.current_user = FakeWeChatUser("o-erin", "艾琳")
    response = wechat_round_trip(client, fake_wechat)
    assert response.status_code == 502
    assert fake_wechat.calls("/sns/oauth2/access_token")[0]["secret"] == "not-the-secret"
    assert count_users(app) == 0
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


def _token(client) -> str:
    from tests.conftest import csrf_token

    return csrf_token(client)


def test_authorize_url_carries_our_callback_and_userinfo_scope(client, fake_wechat):
    location = client.get("/auth/login").headers["Location"]
    query = parse_qs(urlsplit(location.split("#")[0]).query)
    assert query["appid"] == [fake_wechat.app_id]
    assert query["redirect_uri"] == ["http://localhost/auth/wechat/callback"]
    assert query["scope"] == ["snsapi_userinfo"]
    assert len(query["state"][0]) >= 24
