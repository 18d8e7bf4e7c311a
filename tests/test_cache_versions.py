"""An admin's save shows at once in every worker: two apps ("workers", each with its own per-process page cache)
share one database; a price, product or content save through one is served by the other with its next request —
no TTL to wait for (the caches' clock stands still), no sleep. Without a save the other keeps serving from its
cache (services/cache_versions.py)."""
import re

import pytest
from sqlalchemy import select

from dingqiao import create_app
from dingqiao.extensions import db
from dingqiao.models import AdminUser, Product
from dingqiao.services import cache_versions, catalog, content
from dingqiao.services.accounts import create_admin
from dingqiao.services.content import AnnouncementInput
from tests.factories import make_product

TTL = 600


@pytest.fixture
def app_config(app_config):
    return {**app_config, "CATALOG_CACHE_SECONDS": TTL, "HOME_CONTENT_CACHE_SECONDS": TTL}


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr("cachelib.simple.time", lambda: 1000.0)  # no entry ever expires during the test


@pytest.fixture
def other_worker(app, app_config):
    """A second app on the same database, with a page cache of its own."""
    return create_app(app_config)


@pytest.fixture
def world(app):
    with app.app_context():
        product = make_product(3990, "两个进程的洗衣液")
        admin = create_admin(db.session, "finance", "long-enough-password")
        return product.id, admin.id


def prices(html: str) -> list[str]:
    return re.findall(r'<span class="dq-price__now">([^<]+)</span>', html)


def notices(html: str) -> list[str]:
    return re.findall(r'class="dq-notice__text"[^>]*>([^<]+)<', html)


def set_member_price(app, product_id: int, admin_id: int, fen: int) -> None:
    """What the admin's product form does (Flask-Admin's ProductView.on_model_change calls the same service)."""
    with app.app_context():
        product = db.session.get(Product, product_id)
        admin = db.session.get(AdminUser, admin_id)
        catalog.set_product_terms(db.session, admin, product, catalog.TierPrices(fen, 3192, 2800), on_sale=True,
                                  is_new=False, operator_max_bps=2000)
        db.session.commit()


def test_a_price_saved_in_one_worker_is_served_by_the_other_at_once(app, other_worker, world, clock):
    product_id, admin_id = world
    reader = other_worker.test_client()
    product = f"/products/{product_id}"
    for _ in range(2):  # filled, then served from the other worker's cache
        assert prices(reader.get("/").get_data(as_text=True)) == ["¥39.90"]
        assert "¥39.90" in reader.get(product).get_data(as_text=True)

    set_member_price(app, product_id, admin_id, 4990)
    assert prices(reader.get("/").get_data(as_text=True)) == ["¥49.90"]
    assert prices(reader.get("/", headers={"HX-Request": "true"}).get_data(as_text=True)) == ["¥49.90"]
    page = reader.get(product).get_data(as_text=True)
    assert "¥49.90" in page and "¥39.90" not in page

    # The bulk off-sale goes through set_product_terms too.
    with app.app_context():
        admin = db.session.get(AdminUser, admin_id)
        catalog.set_products_on_sale(db.session, admin, [product_id], False)
    assert "两个进程的洗衣液" not in reader.get("/").get_data(as_text=True)


def test_content_saved_in_one_worker_is_served_by_the_other_at_once(app, other_worker, world, clock):
    _, admin_id = world
    reader = other_worker.test_client()
    assert notices(reader.get("/").get_data(as_text=True)) == []
    with app.app_context():
        saved = content.create_announcement(db.session, admin_id, AnnouncementInput("另一个进程的公告"))
        saved_id = saved.id
    assert notices(reader.get("/").get_data(as_text=True)) == ["另一个进程的公告"]
    with app.app_context():
        content.update_announcement(db.session, admin_id, saved_id, AnnouncementInput("改过的公告"))
    assert notices(reader.get("/").get_data(as_text=True)) == ["改过的公告"]
    with app.app_context():
        content.deactivate_announcement(db.session, admin_id, saved_id)
    assert notices(reader.get("/").get_data(as_text=True)) == []


def test_without_a_save_the_cached_parts_stay_cached(app, other_worker, world, clock, monkeypatch):
    loads = []
    real_list, real_home = catalog.list_products, content.load_home_content
    monkeypatch.setattr(catalog, "list_products", lambda *a, **k: loads.append("list") or real_list(*a, **k))
    monkeypatch.setattr(content, "load_home_content", lambda *a, **k: loads.append("home") or real_home(*a, **k))
    reader = other_worker.test_client()
    for _ in range(3):
        assert reader.get("/").status_code == 200
    assert sorted(loads) == ["home", "list"]
    with app.app_context():  # an unrelated save (a content version) leaves the product list cached
        content.create_announcement(db.session, world[1], AnnouncementInput("只动内容"))
    reader.get("/")
    assert sorted(loads) == ["home", "home", "list"]


def test_a_bump_rolled_back_changes_nothing_and_a_bump_joins_the_save(app):
    with app.app_context():
        before = cache_versions.version(db.session, cache_versions.CATALOG)
        cache_versions.bump(db.session, cache_versions.CATALOG)
        db.session.rollback()
        db.session.info.clear()
        assert cache_versions.version(db.session, cache_versions.CATALOG) == before
        cache_versions.bump(db.session, cache_versions.CATALOG)
        cache_versions.bump(db.session, cache_versions.CATALOG)
        db.session.commit()
        assert cache_versions.version(db.session, cache_versions.CATALOG) == before + 2
        with pytest.raises(ValueError):
            cache_versions.bump(db.session, "prices")


def test_a_category_saved_on_the_data_pages_bumps_the_catalog_version(app, world):
    """Categories are edited only on the Flask-Admin data page: its write (services/data_pages.py) bumps the
    catalog's version in the same transaction, and a rolled-back save bumps nothing."""
    from dingqiao.models import Category
    from dingqiao.services import data_pages

    _product_id, admin_id = world
    with app.app_context():
        category = db.session.scalars(select(Category)).first()
        before = cache_versions.version(db.session, cache_versions.CATALOG)
        db.session.rollback()
        data_pages.update_row(db.session, admin_id, category, lambda: setattr(category, "name", "新的分类名") or None)
        assert cache_versions.version(db.session, cache_versions.CATALOG) == before + 1
        db.session.rollback()

        def refused():
            category.name = "不会保存"
            raise RuntimeError("the form was refused")

        with pytest.raises(RuntimeError):
            data_pages.update_row(db.session, admin_id, category, refused)
        db.session.rollback()
        assert cache_versions.version(db.session, cache_versions.CATALOG) == before + 1
