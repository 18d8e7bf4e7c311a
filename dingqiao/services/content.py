"""内容营销与品牌展示: home-page banners, brand and product articles, announcements (公告).

Article bodies are sanitised with nh3 when they are saved, never at display time: the stored HTML keeps only
a few formatting tags, links to http(s) or relative addresses, and images from our own ``/media/`` path, so a
page may render it as it is.

The shop's home page reads its banners and announcements through ``home_content``, which keeps them in this
process for a few seconds (``HOME_CACHE_SECONDS``, or the TTL the caller passes). Every save here clears the
cache of the process that made it, so the admin who saved sees the change at once. With several gunicorn
workers the other workers keep what they loaded until their copy is older than the TTL: they show a change
within the TTL, never later. An announcement's start and end times are honoured to within the TTL as well.
"""
import re
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Callable
from urllib.parse import urlsplit

import nh3
from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import Announcement, Article, ArticleKind, Banner, BannerTarget, Category, Product
from ..models.base import utcnow
from ..uploads import SavedImage, removed_on_failure, save_image
from . import DomainError, NotFound
from .audit import record_audit
from .periods import CHINA, to_utc

HOME_CACHE_SECONDS = 30.0

# Where blueprints/media.py serves the uploads folder; the only place article images may come from.
MEDIA_URL_PREFIX = "/media/"

ALLOWED_TAGS = {"p", "br", "strong", "em", "b", "i", "u", "h2", "h3", "h4", "ul", "ol", "li", "blockquote", "a", "img"}
ALLOWED_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt", "width", "height"}}
# One path segment: no empty segment (//), no "." or ".." segment, nothing but plain file-name characters.
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
_MEDIA_SRC = re.compile(re.escape(MEDIA_URL_PREFIX) + rf"(?:{_SEGMENT}/)*{_SEGMENT}")
_DIMENSION = re.compile(r"[0-9]{1,4}")
# An <img> as nh3 writes it: every attribute double-quoted, quotes inside values escaped.
_IMG_TAG = re.compile(r'<img((?:\s+[\w-]+="[^"]*")*)\s*/?>')
_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only ("²".isdigit() is True)
MAX_ID = 10**18 - 1

MAX_ANNOUNCEMENT_LENGTH = 200
MAX_LINK_LENGTH = 256
MAX_BODY_LENGTH = 100_000


class ContentError(DomainError):
    pass


@dataclass(frozen=True)
class ImageUpload:
    """An uploaded file as the view received it, and where and how large images may be stored."""

    stream: BinaryIO
    folder: str
    max_bytes: int


@dataclass(frozen=True)
class BannerInput:
    title: str
    target_kind: str
    target_id: str
    sort_order: str = "0"
    is_active: bool = True


@dataclass(frozen=True)
class ArticleInput:
    kind: str
    title: str
    summary: str = ""
    body_html: str = ""
    product_id: str = ""  # empty: not about one product
    is_published: bool = False


@dataclass(frozen=True)
class AnnouncementInput:
    text: str
    link: str = ""
    starts_at: str = ""  # China time as a datetime-local input sends it ("2026-11-05T09:30"); empty: no limit
    ends_at: str = ""
    is_active: bool = True


# --- sanitising -------------------------------------------------------------------------------------------

def _allowed_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        return value if _MEDIA_SRC.fullmatch(value) else None
    if tag == "img" and attribute in ("width", "height"):
        return value if _DIMENSION.fullmatch(value) else None
    return value


def sanitize_html(html: str) -> str:
    """The article HTML we store: allowed tags and attributes only; script and style dropped with their
    content; links only to http, https or relative addresses (nh3 drops every other scheme, javascript:
    among them); images only from our own /media/ path (an image without a src left is dropped)."""
    cleaned = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_allowed_attribute,
        url_schemes={"http", "https"},
        strip_comments=True,
    )
    # An <img> whose src was refused would show as a broken image: remove it altogether.
    return _IMG_TAG.sub(lambda tag: tag.group(0) if ' src="' in tag.group(1) else "", cleaned)


