"""The fake WeChat on a real HTTP server on 127.0.0.1: WeChat's own paths answered by ``FakeWeChat`` and its
``FakeWeChatPayV3``, and — for the demo — the pages of its console, which WeChat does not have."""
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .official_account import FakeWeChat
from .pay_v3 import FakeWeChatPayV3


@dataclass(frozen=True)
class PageRequest:
    """A request to one of the console's pages: its query, and the fields of a posted form."""
    query: dict[str, str]
    form: dict[str, str]


# An answer: (status, headers — Content-Type included —, body)
Page = Callable[[PageRequest], tuple[int, dict[str, str], bytes]]


def start_fake_wechat(app_id: str = "wxfake0000000001", app_secret: str = "fake-app-secret",
                      mch_id: str = "1900000109", mch_key: str = "8934e7d15453e97507ef794cf7b0519d"):
    """Start the server on a free port; returns (fake, stop)."""
    fake = FakeWeChat(app_id=app_id, app_secret=app_secret, mch_id=mch_id, mch_key=mch_key)
    fake.pay_v3 = FakeWeChatPayV3(app_id=app_id, mch_id=mch_id)
    return fake, serve(fake)


def serve(fake: FakeWeChat, *, port: int = 0, pages: dict[tuple[str, str], Page] | None = None) -> Callable[[], None]:
    """Serve ``fake`` on 127.0.0.1:``port`` (0: a free one) from a daemon thread, and set its ``base_url``; returns
    the function that stops it. ``pages`` maps (method, path) to a page answered before WeChat's own paths."""
    pages = pages or {}
    json_routes = {
        "/sns/oauth2/access_token": fake.access_token, "/sns/userinfo": fake.userinfo,
        "/cgi-bin/token": fake.client_token, "/cgi-bin/ticket/getticket": fake.jsapi_ticket,
    }
    json_post_routes = {
        "/cgi-bin/qrcode/create": fake.create_qrcode, "/cgi-bin/menu/create": fake.create_menu,
        "/cgi-bin/message/template/send": fake.send_template,
        "/cgi-bin/message/subscribe/bizsend": fake.send_subscribe,
    }
    pay_routes = {"/mch/pay/unifiedorder", "/mch/pay/orderquery", "/mch/pay/closeorder", "/mch/secapi/pay/refund",
                  "/mch/pay/refundquery", "/mch/mmpaymkttransfers/promotion/transfers",
                  "/mch/mmpaymkttransfers/gettransferinfo"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parts = urlsplit(self.path)
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if ("GET", parts.path) in pages:
                self._answer_page(pages[("GET", parts.path)], PageRequest(params, {}))
                return
            fake.requests.append((parts.path, params))
            if parts.path == "/connect/oauth2/authorize":
                status, headers, body = fake.authorize(params)
                self._answer(status, headers, body, "text/html; charset=utf-8")
            elif fake.outage_status is not None:
                self._answer(fake.outage_status, {}, b"upstream unavailable", "text/plain")
            elif parts.path.startswith("/v3/"):
                self._answer_v3("GET", b"")
            elif parts.path in json_routes:
                body = json.dumps(json_routes[parts.path](params), ensure_ascii=False).encode()
                self._answer(200, {}, body, "application/json; charset=utf-8")
            else:
                self._answer(404, {}, b"not found", "text/plain")

        def do_POST(self):
            parts = urlsplit(self.path)
            path = parts.path
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if ("POST", path) in pages:
                form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                self._answer_page(pages[("POST", path)], PageRequest(query, form))
            elif fake.outage_status is not None:
                fake.requests.append((path, {}))
                self._answer(fake.outage_status, {}, b"upstream unavailable", "text/plain")
            elif path.startswith("/v3/"):
                self._answer_v3("POST", body)
            elif path in pay_routes:
                self._answer(200, {}, fake.pay_endpoint(path, body), "text/xml; charset=utf-8")
            elif path in json_post_routes:
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                fake.requests.append((path, params))
                answer = json_post_routes[path](params, body)
                self._answer(200, {}, json.dumps(answer, ensure_ascii=False).encode(),
                             "application/json; charset=utf-8")
            else:
                self._answer(404, {}, b"not found", "text/plain")

        def _answer_page(self, page: Page, request: PageRequest):
            status, headers, body = page(request)
            headers = dict(headers)
            self._answer(status, headers, body, headers.pop("Content-Type", "text/html; charset=utf-8"))

        def _answer_v3(self, method: str, body: bytes):
            status, headers, answer = fake.pay_v3.handle(method, self.path, dict(self.headers), body)
            headers = dict(headers)
            content_type = headers.pop("Content-Type", "application/json; charset=utf-8")
            self._answer(status, headers, answer, content_type)

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

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True, name=f"fake-wechat-{server.server_address[1]}")
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return stop
