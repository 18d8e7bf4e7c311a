"""The shop's page cache of the catalog (Flask-Caching, CATALOG_CACHE_SECONDS): shared by the viewers of one
identity and never carrying anything of one member's to another, fresh again once its TTL has passed for what
changed without an admin's save, off at 0, and bounded whatever visitors search for. The cache's clock is moved
by hand; everything else is real. (An admin's save showing at once in every worker: test_cache_versions.py.)"""
import re
from types import SimpleNamespace

import pytest
from sqlalchemy import update

from dingqiao.extensions import cache, db
from dingqiao.models import Identity, Product, StockLevel
from tests.factories import make_outlet, make_product, make_user, stock
from tests.test_access import log_in

HX = {"HX-Request": "true"}
TTL = 60
THRESHOLD = 60  # the per-worker cache's bound, small here so the test fills it quickly


@pytest.fixture
def app_config(app_config):
    return {**app_config, "CATALOG_CACHE_SECONDS": TTL, "CACHE_THRESHOLD": THRESHOLD}


@pytest.fixture
def clock(monkeypatch):
    """The per-worker cache's clock (cachelib's SimpleCache reads time.time as ``time``)."""
    now = [1000.0]
    monkeypatch.setattr("cachelib.simple.time", lambda: now[0])
    return now


def kept(app, what: str) -> int:
    """How many parts named ``what`` ("catalog", "product") this app's cache holds."""
    with app.app_context():
        return sum(1 for name in cache.cache._cache if name.startswith(f"('', {what!r},"))


def kept_in_all(app) -> int:
    with app.app_context():
        return len(cache.cache._cache)


@pytest.fixture
def world(app):
    """A product at ¥39.90 (outlets pay ¥31.92) with 5 units at an active outlet; two members and the outlet's
    owner."""
    with app.app_context():
        product = make_product(3990, "缓存测试洗衣液")
        owner = make_user("网点老板", identity=Identity.OUTLET)
        stock(make_outlet(owner), product, 5)
        first, second = make_user("会员甲"), make_user("会员乙")
        return SimpleNamespace(product_id=product.id, owner_id=owner.id, first_id=first.id,
                               first_code=first.referral_code, second_id=second.id, second_code=second.referral_code)


def client_of(app, user_id: int | None):
    client = app.test_client()
    if user_id is not None:
        log_in(client, user_id)
    return client


def card_prices(html: str) -> list[str]:
    return re.findall(r'<span class="dq-price__now">([^<]+)</span>', html)


def page(client, path: str, headers: dict | None = None) -> str:
    response = client.get(path, headers=headers or {})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def set_member_price(app, product_id: int, fen: int) -> None:
    with app.app_context():
        db.session.execute(update(Product).where(Product.id == product_id).values(member_price_fen=fen))
        db.session.commit()


def test_each_identity_is_served_its_own_prices_from_the_cache(app, world, clock):
    member, owner, visitor = client_of(app, world.first_id), client_of(app, world.owner_id), client_of(app, None)
    product = f"/products/{world.product_id}"
    for _ in range(2):  # the first round fills the caches, the second is served from them
        assert card_prices(page(member, "/")) == ["¥39.90"]
        assert card_prices(page(owner, "/")) == ["¥31.92"]
        assert card_prices(page(visitor, "/")) == ["¥39.90"]
        assert card_prices(page(owner, "/", HX)) == ["¥31.92"]
        assert card_prices(page(member, "/", HX)) == ["¥39.90"]
        assert "¥39.90" in page(member, product) and "¥31.92" not in page(member, product)
        owner_view = page(owner, product)
        assert "¥31.92" in owner_view and "核销网点价" in owner_view and "会员价 ¥39.90" in owner_view