# --- parsing the admin's input ----------------------------------------------------------------------------

def _one_line(raw: str) -> str:
    return " ".join((raw or "").split())


def _number(raw: str, message: str, *, low: int, high: int) -> int:
    text = (raw or "").strip()
    if not _INTEGER.fullmatch(text) or not low <= int(text) <= high:
        raise ContentError(message)
    return int(text)


def _china_time(raw: str, label: str) -> datetime | None:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M")
    except ValueError:
        raise ContentError(f"{label}格式不正确，请重新选择日期和时间。") from None
    return to_utc(moment.replace(tzinfo=CHINA))


def clean_link(raw: str) -> str:
    """An announcement's link: a path inside the site ("/articles/3") or an https:// address; empty: none."""
    link = (raw or "").strip()
    if not link:
        return ""
    message = "公告链接只能是本站路径（以 / 开头）或 https:// 开头的网址。"
    if len(link) > MAX_LINK_LENGTH or "\\" in link or any(ch.isspace() or not ch.isprintable() for ch in link):
        raise ContentError(message)
    if link.startswith("/"):
        if link.startswith("//"):  # "//host/…" leaves the site
            raise ContentError(message)
        return link
    try:
        parts = urlsplit(link)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed "[" of an IPv6 host
        raise ContentError(message) from None
    if parts.scheme != "https" or not host:
        raise ContentError(message)
    return link


def _banner_values(form: BannerInput) -> dict:
    title = _one_line(form.title)
    if not 1 <= len(title) <= 64:
        raise ContentError("横幅标题需为 1 到 64 个字。")
    if form.target_kind not in set(BannerTarget):
        raise ContentError("请选择横幅跳转到商品、分类还是文章。")
    target_id = _number(form.target_id, "请填写跳转目标的编号（正整数）。", low=1, high=MAX_ID)
    sort_order = _number(form.sort_order or "0", "排序需为 -9999 到 9999 的整数。", low=-9999, high=9999)
    return {"title": title, "target_kind": form.target_kind, "target_id": target_id, "sort_order": sort_order,
            "is_active": bool(form.is_active)}


def _check_target(session: Session, kind: str, target_id: int) -> None:
    """The banner's target is a plain id (it may name one of three tables), so no foreign key checks it."""
    model, label = {BannerTarget.PRODUCT: (Product, "商品"), BannerTarget.CATEGORY: (Category, "分类"),
                    BannerTarget.ARTICLE: (Article, "文章")}[BannerTarget(kind)]
    if session.get(model, target_id) is None:
        raise ContentError(f"跳转目标不存在：没有编号为 {target_id} 的{label}。")


def _article_values(form: ArticleInput) -> dict:
    if form.kind not in set(ArticleKind):
        raise ContentError("请选择文章类型：品牌故事或产品故事。")
    title = _one_line(form.title)
    if not 1 <= len(title) <= 128:
        raise ContentError("文章标题需为 1 到 128 个字。")
    summary = _one_line(form.summary)
    if len(summary) > 256:
        raise ContentError("摘要最多 256 个字。")
    if len(form.body_html or "") > MAX_BODY_LENGTH:
        raise ContentError("正文太长，请拆成几篇文章。")
    product_id = None
    if (form.product_id or "").strip():
        product_id = _number(form.product_id, "关联商品的编号需为正整数。", low=1, high=MAX_ID)
    return {"kind": form.kind, "title": title, "summary": summary, "body_html": sanitize_html(form.body_html or ""),
            "product_id": product_id, "is_published": bool(form.is_published)}


def _check_product(session: Session, product_id: int | None) -> None:
    # Checked here for a Chinese message; the foreign key would refuse it too, as an error page.
    if product_id is not None and session.get(Product, product_id) is None:
        raise ContentError(f"没有编号为 {product_id} 的商品。")


