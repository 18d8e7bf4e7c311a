"""Pages render whole on first load and as fragments for htmx; the menu and prices follow the identity."""
import re

import pytest

from dingqiao.extensions import db
from dingqiao.models import Identity
from dingqiao.services.demo_data import seed_demo
from dingqiao import create_app
from tests.conftest import csrf_token, make_config
from tests.test_access import log_in
from tests.factories import make_user


@pytest.fixture
def seeded(app):
    with app.app_context():
        seed_demo(db.session, app.config["UPLOAD_FOLDER"])


def card_count(html: str) -> int:
    return len(re.findall(r'<a class="dq-card[ "]', html))


def tab_labels(html: str) -> list[str]:
    return re.findall(r'<span class="dq-tabbar__label">([^<]+)</span>', html)


def test_home_is_a_whole_page_with_the_member_tab_bar(client, seeded):
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.startswith("<!doctype html>")
    assert tab_labels(html) == ["首页", "购物车", "订单", "我的"]
    assert card_count(html) == 10  # the first page; the rest come by infinite scroll
    assert 'hx-trigger="revealed"' in html and "page=2" in html
    assert "¥39.90" in html and "会员价" in html  # a visitor sees the member price
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert response.headers["Vary"] == "HX-Request, Cookie" or "HX-Request" in response.headers["Vary"]


def test_category_switch_by_htmx_gets_only_the_product_list(client, seeded):
    html = client.get("/").get_data(as_text=True)
    kitchen = re.search(r'href="/\?category=(\d+)"[^>]*>厨房清洁<', html).group(1)
    fragment = client.get(f"/?category={kitchen}", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and body.lstrip().startswith('<div id="catalog">')
    # The chip of the chosen category is the highlighted one, in the same swap.
    assert re.search(r'class="dq-chip dq-chip--on" href="/\?category=' + kitchen + '"', body)
    assert card_count(body) == 4 and "洗洁精" in body and "洗衣液" not in body
    # A history restore or a boosted navigation needs the whole page even though HX-Request is set.
    restore = client.get(f"/?category={kitchen}", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in restore.get_data(as_text=True)
    boosted = client.get(f"/?category={kitchen}", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in boosted.get_data(as_text=True)


@pytest.mark.parametrize(
    ("identity", "price", "label", "tabs"),
    [
        (Identity.MEMBER, "¥39.90", "会员价", ["首页", "购物车", "订单", "我的"]),
        (Identity.OUTLET, "¥31.92", "核销网点价", ["首页", "核销", "库存", "看板", "我的"]),
        (Identity.FACTORY, "¥25.93", "工厂店价", ["首页", "核销", "区域", "进货", "我的"]),
    ],
)
def test_each_identity_sees_its_price_and_its_menu(app, client, seeded, identity, price, label, tabs):
    with app.app_context():
        user_id = make_user("身份测试", identity=identity).id
    log_in(client, user_id)
    html = client.get("/").get_data(as_text=True)
    first_card = html[html.index('<a class="dq-card'):]
    assert price in first_card[:800] and label in first_card[:800]
    assert tab_labels(html) == tabs
    product = client.get("/products/1").get_data(as_text=True)
    assert price in product and label in product


def test_product_page_and_missing_product(client, seeded):
    page = client.get("/products/1")
    assert page.status_code == 200 and "顶俏浓缩洗衣液 2kg" in page.get_data(as_text=True)
    missing = client.get("/products/99999")
    assert missing.status_code == 404 and "商品不存在或已下架" in missing.get_data(as_text=True)


def test_product_images_are_served_as_images_only(app, client, seeded):
    image = client.get("/media/products/demo-1.png")
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert image.data.startswith(b"\x89PNG")
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    upload = app.config["UPLOAD_FOLDER"]
    with open(f"{upload}/evil.html", "w") as f:
        f.write("<script>alert(1)</script>")
    assert client.get("/media/evil.html").status_code == 404
    assert client.get("/media/../../etc/passwd.png").status_code == 404


def test_healthz_reports_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["database"]["ok"] is True
    assert response.json["database"]["dialect"] in {"sqlite", "postgresql"}


def test_healthz_says_503_when_the_database_is_gone(tmp_path):
    app = create_app(make_config("sqlite:////nonexistent/dir/x.db", tmp_path))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "error", "database": {"ok": False, "error": "OperationalError"}}


def test_security_headers_on_every_page(client):
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_session_cookie_flags(app, client):
    app.config["SESSION_COOKIE_SECURE"] = True
    client.get("/?ref=ABCD1234")  # makes the session non-empty, so the cookie is set
    cookie = client.get_cookie("dq_session")
    assert cookie is not None
    assert cookie.http_only and cookie.secure and cookie.same_site == "Lax"


def test_unexpected_errors_show_a_chinese_page_without_internals(app, client, monkeypatch):
    import dingqiao.blueprints.member.routes as me_views

    def broken(*_args, **_kwargs):
        raise RuntimeError("connection to internal-db.secret:5432 lost")

    monkeypatch.setattr(me_views, "render_page", broken)
    with app.app_context():
        user_id = make_user("会员").id
    log_in(client, user_id)
    response = client.get("/me/")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "系统繁忙" in body and "internal-db" not in body and "Traceback" not in body


def test_private_pages_keep_out_of_the_htmx_history_cache(app, client):
    with app.app_context():
        user_id = make_user("会员").id
    log_in(client, user_id)
    # Inside <main>, so it also arrives with a boosted navigation (which swaps the body's children only).
    me = client.get("/me/", headers={"HX-Request": "true", "HX-Boosted": "true"}).get_data(as_text=True)
    main = me[me.index("<main"):]
    assert '<div hx-history="false" hidden></div>' in main
    assert 'hx-history="false"' not in client.get("/").get_data(as_text=True)


def test_login_links_carry_a_clean_next(client):
    assert client.get("/me/").headers["Location"] == "/auth/login?next=/me/"
    assert client.get("/orders/?status=paid").headers["Location"] == "/auth/login?next=/orders/?status%3Dpaid"


def test_logout_needs_a_post_with_token(app, client):
    with app.app_context():
        user_id = make_user("会员").id
    log_in(client, user_id)
    assert client.get("/auth/logout").status_code == 405
    assert client.get("/me/").status_code == 200
    client.post("/auth/logout", headers={"X-CSRFToken": csrf_token(client)})
    assert client.get("/me/").status_code == 302
