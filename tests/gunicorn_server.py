"""The real deployable under test: gunicorn with the committed gunicorn.conf.py serving wsgi:app on 127.0.0.1,
in its own process group (so a test can kill -9 the master and every worker at once), and HTTP clients that
act like people: a member who logs in, buys and pays; an outlet owner who redeems.

Used by tests/test_under_load.py and the bench/ scripts. Demo mode: the pay notify is a v3 notify signed with the
demo "WeChat Pay" key in the instance folder the server uses (the same notify code path as production, see
dingqiao/wechat/demo.py).
"""
import functools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError
from urllib3.util.retry import Retry

from dingqiao.wechat.demo import demo_gateway

ROOT = Path(__file__).resolve().parent.parent
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
ORDER_URL = re.compile(r"/orders/(DQ\d+)$")
PICKUP_CODE = re.compile(r'class="dq-pickup__code"[^>]*>([\d\s]+)<')
# One browser keeps one User-Agent. Flask-Login's session protection ties the session to it: a client that
# replays these cookies under another agent gets its session marked not fresh, and re-signed, every request.
USER_AGENT = "Mozilla/5.0 (Linux; Android 14) dingqiao-load-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Gunicorn:
    database_url: str
    log_path: Path
    workers: int = 3
    threads: int = 8
    port: int = field(default_factory=free_port)
    extra_env: dict = field(default_factory=dict)
    app_module: str = "wsgi:app"  # bench/ serves a bare Flask app under the same settings for comparison
    access_log: str = "/dev/null"  # a path, to read the access log gunicorn.conf.py writes
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, "DINGQIAO_DEMO": "1", "DATABASE_URL": self.database_url, "SECRET_KEY": "load-test-key",
               "GUNICORN_BIND": f"127.0.0.1:{self.port}", "GUNICORN_WORKERS": str(self.workers),
               "GUNICORN_THREADS": str(self.threads), "GUNICORN_MAX_REQUESTS": "0",
               "DINGQIAO_JOBS": "0",  # no scheduled jobs behind a test's back; extra_env turns them on
               **self.extra_env}
        for name in ("WECHAT_APP_SECRET", "WECHAT_MCH_KEY", "TEST_DATABASE_URL"):
            env.pop(name, None)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--access-logfile", self.access_log,
             self.app_module],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer /healthz in time")

    def kill_hard(self) -> None:
        """kill -9 the master and every worker: no shutdown code runs, as in a power cut of the process."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)

    def unhandled_errors(self) -> list[str]:
        """The app's "unhandled error" log lines (each is a 500 somebody saw)."""
        return [line for line in self.log_path.read_text(errors="replace").splitlines() if "unhandled error" in line]


@contextmanager
def running_gunicorn(database_url: str, log_path: Path, **options) -> Iterator[Gunicorn]:
    server = Gunicorn(database_url, log_path, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class RetryUnanswered(Retry):
    """What browsers do when a request gets no answer at all because the server had already closed the connection
    (gunicorn closes a keep-alive connection idle past its keepalive, and a request sent on it in that moment meets
    a closed socket): send it once more, on a new connection. Only that case: a timeout, or an answer cut off
    half-way, is not retried — the server may have acted on it."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if error is not None and not isinstance(error, ProtocolError) and not self._is_connection_error(error):
            raise error.with_traceback(_stacktrace)  # a timeout stays a timeout, and is not sent again
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def _is_read_error(self, err: Exception) -> bool:
        return isinstance(err, ProtocolError)


def browser_like_session() -> requests.Session:
    session = requests.Session()
    retry = RetryUnanswered(total=1, connect=1, read=1, redirect=0, status=0, other=0, allowed_methods=None,
                            raise_on_status=False, respect_retry_after_header=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


class Visitor:
    """One person's browser: cookies, the CSRF token of the page they last saw, demo login."""

    def __init__(self, base_url: str, timeout: float = 60):
        self.base_url, self.timeout = base_url, timeout
        self.http = browser_like_session()
        self.http.headers["User-Agent"] = USER_AGENT
        self.token = ""

    def get(self, path: str, **kwargs) -> requests.Response:
        response = self.http.get(self.base_url + path, timeout=self.timeout, **kwargs)
        if match := CSRF_META.search(response.text):
            self.token = match.group(1)
        return response

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        if not self.token:
            self.get("/auth/login")
        return self.http.post(self.base_url + path, data={"csrf_token": self.token, **(data or {})},
                              timeout=self.timeout, allow_redirects=False, **kwargs)

    def drop_idle_connections(self) -> None:
        """After a wait of unknown length (others getting ready): gunicorn closes a connection idle for longer
        than its keepalive, and a POST sent on such a connection fails unanswered. New ones, same cookies."""
        self.http.close()

    def log_in(self, user_id: int) -> None:
        answer = self.post("/auth/demo", {"user_id": str(user_id), "next": "/"})
        assert answer.status_code in (302, 303), answer.status_code
        self.get("/cart/")  # the session was renewed at login: take the new page's token

    def put_in_cart(self, product_id: int, quantity: int = 1) -> None:
        answer = self.post("/cart/items", {"product_id": str(product_id), "quantity": str(quantity)})
        assert answer.status_code in (302, 303), answer.status_code

    def check_out(self, outlet_id: int) -> tuple[int, str | None]:
        """(status, order number or None): 302 to the new order, or the refusal's status."""
        answer = self.post("/checkout/", {"outlet_id": str(outlet_id)})
        match = ORDER_URL.search(answer.headers.get("Location", ""))
        return answer.status_code, match.group(1) if match else None

    def pickup_code(self, order_no: str) -> str:
        match = PICKUP_CODE.search(self.get(f"/orders/{order_no}").text)
        return match.group(1).replace(" ", "") if match else ""

    def redeem(self, code: str) -> requests.Response:
        return self.post(f"/outlet/redeem/{code}", headers={"HX-Request": "true"})


def notify_paid(base_url: str, order_no: str, total_fen: int, openid: str, timeout: float = 60) -> requests.Response:
    """WeChat's payment notification for ``order_no``, signed with the demo merchant's key, posted as WeChat
    would (retries included: posting it again is a duplicate the server must take in its stride)."""
    body, headers = demo_merchant_gateway().signed_notification(
        out_trade_no=order_no, transaction_id=f"42{order_no[2:]}", total_fee=total_fen, openid=openid)
    return requests.post(f"{base_url}/wechat/pay/v3/notify", data=body, timeout=timeout,
                         headers={"Content-Type": "application/json", **headers})


@functools.cache
def demo_merchant_gateway():
    """The demo merchant the server runs as: gunicorn starts in ROOT, so its instance folder is ROOT/instance."""
    return demo_gateway(str(ROOT / "instance"))