def _announcement_values(form: AnnouncementInput) -> dict:
    text = _one_line(form.text)
    if not 1 <= len(text) <= MAX_ANNOUNCEMENT_LENGTH:
        raise ContentError(f"公告内容需为 1 到 {MAX_ANNOUNCEMENT_LENGTH} 个字。")
    starts_at, ends_at = _china_time(form.starts_at, "开始时间"), _china_time(form.ends_at, "结束时间")
    if starts_at and ends_at and ends_at <= starts_at:
        raise ContentError("结束时间需晚于开始时间。")
    return {"text": text, "link": clean_link(form.link), "starts_at": starts_at, "ends_at": ends_at,
            "is_active": bool(form.is_active)}


# --- images -----------------------------------------------------------------------------------------------

def _store_image(image: ImageUpload | None, kind: str) -> SavedImage | None:
    return save_image(image.stream, image.folder, kind, image.max_bytes) if image is not None else None


def _kept_only_if_saved(image: ImageUpload | None, saved: SavedImage | None):
    """Around the write that uses a stored image: when it fails, the file goes too."""
    return removed_on_failure(image.folder if image is not None else "", [saved])


def upload_article_image(session: Session, admin_id: int, image: ImageUpload) -> SavedImage:
    """An image for an article's body; the admin pastes its /media/ address into the text."""
    saved = _store_image(image, "articles")
    with _kept_only_if_saved(image, saved), write_transaction(session):
        record_audit(session, actor_kind="admin", actor_id=admin_id, action="content.image.upload",
                     target_type="media", target_id=saved.path, detail={"width": saved.width, "height": saved.height})
    return saved


# --- writing ----------------------------------------------------------------------------------------------

