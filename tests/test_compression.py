"""Stylesheets and scripts are sent compressed; pages and JSON never are (they hold the CSRF token and echo what
a visitor typed: compressing both in one HTTPS response is what BREACH needs)."""
import brotli
import pytest

from tests.conftest import csrf_token
from tests.test_access import log_in


@pytest.mark.parametrize("path", ["/static/vendor/weui/weui.subset.min.css", "/static/css/app.css",
                                  "/static/vendor/htmx/htmx.min.js", "/static/js/app.js"])
def test_css_and_js_are_compressed_for_a_browser_that_accepts_it(client, path):
    plain = client.get(path)
    squeezed = client.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})  # as WeChat's browser asks
    assert plain.status_code == squeezed.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert squeezed.headers["Content-Encoding"] == "br" and "Accept-Encoding" in squeezed.headers["Vary"]
    body = brotli.decompress(squeezed.get_data())
    assert body == plain.get_data() and len(squeezed.get_data()) < len(body) / 2


def test_a_not_modified_answer_stays_empty_and_unencoded(client):
    first = client.get("/static/css/app.css", headers={"Accept-Encoding": "br"})
    again = client.get("/static/css/app.css", headers={"Accept-Encoding": "br",
                                                       "If-None-Match": first.headers["ETag"].strip('W/')})
    assert again.status_code == 304 and "Content-Encoding" not in again.headers


def test_pages_and_json_are_never_compressed(app, client):
    from tests.money_world import build_world

    world = build_world(app)
    log_in(client, world.parent)
    for path in ("/", "/?q=%E6%B4%97", "/wallet/", "/wallet/earnings.json", "/cart/"):
        answer = client.get(path, headers={"Accept-Encoding": "gzip, br, zstd"})
        assert answer.status_code == 200, path
        assert "Content-Encoding" not in answer.headers, path
    assert csrf_token(client)