def test_nothing_of_one_member_reaches_another(app, world, clock):
    first, second, visitor = client_of(app, world.first_id), client_of(app, world.second_id), client_of(app, None)
    product = f"/products/{world.product_id}"
    share_link = re.compile(r'data-share-link="([^"]+)"')
    csrf = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
    for _ in range(2):
        first_view, second_view, visitor_view = page(first, product), page(second, product), page(visitor, product)
        assert share_link.search(first_view).group(1).endswith(f"?ref={world.first_code}")
        assert share_link.search(second_view).group(1).endswith(f"?ref={world.second_code}")
        assert "data-share-link" not in visitor_view
        assert csrf.search(first_view).group(1) != csrf.search(second_view).group(1)

        # The login button is the visitor's alone, whoever filled the catalog cache.
        assert "dq-hero__login" in page(visitor, "/")
        assert "dq-hero__login" not in page(first, "/")
        assert "dq-hero__login" in page(visitor, "/")


def test_a_price_change_shows_once_the_ttl_has_passed(app, world, clock):
    member = client_of(app, world.first_id)
    product = f"/products/{world.product_id}"
    assert card_prices(page(member, "/")) == ["¥39.90"] and "¥39.90" in page(member, product)

    set_member_price(app, world.product_id, 4990)
    clock[0] += TTL - 0.1
    assert card_prices(page(member, "/")) == ["¥39.90"]  # kept, as CATALOG_CACHE_SECONDS allows
    assert card_prices(page(member, "/", HX)) == ["¥39.90"]
    assert "¥39.90" in page(member, product)
    clock[0] += 0.2
    assert card_prices(page(member, "/")) == ["¥49.90"]
    assert card_prices(page(member, "/", HX)) == ["¥49.90"]
    assert "¥49.90" in page(member, product) and "¥39.90" not in page(member, product)


def test_a_sold_out_product_is_flagged_once_the_ttl_has_passed(app, world, clock):
    member = client_of(app, world.first_id)
    product = f"/products/{world.product_id}"
    assert "已售罄" not in page(member, "/") and "门店现货 5 件" in page(member, product)
    with app.app_context():
        db.session.execute(update(StockLevel).where(StockLevel.product_id == world.product_id)
                           .values(reserved=StockLevel.on_hand))
        db.session.commit()
    clock[0] += TTL + 1
    assert "dq-card--soldout" in page(member, "/")
    assert '<button class="dq-buybar__add" type="button" disabled>已售罄</button>' in page(member, product)


def test_with_the_cache_off_every_request_is_fresh(app, world):
    app.config["CATALOG_CACHE_SECONDS"] = 0
    member = client_of(app, world.first_id)
    product = f"/products/{world.product_id}"
    assert card_prices(page(member, "/")) == ["¥39.90"] and "¥39.90" in page(member, product)
    set_member_price(app, world.product_id, 4990)
    assert card_prices(page(member, "/")) == ["¥49.90"] and "¥49.90" in page(member, product)
    assert kept(app, "catalog") == 0 and kept(app, "product") == 0


def test_the_load_more_fragment_and_the_whole_page_are_kept_apart(app, world, clock):
    with app.app_context():
        for n in range(10):
            make_product(1990, f"翻页测试品{n}")
    member = client_of(app, world.first_id)
    for _ in range(2):
        fragment = page(member, "/?page=2", HX)
        assert "<html" not in fragment and 'id="catalog"' not in fragment and "dq-card" in fragment
        whole = page(member, "/?page=2")
        assert whole.startswith("<!doctype html>") and 'id="catalog"' in whole and "dq-chip" in whole


def test_searches_cannot_grow_the_cache_without_bound(app, world, clock):
    member = client_of(app, world.first_id)
    bound = THRESHOLD + 1  # cachelib makes room before it adds: at most one past the threshold
    for n in range(bound + 40):
        assert "没有找到" in page(member, f"/?q=没有的词{n}", HX)
    assert kept_in_all(app) == bound and kept(app, "catalog") > THRESHOLD // 2
    # The oldest searches made room; a page still in use is served as before.
    assert card_prices(page(member, "/?q=缓存测试", HX)) == ["¥39.90"]
    assert kept_in_all(app) == bound
