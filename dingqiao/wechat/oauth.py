"""OAuth2 web login (网页授权) through wechatpy's ``WeChatOAuth``."""
from dataclasses import dataclass

import requests
from wechatpy.exceptions import WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

from . import WeChatError, WeChatSettings


@dataclass(frozen=True)
class WeChatProfile:
    openid: str
    unionid: str | None
    nickname: str
    avatar_url: str


class SnapshotUserError(WeChatError):
    """WeChat's 朋友圈快照页 gives a virtual user (is_snapshotuser=1); no account may be made for it."""


class _OAuth(WeChatOAuth):
    """wechatpy's client with our base URLs and a timeout on every call (upstream sets none)."""

    def __init__(self, settings: WeChatSettings, redirect_uri: str, scope: str, state: str):
        super().__init__(settings.app_id, settings.app_secret, redirect_uri, scope=scope, state=state)
        self._timeout = settings.timeout_seconds
        if settings.base_url:
            self.API_BASE_URL = settings.base_url + "/"
            self.OAUTH_BASE_URL = settings.base_url + "/connect/"

    def _request(self, method, url_or_endpoint, **kwargs):
        kwargs.setdefault("timeout", self._timeout)
        return super()._request(method, url_or_endpoint, **kwargs)


def authorize_url(settings: WeChatSettings, redirect_uri: str, state: str, scope: str) -> str:
    """Where to send the browser so WeChat asks the user and comes back to ``redirect_uri`` with a code."""
    return _OAuth(settings, redirect_uri, scope, state).authorize_url


def fetch_profile(settings: WeChatSettings, code: str, redirect_uri: str, scope: str) -> WeChatProfile:
    """Exchange the code for the user's openid and, with ``snsapi_userinfo``, nickname and avatar."""
    client = _OAuth(settings, redirect_uri, scope, state="")
    try:
        token = client.fetch_access_token(code)
        if str(token.get("is_snapshotuser", "0")) == "1":
            raise SnapshotUserError("请点击页面底部“使用完整服务”后再登录。")
        info = client.get_user_info() if token.get("scope", scope) == "snsapi_userinfo" else {}
    except WeChatOAuthException as exc:
        raise WeChatError("微信授权失败，请重新进入。", errcode=exc.errcode, detail=str(exc)) from exc
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise WeChatError("暂时无法连接微信，请稍后再试。", detail=repr(exc)) from exc
    return WeChatProfile(
        openid=token["openid"],
        unionid=info.get("unionid") or token.get("unionid"),
        nickname=(info.get("nickname") or "")[:64],
        avatar_url=(info.get("headimgurl") or "")[:512],
    )
