"""JS-SDK ``wx.config`` signed on the server (scanQRCode, getLocation, sharing, the wx-open-subscribe tag) through
wechatpy's ``WeChatClient``, which also sends template messages and 订阅通知.

The access token and the jsapi ticket are cached in a wechatpy session storage. WeChat limits how often they may
be fetched and a new access token retires the previous one, so the cache must outlive a request: by default it
is one in-memory storage for the whole process; with several workers pass a shared one (e.g.
``wechatpy.session.redisstorage.RedisStorage``) so they do not keep retiring each other's token.
"""
import secrets
import time

import requests
from wechatpy.client import WeChatClient
from wechatpy.constants import WeChatErrorCode
from wechatpy.exceptions import WeChatClientException
from wechatpy.session.memorystorage import MemoryStorage

from . import WeChatError, WeChatSettings

_PROCESS_STORAGE = MemoryStorage()
_STALE_TOKEN = {
    WeChatErrorCode.INVALID_CREDENTIAL.value,
    WeChatErrorCode.INVALID_ACCESS_TOKEN.value,
    WeChatErrorCode.EXPIRED_ACCESS_TOKEN.value,
}


class _TimeoutSession(requests.Session):
    """Upstream fetches the access token with no timeout at all; this session gives every call one."""

    def __init__(self, timeout: float):
        super().__init__()
        self._timeout = timeout

    def request(self, method, url, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().request(method, url, **kwargs)


class _Client(WeChatClient):
    """wechatpy's client on our base URL, with timeouts, and without its unbounded retry on a stale token
    (it recurses for as long as WeChat answers 40001); ``JsSdk`` retries once itself."""

    def __init__(self, settings: WeChatSettings, session_storage):
        super().__init__(settings.app_id, settings.app_secret, session=session_storage, auto_retry=False)
        self._http = _TimeoutSession(settings.timeout_seconds)
        if settings.base_url:
            self.API_BASE_URL = settings.base_url + "/cgi-bin/"

    def fetch_access_token(self):
        # Upstream hard-codes https://api.weixin.qq.com/cgi-bin/token and ignores API_BASE_URL.
        return self._fetch_access_token(
            url=self.API_BASE_URL + "token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


class JsSdk:
    def __init__(self, settings: WeChatSettings, session_storage=None):
        self._app_id = settings.app_id
        self._client = _Client(settings, session_storage or _PROCESS_STORAGE)

    def config_for(self, url: str, api_list: list[str]) -> dict:
        """The object for ``wx.config`` on the page at ``url`` (the page's own address, as the browser has it)."""
        page_url = url.split("#", 1)[0]  # WeChat signs the URL without its fragment
        try:
            ticket = self._jsapi_ticket()
        except WeChatClientException as exc:
            if exc.errcode is None:  # HTTP error
                raise WeChatError("暂时无法连接微信，请稍后再试。", detail=repr(exc)) from exc
            raise WeChatError("微信接口调用失败，请稍后再试。", errcode=exc.errcode, detail=repr(exc)) from exc
        except (requests.RequestException, ValueError, LookupError, TypeError) as exc:
            raise WeChatError("暂时无法连接微信，请稍后再试。", detail=repr(exc)) from exc
        nonce = secrets.token_hex(8)
        timestamp = int(time.time())
        return {
            "appId": self._app_id,
            "timestamp": timestamp,
            "nonceStr": nonce,
            "signature": self._client.jsapi.get_jsapi_signature(nonce, ticket, timestamp, page_url),
            "jsApiList": list(api_list),
            # The 订阅通知 button (templates/_subscribe.html) is WeChat's open tag, rendered once this config holds.
            "openTagList": ["wx-open-subscribe"],
        }

    def _jsapi_ticket(self) -> str:
        """The cached ticket, or a new one; a token WeChat calls stale is replaced once and the ticket asked again."""
        try:
            return self._client.jsapi.get_jsapi_ticket()
        except WeChatClientException as exc:
            if exc.errcode not in _STALE_TOKEN:
                raise
        self._client.fetch_access_token()
        return self._client.jsapi.get_jsapi_ticket()

    def referral_qr_url(self, referral_code: str) -> str:
        """The permanent parametric QR of the Official Account for a member (scene ``ref_<code>``): scanning it
        follows the account and binds the follower (see the server callback). WeChat keeps at most 100,000
        permanent codes per account; the ticket is cached in the session storage, so each is made once."""
        scene = f"ref_{referral_code}"
        key = f"{self._app_id}_qr_{scene}"
        ticket = self._client.session.get(key)
        if not ticket:
            try:
                answer = self._client.qrcode.create(
                    {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": scene}}}
                )
                ticket = answer["ticket"]
            except WeChatClientException as exc:
                raise WeChatError("暂时无法生成公众号二维码，请稍后再试。", errcode=exc.errcode, detail=repr(exc)) from exc
            except (requests.RequestException, ValueError, LookupError, TypeError) as exc:
                raise WeChatError("暂时无法连接微信，请稍后再试。", detail=repr(exc)) from exc
            self._client.session.set(key, ticket)
        return self._client.qrcode.get_url(ticket)

    def _call(self, call, unreachable: str, refused: str):
        """``call(client)`` with a token WeChat calls stale replaced once; WeChat's refusals and network failures
        become WeChatError (errcode None when WeChat could not be reached)."""
        try:
            try:
                return call(self._client)
            except WeChatClientException as exc:
                if exc.errcode not in _STALE_TOKEN:
                    raise
                self._client.fetch_access_token()
                return call(self._client)
        except WeChatClientException as exc:
            if exc.errcode is None:  # HTTP error
                raise WeChatError(unreachable, detail=repr(exc)) from exc
            raise WeChatError(f"{refused}：{exc.errcode} {exc.errmsg}", errcode=exc.errcode, detail=repr(exc)) from exc
        except (requests.RequestException, ValueError, LookupError, TypeError) as exc:
            raise WeChatError(unreachable, detail=repr(exc)) from exc

    def send_template_message(self, openid: str, template_id: str, url: str, data: dict, *,
                              client_msg_id: str = "") -> int:
        """模板消息 to a follower; returns WeChat's msgid. WeChat sends one message per openid and
        ``client_msg_id`` within 10 minutes, so a repeated send is dropped; wechatpy's ``send_template`` has no
        argument for it, hence the body posted here."""
        body = {"touser": openid, "template_id": template_id, "data": data}
        if url:
            body["url"] = url
        if client_msg_id:
            body["client_msg_id"] = client_msg_id
        answer = self._call(lambda client: client.post("message/template/send", data=body),
                            "暂时无法连接微信。", "模板消息发送失败")
        return int(answer.get("msgid", 0))

    def send_subscribe_message(self, openid: str, template_id: str, url: str, data: dict) -> int:
        """订阅通知 (bizsend) to a member who subscribed to ``template_id`` with the page's open tag; a one-time
        subscription allows one message (then 43101). Returns WeChat's msgid, 0 when it gives none."""
        answer = self._call(
            lambda client: client.message.send_subscribe_message(openid, template_id, data, page=url or None),
            "暂时无法连接微信。", "订阅通知发送失败")
        return int(answer.get("msgid", 0))

    def create_menu(self, menu: dict) -> None:
        """Replace the Official Account's custom menu (shares this signer's token cache with the web workers)."""
        self._call(lambda client: client.menu.create(menu), "暂时无法连接微信，请稍后再试。", "微信拒绝了菜单")
