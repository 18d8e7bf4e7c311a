"""What pages draw once and reuse (web.page_url, templating.head_assets, templating.csrf_token): the same
addresses and tokens as building them anew each time, kept apart per mount point, host and scheme, bounded, and
never one request's token in another's page."""
import re

from flask import url_for

from dingqiao import web
from dingqiao.web import page_url
from tests.factories import make_product


def test_an_address_is_the_one_url_for_builds_whatever_came_before(app):
    cases = [
        ("http://shop.example/", "shop.home", {}),
        ("http://shop.example/", "shop.product", {"product_id": 7}),
        ("http://shop.example/", "shop.product", {"product_id": 7, "ref": "ABC", "_external": True}),
        ("https://other.example/", "shop.product", {"product_id": 7, "ref": "ABC", "_external": True}),
        ("http://shop.example:8080/", "shop.product", {"product_id": 7, "_external": True}),
        ("http://shop.example/mounted/", "shop.product", {"product_id": 7}),
        ("http://shop.example/mounted/", "shop.product", {"product_id": 7, "_external": True}),
        ("http://shop.example/", "static", {"filename": "css/app.css"}),
        ("http://shop.example/mounted/", "static", {"filename": "css/app.css"}),
        ("http://shop.example/", "admin_network.index", {"_anchor": "region-form"}),
    ]
    for _ in range(2):  # the second round is served from the memo
        for base_url, endpoint, values in cases:
            with app.test_request_context("/", base_url=base_url):
                assert page_url(endpoint, **values) == url_for(endpoint, **values), (base_url, endpoint, values)
    with app.test_request_context("/", base_url="https://other.example/mounted/"):
        assert page_url("shop.product", product_id=7, _external=True) == "https://other.example/mounted/products/7"


def test_a_relative_endpoint_is_taken_in_the_requests_blueprint(app):
    with app.test_request_context("/cart/"):
        assert page_url(".index") == url_for("cart.index") == "/cart/"
    with app.test_request_context("/orders/"):
        assert page_url(".index") == url_for("orders.index")
        assert page_url(".index") != "/cart/"


def test_values_that_cannot_be_a_key_are_built_each_time(app):
    with app.test_request_context("/"):
        assert page_url("shop.home", q=["a", "b"]) == url_for("shop.home", q=["a", "b"]) == "/?q=a&q=b"


def test_the_memo_is_bounded(app, monkeypatch):
    monkeypatch.setattr(web, "URLS_PER_APP", 50)
    with app.test_request_context("/"):
        for product_id in range(500):
            assert page_url("shop.product", product_id=product_id) == f"/products/{product_id}"
        assert len(app.extensions["dingqiao.page_urls"]) <= 50


def product_id(app) -> int:
    with app.app_context():  # and out of it again: requests inside one would share its ``g``
        return make_product(name="洗衣液").id


def test_a_value_from_the_request_is_not_kept(app, client, monkeypatch):
    """A visitor's login link carries their own path (?next=): long values are built each time, never kept, so
    requests with ever new query strings cannot fill a worker's memory."""
    client.get(f"/?pad=first{'x' * 200}")
    kept = app.extensions["dingqiao.page_urls"]
    before = len(kept)
    for number in range(50):
        page = client.get(f"/?pad={number}{'x' * 200}").get_data(as_text=True)
        assert f"pad%3D{number}{'x' * 200}" in page  # the login link's next=, built for this request
    assert not any(len(str(part)) > web.KEPT_VALUE_CHARS for key in kept for part in key), "a long value was kept"
    assert len(kept) == before


def test_a_page_under_a_mount_point_links_under_it_and_the_same_page_at_the_root_does_not(app, client):
    product = product_id(app)
    mounted = client.get(f"/products/{product}", base_url="http://shop.example/dq").get_data(as_text=True)
    plain = client.get(f"/products/{product}").get_data(as_text=True)
    assert 'href="/dq/static/css/app.css' in mounted and 'action="/dq/cart/items"' in mounted
    assert 'href="/static/css/app.css' in plain and 'action="/cart/items"' in plain
    assert "/dq/" not in plain


def csrf_tokens(html: str) -> set[str]:
    return set(re.findall(r'<meta name="csrf-token" content="([^"]+)"', html)
               + re.findall(r'"X-CSRFToken": "([^"]+)"', html)
               + re.findall(r'name="csrf_token" value="([^"]+)"', html))


def test_a_page_draws_one_token_everywhere_and_each_visitor_gets_their_own(app):
    assert app.config.get("WTF_CSRF_ENABLED", True)
    product = product_id(app)
    first, second = app.test_client(), app.test_client()
    page = first.get(f"/products/{product}").get_data(as_text=True)
    tokens = csrf_tokens(page)
    assert len(tokens) == 1, tokens  # meta tag, htmx header and the buy form: one token
    token = tokens.pop()
    other = csrf_tokens(second.get(f"/products/{product}").get_data(as_text=True))
    assert len(other) == 1 and token not in other
    # The drawn token is the one the server accepts, and only from its own visitor.
    expired = "页面已过期"  # the CSRF refusal (the product has no stock: the cart's own refusal is another)
    assert expired not in first.post("/cart/items", data={"csrf_token": token, "product_id": product}).get_data(as_text=True)
    refused = second.post("/cart/items", data={"csrf_token": token, "product_id": product})
    assert refused.status_code == 400 and expired in refused.get_data(as_text=True)
