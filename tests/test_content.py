"""内容营销与品牌展示: rich text sanitised on save, banner targets, announcement links and dates, published
articles only, the home page's banners and 公告 with their page cache, the admin pages (admins only,
every change audited) and images stored only through uploads.save_image."""
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import Announcement, Article, AuditLog, Banner, Product
from dingqiao.services import NotFound, content
from dingqiao.services.accounts import create_admin
from dingqiao.services.audit import verify_audit_chain
from dingqiao.services.content import (
    AnnouncementInput,
    ArticleInput,
    BannerInput,
    ContentError,
    ImageUpload,
    clean_link,
    sanitize_html,
)
from tests.conftest import csrf_token, log_in_admin
from tests.factories import make_product, make_user
from tests.test_access import log_in

HX = {"HX-Request": "true"}


def png_bytes(size=(60, 30), color=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def upload(app, data: bytes | None = None) -> ImageUpload:
    return ImageUpload(io.BytesIO(png_bytes() if data is None else data), app.config["UPLOAD_FOLDER"],
                       app.config["UPLOAD_MAX_BYTES"])


def stored_files(app) -> list[Path]:
    folder = Path(app.config["UPLOAD_FOLDER"])
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def content_actions() -> list[str]:
    return list(db.session.scalars(select(AuditLog.action).where(AuditLog.action.like("content.%"))
                                   .order_by(AuditLog.id)))


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def admin_id(app):
    with app.app_context():
        return create_admin(db.session, "editor", "long-enough-password").id


@pytest.fixture
def admin_client(client, admin_id):
    log_in_admin(client, admin_id)
    return client


@pytest.fixture
def product_id(app):
    with app.app_context():
        return make_product(name="顶俏浓缩洗衣液").id


def post(client, path: str, data: dict, headers=None):
    return client.post(path, data={**data, "csrf_token": csrf_token(client)}, headers=headers or {},
                       content_type="multipart/form-data")


# --- sanitising -------------------------------------------------------------------------------------------

def test_sanitising_keeps_the_allowed_formatting_exactly():
    html = ('<h2>品牌故事</h2><h3>小标题</h3><h4>更小</h4><p><strong>粗</strong><b>粗</b><em>斜</em><i>斜</i>'
            '<u>下划线</u><br></p><ul><li>一</li></ul><ol><li>二</li></ol><blockquote>引用</blockquote>'
            '<p><a href="https://example.com/a?b=1">外链</a><a href="/products/1">站内</a><a href="http://example.com">旧站</a></p>'
            '<img src="/media/articles/2026-11/ab12.jpg" alt="图" width="300" height="200">')
    assert sanitize_html(html) == html.replace('">外链', '" rel="noopener noreferrer">外链').replace(
        '">站内', '" rel="noopener noreferrer">站内').replace('">旧站', '" rel="noopener noreferrer">旧站')


@pytest.mark.parametrize(("dirty", "clean"), [
    ('<p>好<script>alert(1)</script>物</p>', "<p>好物</p>"),
    ('<p onclick="steal()" onmouseover="x()">文字</p>', "<p>文字</p>"),
    ('<img src="/media/a/b.jpg" onerror="steal()">', '<img src="/media/a/b.jpg">'),
    ('<a href="javascript:alert(1)">点我</a>', '<a rel="noopener noreferrer">点我</a>'),
    ('<a href="JaVaScRiPt:alert(1)">点我</a>', '<a rel="noopener noreferrer">点我</a>'),
    ('<a href="jav&#x09;ascript:alert(1)">点我</a>', '<a rel="noopener noreferrer">点我</a>'),
    ('<a href="data:text/html,<b>x</b>">点我</a>', '<a rel="noopener noreferrer">点我</a>'),
    ('<style>body{display:none}</style><p style="position:fixed">字</p>', "<p>字</p>"),
    ('<iframe src="https://evil.example/"></iframe><p>后</p>', "<p>后</p>"),
    ('<p>前</p><img src="https://evil.example/track.png" alt="x">', "<p>前</p>"),
    ('<img src="//evil.example/media/a.jpg">', ""),
    ('<img src="/media/../admin/">', ""),
    ('<img src="/static/x.png">', ""),
    ('<img src="data:image/png;base64,iVBORw0KGgo=">', ""),
    ('<img src="/media/a.jpg" width="100%" height="50">', '<img src="/media/a.jpg" height="50">'),
    ('<div class="x" id="y"><span>文</span><form action="/x"><input name="a"></form></div>', "文"),
])
def test_sanitising_strips_what_could_run_or_leak(dirty, clean):
    assert sanitize_html(dirty) == clean


def test_an_article_body_is_sanitised_when_saved_not_when_shown(app, admin_id):
    with app.app_context():
        article = content.create_article(db.session, admin_id, ArticleInput(
            kind="brand", title="我们的故事", body_html='<p onclick="x()">你好<script>alert(1)</script></p>',
            is_published=True))
        assert db.session.get(Article, article.id).body_html == "<p>你好</p>"


# --- banners ----------------------------------------------------------------------------------------------

def test_a_banner_target_must_exist_and_nothing_is_kept_when_it_does_not(app, admin_id, product_id):
    with app.app_context():
        category_id = db.session.get(Product, product_id).category_id
        article_id = content.create_article(db.session, admin_id, ArticleInput(kind="brand", title="品牌")).id
        for kind, missing, label in (("product", product_id + 100, "商品"), ("category", category_id + 100, "分类"),
                                     ("article", article_id + 100, "文章")):
            with pytest.raises(ContentError, match=f"跳转目标不存在：没有编号为 {missing} 的{label}"):
                content.create_banner(db.session, admin_id, BannerInput("横幅", kind, str(missing)), upload(app))
        with pytest.raises(ContentError, match="请选择横幅跳转"):
            content.create_banner(db.session, admin_id, BannerInput("横幅", "order", str(product_id)), upload(app))
        with pytest.raises(ContentError, match="跳转目标的编号"):
            content.create_banner(db.session, admin_id, BannerInput("横幅", "product", "１"), upload(app))
        # The image of a refused banner was stored first, then removed with the failed write.
        assert count(Banner) == 0 and stored_files(app) == []
        assert content_actions() == ["content.article.create"]

        for kind, target in (("product", product_id), ("category", category_id), ("article", article_id)):
            banner = content.create_banner(db.session, admin_id, BannerInput(f"去{kind}", kind, str(target)), upload(app))
            assert (banner.target_kind, banner.target_id) == (kind, target)
        assert count(Banner) == 3 and len(stored_files(app)) == 3


def test_a_banner_needs_an_image_and_a_title(app, admin_id, product_id):
    with app.app_context():
        with pytest.raises(ContentError, match="请上传横幅图片"):
            content.create_banner(db.session, admin_id, BannerInput("横幅", "product", str(product_id)), None)
        with pytest.raises(ContentError, match="横幅标题需为 1 到 64 个字"):
            content.create_banner(db.session, admin_id, BannerInput("  ", "product", str(product_id)), upload(app))
        assert count(Banner) == 0 and stored_files(app) == []


# --- announcements ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("link", ["", "/articles/1", "/?category=2", "https://example.com/活动?a=1#b", "HTTPS://example.com"])
def test_announcement_links_inside_the_site_or_https_are_kept(link):
    assert clean_link(f"  {link} ") == link


@pytest.mark.parametrize("link", [
    "http://example.com/", "javascript:alert(1)", "JavaScript:alert(1)", "//evil.example/x", "/\\evil.example",
    "https://", "https:///path", "https://[::1", "ftp://example.com/a", "data:text/html,hi", "/a b", "articles/1", "/a\x00b",
    "https://example.com/" + "a" * 256,
])
def test_other_announcement_links_are_refused_in_chinese(app, admin_id, link):
    with pytest.raises(ContentError, match="公告链接只能是本站路径"):
        clean_link(link)
    with app.app_context():
        with pytest.raises(ContentError, match="公告链接只能是本站路径"):
            content.create_announcement(db.session, admin_id, AnnouncementInput("新品上市", link=link))
        assert count(Announcement) == 0


@pytest.mark.parametrize(("form", "message"), [
    (AnnouncementInput(""), "公告内容需为 1 到 200 个字"),
    (AnnouncementInput("告" * 201), "公告内容需为 1 到 200 个字"),
    (AnnouncementInput("活动", starts_at="2026-11-05 09:00"), "开始时间格式不正确"),
    (AnnouncementInput("活动", starts_at="2026-11-05T10:00", ends_at="2026-11-05T09:00"), "结束时间需晚于开始时间"),
])
def test_bad_announcements_are_refused(app, admin_id, form, message):
    with app.app_context():
        with pytest.raises(ContentError, match=message):
            content.create_announcement(db.session, admin_id, form)
        assert count(Announcement) == 0


def test_announcement_dates_are_china_time_stored_as_utc(app, admin_id):
    with app.app_context():
        notice = content.create_announcement(db.session, admin_id, AnnouncementInput(
            "告" * 200, starts_at="2026-11-05T09:30", ends_at="2026-11-06T00:00"))
        assert (notice.starts_at.isoformat(), notice.ends_at.isoformat()) == ("2026-11-05T01:30:00", "2026-11-05T16:00:00")


# --- articles as members read them ------------------------------------------------------------------------

def test_only_published_articles_are_listed_and_readable_brand_first(app, client, admin_id, product_id):
    with app.app_context():
        made = {title: content.create_article(db.session, admin_id, ArticleInput(
            kind=kind, title=title, summary=f"{title}摘要", body_html=f"<p>{title}正文</p>",
            product_id=str(product_id) if kind == "product" else "", is_published=published)).id
            for kind, title, published in (("product", "洗衣液的秘密", True), ("brand", "顶俏的故事", True),
                                           ("brand", "草稿文章", False))}
    listing = client.get("/articles/")
    html = listing.get_data(as_text=True)
    assert listing.status_code == 200
    assert html.index("顶俏的故事") < html.index("洗衣液的秘密") and "草稿文章" not in html

    page = client.get(f"/articles/{made['洗衣液的秘密']}").get_data(as_text=True)  # no login needed
    assert "<p>洗衣液的秘密正文</p>" in page and f'href="/products/{product_id}"' in page
    assert client.get(f"/articles/{made['草稿文章']}").status_code == 404
    assert client.get("/articles/999999").status_code == 404

    with app.app_context():
        content.unpublish_article(db.session, admin_id, made["顶俏的故事"])
    assert client.get(f"/articles/{made['顶俏的故事']}").status_code == 404
    assert "顶俏的故事" not in client.get("/articles/").get_data(as_text=True)


# --- the home page ----------------------------------------------------------------------------------------

def banner_titles(html: str) -> list[str]:
    return re.findall(r'<span class="dq-banner__title">([^<]+)</span>', html)


def banner_links(html: str) -> list[str]:
    return re.findall(r'<a class="dq-banner" href="([^"]+)"', html)


def notices(html: str) -> list[str]:
    return re.findall(r'class="dq-notice__text"[^>]*>([^<]+)<', html)


def test_home_shows_active_banners_in_order_and_current_announcements_only(app, client, admin_id, product_id):
    with app.app_context():
        category_id = db.session.get(Product, product_id).category_id
        published = content.create_article(db.session, admin_id, ArticleInput("brand", "品牌", is_published=True)).id
        draft = content.create_article(db.session, admin_id, ArticleInput("brand", "草稿")).id
        off_sale = make_product(name="下架商品")
        off_sale.is_on_sale = False
        db.session.commit()
        for title, kind, target, order, active in (
            ("看文章", "article", published, "3", True), ("买洗衣液", "product", product_id, "1", True),
            ("逛分类", "category", category_id, "2", True), ("已下线", "product", product_id, "0", False),
            ("草稿文章", "article", draft, "0", True), ("下架商品", "product", off_sale.id, "0", True),
        ):
            content.create_banner(db.session, admin_id, BannerInput(title, kind, str(target), order, active), upload(app))
        for text, starts, ends, active, link in (
            ("全场包邮", "", "", True, "/articles/1"), ("双十一预告", "2020-01-01T00:00", "2999-01-01T00:00", True, ""),
            ("已过期", "", "2020-01-01T00:00", True, ""), ("未开始", "2999-01-01T00:00", "", True, ""),
            ("已下线", "", "", False, ""),
        ):
            content.create_announcement(db.session, admin_id, AnnouncementInput(text, link, starts, ends, active))

    html = client.get("/").get_data(as_text=True)
    assert banner_titles(html) == ["买洗衣液", "逛分类", "看文章"]
    assert banner_links(html) == [f"/products/{product_id}", f"/?category={category_id}", f"/articles/{published}"]
    assert sorted(notices(html)) == sorted(["全场包邮", "双十一预告"])
    assert '<a class="dq-notice__text" href="/articles/1">全场包邮</a>' in html
    # The catalog still renders under them, and its htmx fragments carry neither.
    assert "顶俏浓缩洗衣液" in html
    fragment = client.get(f"/?category={category_id}", headers=HX).get_data(as_text=True)
    assert "<html" not in fragment and "顶俏浓缩洗衣液" in fragment
    assert "dq-banner" not in fragment and "dq-notice" not in fragment


def test_the_home_cache_serves_an_admin_save_at_once_and_expires_after_its_ttl(app, admin_client, product_id,
                                                                               monkeypatch):
    app.config["HOME_CONTENT_CACHE_SECONDS"] = 5
    clock = [1000.0]
    monkeypatch.setattr("cachelib.simple.time", lambda: clock[0])  # the page cache's clock
    assert banner_titles(admin_client.get("/").get_data(as_text=True)) == []

    saved = post(admin_client, "/admin/content/banners/new", {"title": "新品首发", "target_kind": "product",
                                                               "target_id": str(product_id), "sort_order": "0",
                                                               "is_active": "1", "image": (io.BytesIO(png_bytes()), "a.png")})
    assert saved.status_code == 302
    assert banner_titles(admin_client.get("/").get_data(as_text=True)) == ["新品首发"]  # no wait in this process

    # A row written behind the services' back (no content version bumped): shown once the TTL has passed.
    with app.app_context():
        db.session.add(Announcement(text="别的进程保存的公告"))
        db.session.commit()
    clock[0] += 4.9
    assert notices(admin_client.get("/").get_data(as_text=True)) == []
    clock[0] += 0.2
    assert notices(admin_client.get("/").get_data(as_text=True)) == ["别的进程保存的公告"]


def test_a_load_that_raced_a_save_is_not_kept(app, client, admin_id, monkeypatch):
    real_load = content.load_home_content
    loads = []

    def load_while_an_admin_saves(session, now):
        result = real_load(session, now)
        if not loads:
            content.create_announcement(session, admin_id, AnnouncementInput("刚保存的公告"))
        loads.append(result)
        return result

    monkeypatch.setattr(content, "load_home_content", load_while_an_admin_saves)
    assert notices(client.get("/").get_data(as_text=True)) == []
    assert notices(client.get("/").get_data(as_text=True)) == ["刚保存的公告"]
    assert len(loads) == 2
    client.get("/")
    assert len(loads) == 2  # now it is cached


# --- the admin pages --------------------------------------------------------------------------------------

ADMIN_PAGES = ["/admin/content/", "/admin/content/banners", "/admin/content/banners/new", "/admin/content/articles",
               "/admin/content/articles/new", "/admin/content/announcements", "/admin/content/announcements/new"]


def test_admin_content_pages_need_an_admin(app, client, admin_id, product_id):
    with app.app_context():
        member_id = make_user("会员").id
    for path in ADMIN_PAGES:
        assert client.get(path).headers["Location"].startswith("/admin/login"), path
    log_in(client, member_id)
    for path in ADMIN_PAGES:
        assert client.get(path).headers["Location"].startswith("/admin/login"), path
    refused = post(client, "/admin/content/announcements/new", {"text": "会员想发的公告", "is_active": "1"})
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/admin/login")
    refused = post(client, "/admin/content/articles/images", {"image": (io.BytesIO(png_bytes()), "a.png")})
    assert refused.status_code == 302
    with app.app_context():
        assert count(Announcement) == 0 and content_actions() == []
    assert stored_files(app) == []

    log_in_admin(client, admin_id)
    for path in ADMIN_PAGES[1:]:
        page = client.get(path)
        assert page.status_code == 200 and "内容管理" in page.get_data(as_text=True), path


def test_every_admin_change_is_audited_and_a_change_to_nothing_is_not(app, admin_client, admin_id, product_id):
    banner_form = {"title": "横幅", "target_kind": "product", "target_id": str(product_id), "sort_order": "1",
                   "is_active": "1"}
    assert post(admin_client, "/admin/content/banners/new",
                {**banner_form, "image": (io.BytesIO(png_bytes()), "a.png")}).status_code == 302
    with app.app_context():
        banner_id = db.session.scalar(select(Banner.id))
    assert post(admin_client, f"/admin/content/banners/{banner_id}", {**banner_form, "title": "新横幅"}).status_code == 302
    assert post(admin_client, f"/admin/content/banners/{banner_id}", {**banner_form, "title": "新横幅"}).status_code == 302
    assert post(admin_client, f"/admin/content/banners/{banner_id}/deactivate", {}).status_code == 302
    assert post(admin_client, f"/admin/content/banners/{banner_id}/deactivate", {}).status_code == 302

    article_form = {"kind": "product", "title": "文章", "summary": "", "body_html": "<p>一</p>",
                    "product_id": str(product_id), "is_published": "1"}
    assert post(admin_client, "/admin/content/articles/new", article_form).status_code == 302
    with app.app_context():
        article_id = db.session.scalar(select(Article.id))
    assert post(admin_client, f"/admin/content/articles/{article_id}",
                {**article_form, "body_html": "<p>一二三</p>"}).status_code == 302
    assert post(admin_client, f"/admin/content/articles/{article_id}/unpublish", {}).status_code == 302
    uploaded = post(admin_client, "/admin/content/articles/images", {"image": (io.BytesIO(png_bytes()), "a.png")})
    assert uploaded.status_code == 200

    notice_form = {"text": "公告", "link": "", "starts_at": "", "ends_at": "", "is_active": "1"}
    assert post(admin_client, "/admin/content/announcements/new", notice_form).status_code == 302
    with app.app_context():
        notice_id = db.session.scalar(select(Announcement.id))
    assert post(admin_client, f"/admin/content/announcements/{notice_id}",
                {**notice_form, "ends_at": "2999-01-01T08:00"}).status_code == 302
    assert post(admin_client, f"/admin/content/announcements/{notice_id}/deactivate", {}).status_code == 302

    with app.app_context():
        assert content_actions() == [
            "content.banner.create", "content.banner.update", "content.banner.deactivate",
            "content.article.create", "content.article.update", "content.article.unpublish", "content.image.upload",
            "content.announcement.create", "content.announcement.update", "content.announcement.deactivate",
        ]
        rows = db.session.scalars(select(AuditLog).where(AuditLog.action.like("content.%")).order_by(AuditLog.id)).all()
        assert {(row.actor_kind, row.actor_id) for row in rows} == {("admin", admin_id)}
        detail = {row.action: json.loads(row.detail) for row in rows}
        assert detail["content.banner.update"] == {"title": ["横幅", "新横幅"]}
        assert detail["content.article.update"] == {"body_chars": [8, 10]}
        assert detail["content.announcement.update"] == {"ends_at": [None, "2999-01-01T00:00:00"]}
        assert detail["content.banner.deactivate"] == {"is_active": [True, False]}
        assert verify_audit_chain(db.session) is None
        assert db.session.get(Banner, banner_id).is_active is False
        assert db.session.get(Article, article_id).is_published is False

    with app.app_context():
        with pytest.raises(NotFound):
            content.deactivate_banner(db.session, admin_id, banner_id + 100)


def test_a_refused_form_keeps_what_was_typed_and_says_why_in_chinese(app, admin_client, product_id):
    page = post(admin_client, "/admin/content/banners/new", {
        "title": "双十一", "target_kind": "product", "target_id": "424242", "sort_order": "7", "is_active": "1",
        "image": (io.BytesIO(png_bytes()), "a.png")})
    html = page.get_data(as_text=True)
    assert page.status_code == 400 and "跳转目标不存在：没有编号为 424242 的商品" in html
    assert 'value="双十一"' in html and 'value="424242"' in html and 'value="7"' in html
    assert stored_files(app) == []
    bad_link = post(admin_client, "/admin/content/announcements/new",
                    {"text": "活动", "link": "javascript:alert(1)", "is_active": "1"})
    assert bad_link.status_code == 400 and "公告链接只能是本站路径" in bad_link.get_data(as_text=True)
    with app.app_context():
        assert count(Banner) == 0 and count(Announcement) == 0 and content_actions() == []


def field_error(html: str, name: str) -> str | None:
    """The refusal shown right after the input (or select, textarea) named ``name``, if any."""
    found = re.search(rf'name="{name}"[^>]*>(?:[^<]*</(?:select|textarea)>)?\s*'
                      r'<span class="dq-field-error"[^>]*>([^<]+)</span>', html)
    return found.group(1) if found else None


def test_each_refusal_is_shown_under_its_field_with_what_was_typed(app, admin_client, product_id):
    page = post(admin_client, "/admin/content/banners/new", {
        "title": "双十一", "target_kind": "product", "target_id": "424242", "sort_order": "7", "is_active": "1",
        "image": (io.BytesIO(png_bytes()), "a.png")})
    html = page.get_data(as_text=True)
    assert field_error(html, "target_id") == "跳转目标不存在：没有编号为 424242 的商品。"
    assert field_error(html, "title") is None and 'name="is_active" value="1" checked' in html
    no_image = post(admin_client, "/admin/content/banners/new", {"title": "无图", "target_kind": "product",
                                                                  "target_id": str(product_id)})
    assert no_image.status_code == 400
    assert field_error(no_image.get_data(as_text=True), "image") == "请上传横幅图片。"
    article = post(admin_client, "/admin/content/articles/new", {"kind": "brand", "title": "  ",
                                                                  "body_html": "<p>正文</p>"})
    html = article.get_data(as_text=True)
    assert article.status_code == 400 and field_error(html, "title") == "文章标题需为 1 到 128 个字。"
    assert "&lt;p&gt;正文&lt;/p&gt;</textarea>" in html
    late = post(admin_client, "/admin/content/announcements/new", {"text": "活动", "starts_at": "2026-11-05T09:30",
                                                                    "ends_at": "2026-11-05T09:00"})
    html = late.get_data(as_text=True)
    assert field_error(html, "ends_at") == "结束时间需晚于开始时间。" and 'value="2026-11-05T09:30"' in html
    with app.app_context():
        assert count(Banner) == 0 and count(Article) == 0 and count(Announcement) == 0


# --- images -----------------------------------------------------------------------------------------------

@pytest.fixture
def save_image_calls(monkeypatch):
    """Records each call to uploads.save_image made by the content service, and lets it run."""
    calls = []
    real = content.save_image

    def spy(stream, folder, kind, max_bytes):
        saved = real(stream, folder, kind, max_bytes)
        calls.append((kind, saved.path))
        return saved

    monkeypatch.setattr(content, "save_image", spy)
    return calls


def test_banner_and_cover_images_are_re_encoded_by_save_image(app, admin_client, product_id, save_image_calls):
    assert post(admin_client, "/admin/content/banners/new", {
        "title": "横幅", "target_kind": "product", "target_id": str(product_id), "is_active": "1",
        "image": (io.BytesIO(png_bytes()), "banner.png")}).status_code == 302
    assert post(admin_client, "/admin/content/articles/new", {
        "kind": "brand", "title": "品牌", "is_published": "1",
        "cover": (io.BytesIO(png_bytes()), "cover.png")}).status_code == 302
    with app.app_context():
        banner_path = db.session.scalar(select(Banner.image_path))
        cover_path = db.session.scalar(select(Article.cover_path))
    assert save_image_calls == [("banners", banner_path), ("articles", cover_path)]
    for path in (banner_path, cover_path):
        assert path.endswith(".jpg")  # our own JPEG, not the uploaded PNG's bytes
        served = admin_client.get(f"/media/{path}")
        assert served.status_code == 200 and served.mimetype == "image/jpeg"


def test_an_article_image_upload_returns_a_media_address_the_sanitiser_accepts(app, admin_client, save_image_calls):
    response = post(admin_client, "/admin/content/articles/images", {"image": (io.BytesIO(png_bytes()), "x.png")},
                    headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html and 'id="uploaded-image"' in html
    (kind, path), = save_image_calls
    url = f"/media/{path}"
    assert kind == "articles" and f'value="{url}"' in html
    assert sanitize_html(f'<img src="{url}" alt="">') == f'<img src="{url}" alt="">'
    assert admin_client.get(url).mimetype == "image/jpeg"
    whole = post(admin_client, "/admin/content/articles/images", {"image": (io.BytesIO(png_bytes()), "y.png")})
    assert "<html" in whole.get_data(as_text=True) and "/media/articles/" in whole.get_data(as_text=True)


@pytest.mark.parametrize(("path", "field", "form"), [
    ("/admin/content/banners/new", "image", {"title": "横幅", "target_kind": "product", "is_active": "1"}),
    ("/admin/content/articles/new", "cover", {"kind": "brand", "title": "品牌"}),
    ("/admin/content/articles/images", "image", {}),
])
def test_a_non_image_upload_is_refused_in_chinese_and_nothing_is_saved(app, admin_client, product_id, path, field,
                                                                        form):
    form = {**form, "target_id": str(product_id)} if "target_kind" in form else form
    fake = (io.BytesIO(b"<html><script>alert(1)</script></html>"), "photo.png")
    response = post(admin_client, path, {**form, field: fake})
    assert response.status_code == 400
    assert "无法识别的图片文件" in response.get_data(as_text=True)
    assert stored_files(app) == []
    with app.app_context():
        assert count(Banner) == 0 and count(Article) == 0 and content_actions() == []


def test_a_banner_edit_without_a_new_image_keeps_the_old_one(app, admin_id, product_id):
    with app.app_context():
        banner = content.create_banner(db.session, admin_id, BannerInput("横幅", "product", str(product_id)),
                                       upload(app))
        old_path = banner.image_path
        content.update_banner(db.session, admin_id, banner.id, BannerInput("改名", "product", str(product_id)))
        assert db.session.get(Banner, banner.id).image_path == old_path
        content.update_banner(db.session, admin_id, banner.id, BannerInput("改名", "product", str(product_id)),
                              upload(app, png_bytes(color=(0, 0, 255))))
        new_path = db.session.get(Banner, banner.id).image_path
        assert new_path != old_path and (Path(app.config["UPLOAD_FOLDER"]) / new_path).is_file()