def _audit_value(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _created(values: dict) -> dict:
    """What a new row holds, for the audit; the article body by its length only."""
    detail = {name: _audit_value(value) for name, value in values.items() if name != "body_html"}
    if "body_html" in values:
        detail["body_chars"] = len(values["body_html"])
    return detail


def _changes(row, values: dict) -> dict:
    """Field → [before, after] for what differs, for the audit; the article body by its length only."""
    changed = {}
    for name, after in values.items():
        before = getattr(row, name)
        if before == after:
            continue
        if name == "body_html":
            changed["body_chars"] = [len(before or ""), len(after)]
        else:
            changed[name] = [_audit_value(before), _audit_value(after)]
    return changed


def _locked(session: Session, model, row_id: int, missing: str):
    # Locked on Postgres, so the audit's "before" values are the ones this update replaces.
    row = session.scalar(select(model).where(model.id == row_id).with_for_update()
                         .execution_options(populate_existing=True))
    if row is None:
        raise NotFound(missing)
    return row


def _audit(session: Session, admin_id: int, thing: str, verb: str, row_id: int, detail: dict) -> None:
    record_audit(session, actor_kind="admin", actor_id=admin_id, action=f"content.{thing}.{verb}",
                 target_type=thing, target_id=row_id, detail=detail)


def _apply(row, values: dict) -> dict:
    """Write ``values`` into ``row``; return what changed (empty: nothing to save or audit)."""
    changed = _changes(row, values)
    if changed:
        for name, value in values.items():
            setattr(row, name, value)
        if hasattr(row, "updated_at"):
            row.updated_at = utcnow()
    return changed


def create_banner(session: Session, admin_id: int, form: BannerInput, image: ImageUpload | None) -> Banner:
    if image is None:
        raise ContentError("请上传横幅图片。")
    values = _banner_values(form)
    saved = _store_image(image, "banners")
    values["image_path"] = saved.path
    with _kept_only_if_saved(image, saved), write_transaction(session):
        _check_target(session, values["target_kind"], values["target_id"])
        banner = Banner(**values)
        session.add(banner)
        session.flush()
        _audit(session, admin_id, "banner", "create", banner.id, _created(values))
    home_cache.invalidate(session)
    return banner


def update_banner(session: Session, admin_id: int, banner_id: int, form: BannerInput,
                  image: ImageUpload | None = None) -> Banner:
    """Save the form; a new image replaces the old one, no image keeps it."""
    values = _banner_values(form)
    saved = _store_image(image, "banners")
    if saved is not None:
        values["image_path"] = saved.path
    with _kept_only_if_saved(image, saved), write_transaction(session):
        _check_target(session, values["target_kind"], values["target_id"])
        banner = _locked(session, Banner, banner_id, "横幅不存在。")
        if changed := _apply(banner, values):
            _audit(session, admin_id, "banner", "update", banner.id, changed)
    home_cache.invalidate(session)
    return banner


def deactivate_banner(session: Session, admin_id: int, banner_id: int) -> None:
    _switch_off(session, admin_id, Banner, "is_active", banner_id, "banner", "deactivate", "横幅不存在。")


def create_article(session: Session, admin_id: int, form: ArticleInput, cover: ImageUpload | None = None) -> Article:
    values = _article_values(form)
    saved = _store_image(cover, "articles")
    values["cover_path"] = saved.path if saved else None
    with _kept_only_if_saved(cover, saved), write_transaction(session):
        _check_product(session, values["product_id"])
        article = Article(**values)
        session.add(article)
        session.flush()
        _audit(session, admin_id, "article", "create", article.id, _created(values))
    home_cache.invalidate(session)
    return article


def update_article(session: Session, admin_id: int, article_id: int, form: ArticleInput,
                   cover: ImageUpload | None = None) -> Article:
    """Save the form; a new cover replaces the old one, no cover keeps it."""
    values = _article_values(form)
    saved = _store_image(cover, "articles")
    if saved is not None:
        values["cover_path"] = saved.path
    with _kept_only_if_saved(cover, saved), write_transaction(session):
        _check_product(session, values["product_id"])
        article = _locked(session, Article, article_id, "文章不存在。")
        if changed := _apply(article, values):
            _audit(session, admin_id, "article", "update", article.id, changed)
    # A banner pointing at this article shows only while it is published.
    home_cache.invalidate(session)
    return article


def unpublish_article(session: Session, admin_id: int, article_id: int) -> None:
    _switch_off(session, admin_id, Article, "is_published", article_id, "article", "unpublish", "文章不存在。")


def create_announcement(session: Session, admin_id: int, form: AnnouncementInput) -> Announcement:
    values = _announcement_values(form)
    with write_transaction(session):
        announcement = Announcement(**values)
        session.add(announcement)
        session.flush()
        _audit(session, admin_id, "announcement", "create", announcement.id, _created(values))
    home_cache.invalidate(session)
    return announcement


def update_announcement(session: Session, admin_id: int, announcement_id: int,
                        form: AnnouncementInput) -> Announcement:
    values = _announcement_values(form)
    with write_transaction(session):
        announcement = _locked(session, Announcement, announcement_id, "公告不存在。")
        if changed := _apply(announcement, values):
            _audit(session, admin_id, "announcement", "update", announcement.id, changed)
    home_cache.invalidate(session)
    return announcement


def deactivate_announcement(session: Session, admin_id: int, announcement_id: int) -> None:
    _switch_off(session, admin_id, Announcement, "is_active", announcement_id, "announcement", "deactivate",
                "公告不存在。")


def _switch_off(session: Session, admin_id: int, model, flag: str, row_id: int, thing: str, verb: str,
                missing: str) -> None:
    """Turn a flag off with a conditional UPDATE: already off is no change and no audit row."""
    values = {flag: False, **({"updated_at": utcnow()} if hasattr(model, "updated_at") else {})}
    with write_transaction(session):
        switched = session.execute(
            update(model).where(model.id == row_id, getattr(model, flag).is_(True)).values(values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not switched:
            if session.get(model, row_id) is None:
                raise NotFound(missing)
            return
        _audit(session, admin_id, thing, verb, row_id, {flag: [True, False]})
    home_cache.invalidate(session)


# --- reading ----------------------------------------------------------------------------------------------

def published_articles(session: Session) -> list[Article]:
    """Brand stories first, then product stories; newest first within each."""
    brand_first = case((Article.kind == ArticleKind.BRAND, 0), else_=1)
    return list(session.scalars(
        select(Article).where(Article.is_published.is_(True)).order_by(brand_first, Article.id.desc())
    ))


def published_article(session: Session, article_id: int) -> Article:
    article = session.get(Article, article_id)
    if article is None or not article.is_published:
        raise NotFound("文章不存在或已下线。")
    return article


@dataclass(frozen=True)
class HomeBanner:
    id: int
    title: str
    image_path: str
    target_kind: str
    target_id: int


@dataclass(frozen=True)
class HomeAnnouncement:
    id: int
    text: str
    link: str


@dataclass(frozen=True)
class HomeContent:
    banners: tuple[HomeBanner, ...]
    announcements: tuple[HomeAnnouncement, ...]


def load_home_content(session: Session, now: datetime) -> HomeContent:
    """Active banners in their order, leaving out those whose target members cannot open (a product off
    sale, an inactive category, an unpublished article); active announcements inside their dates."""
    banners = session.scalars(
        select(Banner).where(Banner.is_active.is_(True)).order_by(Banner.sort_order, Banner.id)
    ).all()
    wanted = {kind: {b.target_id for b in banners if b.target_kind == kind} for kind in BannerTarget}
    visible = {
        BannerTarget.PRODUCT: set(session.scalars(select(Product.id).where(
            Product.id.in_(wanted[BannerTarget.PRODUCT]), Product.is_on_sale.is_(True)))),
        BannerTarget.CATEGORY: set(session.scalars(select(Category.id).where(
            Category.id.in_(wanted[BannerTarget.CATEGORY]), Category.is_active.is_(True)))),
        BannerTarget.ARTICLE: set(session.scalars(select(Article.id).where(
            Article.id.in_(wanted[BannerTarget.ARTICLE]), Article.is_published.is_(True)))),
    }
    announcements = session.scalars(
        select(Announcement)
        .where(Announcement.is_active.is_(True),
               or_(Announcement.starts_at.is_(None), Announcement.starts_at <= now),
               or_(Announcement.ends_at.is_(None), Announcement.ends_at > now))
        .order_by(Announcement.id.desc())
    ).all()
    return HomeContent(
        tuple(HomeBanner(b.id, b.title, b.image_path, b.target_kind, b.target_id)
              for b in banners if b.target_id in visible[BannerTarget(b.target_kind)]),
        tuple(HomeAnnouncement(a.id, a.text, a.link) for a in announcements),
    )


@dataclass
class _Slot:
    generation: int = 0  # bumped by every invalidation
    content: HomeContent | None = None
    loaded_at: float = 0.0


class HomeContentCache:
    """The home page's content, kept per database engine: one engine per app, and tests build many apps in
    one process, each with its own database. ``clock`` gives monotonic seconds; tests replace it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, session: Session, ttl_seconds: float) -> HomeContent:
        started = self.clock()
        with self._lock:
            slot = self._slots.setdefault(session.get_bind(), _Slot())
            if slot.content is not None and started - slot.loaded_at < ttl_seconds:
                return slot.content
            generation = slot.generation
        content = load_home_content(session, utcnow())
        with self._lock:
            # A save committed while this was loading may be missing from it: then do not keep it.
            if slot.generation == generation:
                slot.content, slot.loaded_at = content, started
        return content

    def invalidate(self, session: Session) -> None:
        with self._lock:
            slot = self._slots.setdefault(session.get_bind(), _Slot())
            slot.generation += 1
            slot.content = None


home_cache = HomeContentCache()


def home_content(session: Session, ttl_seconds: float = HOME_CACHE_SECONDS) -> HomeContent:
    return home_cache.get(session, ttl_seconds)
