"""The load tests' HTTP client (tests/gunicorn_server.py) behaves like a browser on a closed keep-alive connection:
a request the server never answered because it closed the connection is sent once more on a new connection; a
request that timed out is not (the server may have acted on it)."""
import socket
import threading

import pytest
import requests

from tests.gunicorn_server import browser_like_session


class OneShotServer:
    """Accepts connections on 127.0.0.1; ``plan`` says, per connection in order, 'close' (read the request and
    hang up without a word), 'answer' (reply 200) or 'stall' (read and never reply)."""

    def __init__(self, plan: list[str]):
        self.plan, self.requests_seen = list(plan), 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stalled: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for step in self.plan:
            conn, _ = self.sock.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.requests_seen += 1
            if step == "close":
                conn.close()
            elif step == "answer":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                conn.close()
            else:
                self.stalled.append(conn)

    def close(self) -> None:
        for conn in self.stalled:
            conn.close()
        self.sock.close()


def test_a_post_the_server_hung_up_on_is_sent_again_on_a_new_connection():
    server = OneShotServer(["close", "answer"])
    try:
        answer = browser_like_session().post(server.url + "/checkout/", data={"a": "1"}, timeout=60)
        assert (answer.status_code, answer.text) == (200, "ok")
        assert server.requests_seen == 2
    finally:
        server.close()


def test_a_request_that_timed_out_is_not_sent_again():
    server = OneShotServer(["stall", "answer"])
    try:
        with pytest.raises(requests.exceptions.ReadTimeout):
            browser_like_session().post(server.url + "/checkout/", data={"a": "1"}, timeout=1)
        assert server.requests_seen == 1
    finally:
        server.close()


def test_only_one_retry_then_the_error_reaches_the_caller():
    server = OneShotServer(["close", "close", "answer"])
    try:
        with pytest.raises(requests.exceptions.ConnectionError):
            browser_like_session().post(server.url + "/x", data={}, timeout=60)
        assert server.requests_seen == 2
    finally:
        server.close()
