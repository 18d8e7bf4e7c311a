"""A small, real HTTP fake of WeChat's endpoints on 127.0.0.1, so tests run wechatpy's own code end to end.

It plays both halves of OAuth2 web login: the browser-facing authorize page (which "asks the user" — the
test decides who — and redirects back with a single-use code) and the server-to-server API (code →
access token → user info), with WeChat's error codes for bad input.
"""
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class FakeWeChatUser:
    openid: str
    nickname: str
    headimgurl: str = ""
    unionid: str | None = None
    is_snapshotuser: bool = False


@dataclass
class FakeWeChat:
    app_id: str
    app_secret: str
    base_url: str = ""
    # Who is "using WeChat" when the browser reaches the authorize page.
    current_user: FakeWeChatUser | None = None
    # When set, every API call answers this HTTP status (an outage).
    outage_status: int | None = None
    requests: list[tuple[str, dict]] = field(default_factory=list)
    _codes: dict[str, tuple[FakeWeChatUser, str]] = field(default_factory=dict)
    _tokens: dict[str, tuple[FakeWeChatUser, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self, path: str) -> list[dict]:
        return [params for p, params in self.requests if p == path]

    # --- browser side -------------------------------------------------------------------------------
    def authorize(self, params: dict) -> tuple[int, dict, bytes]:
        if params.get("appid") != self.app_id or params.get("response_type") != "code":
            return 400, {}, "参数错误".encode()
        scope = params.get("scope", "snsapi_base")
        redirect_uri = params["redirect_uri"]
        user = self.current_user
        if user is None:  # the user tapped "reject": WeChat comes back without a code
            query = urlencode({"state": params.get("state", "")})
        else:
            code = secrets.token_hex(16)
            with self._lock:
                self._codes[code] = (user, scope)
            query = urlencode({"code": code, "state": params.get("state", "")})
        separator = "&" if "?" in redirect_uri else "?"
        return 302, {"Location": f"{redirect_uri}{separator}{query}"}, b""

    # --- server side --------------------------------------------------------------------------------
    def access_token(self, params: dict) -> dict:
        if params.get("appid") != self.app_id or params.get("secret") != self.app_secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        with self._lock:
            entry = self._codes.pop(params.get("code", ""), None)  # a code works once
        if entry is None:
            return {"errcode": 40029, "errmsg": "invalid code"}
        user, scope = entry
        token = secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = (user, scope)
        body = {
            "access_token": token, "expires_in": 7200, "refresh_token": secrets.token_hex(16),
            "openid": user.openid, "scope": scope,
        }
        if user.is_snapshotuser:
            body["is_snapshotuser"] = 1
        if user.unionid and scope == "snsapi_userinfo":
            body["unionid"] = user.unionid
        return body

    def userinfo(self, params: dict) -> dict:
        entry = self._tokens.get(params.get("access_token", ""))
        if entry is None or entry[0].openid != params.get("openid"):
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        user, scope = entry
        if scope != "snsapi_userinfo":
            return {"errcode": 48001, "errmsg": "api unauthorized"}
        body = {
            "openid": user.openid, "nickname": user.nickname, "sex": 0, "province": "浙江", "city": "杭州",
            "country": "中国", "headimgurl": user.headimgurl, "privilege": [],
        }
        if user.unionid:
            body["unionid"] = user.unionid
        return body


def start_fake_wechat(app_id: str = "wxfake0000000001", app_secret: str = "fake-app-secret"):
    """Start the server on a free port; returns (fake, stop)."""
    fake = FakeWeChat(app_id=app_id, app_secret=app_secret)
    json_routes = {"/sns/oauth2/access_token": fake.access_token, "/sns/userinfo": fake.userinfo}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parts = urlsplit(self.path)
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
            fake.requests.append((parts.path, params))
            if parts.path == "/connect/oauth2/authorize":
                status, headers, body = fake.authorize(params)
                self._answer(status, headers, body, "text/html; charset=utf-8")
            elif fake.outage_status is not None:
                self._answer(fake.outage_status, {}, b"upstream unavailable", "text/plain")
            elif parts.path in json_routes:
                body = json.dumps(json_routes[parts.path](params), ensure_ascii=False).encode()
                self._answer(200, {}, body, "application/json; charset=utf-8")
            else:
                self._answer(404, {}, b"not found", "text/plain")

        def _answer(self, status, headers, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return fake, stop
