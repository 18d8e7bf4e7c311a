"""内容营销与品牌展示: home-page banners, brand and product articles, announcements (公告) — written by admins.

The three are saved the same way, written once here: each is a ``ContentKind`` (its model, how its form is read
and checked, its image column, the flag that takes it off the site), and ``create`` / ``update`` / ``switch_off``
take the kind. Every write is one transaction with its audit row and a bump of the content version
(services/cache_versions.py), so the shop's home page in every worker shows it with the next request. An
uploaded image is stored before the transaction and deleted again if the write fails. Article bodies are
sanitised on save (services/content_html.py); reading is services/content_reading.py.
"""
import re
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Callable
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..china_time import CHINA_TIME
from ..db import write_transaction
from ..models import Announcement, Article, ArticleKind, Banner, BannerTarget, Category, Product
from ..models.base import utcnow
from ..uploads import SavedImage, removed_on_failure, save_image
from . import DomainError, NotFound, cache_versions
from .audit import record_audit
from .content_html import MEDIA_URL_PREFIX, sanitize_html  # noqa: F401  (part of this module's interface)
from .content_reading import (  # noqa: F401  (part of this module's interface)
    HomeAnnouncement,
    HomeBanner,
    HomeContent,
    admin_page,
    article_product,
    form_choices,
    load_home_content,
    published_article,
    published_articles,
)
from .periods import to_utc

_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only ("²".isdigit() is True)
MAX_ID = 10**18 - 1

MAX_ANNOUNCEMENT_LENGTH = 200
MAX_LINK_LENGTH = 256
MAX_BODY_LENGTH = 100_000


class ContentError(DomainError):
    """A refusal the admin can fix in the form; ``field`` names the form field it is about (None: the form)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message, field=field)


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


# --- reading the admin's input ----------------------------------------------------------------------------

def _one_line(raw: str) -> str:
    return " ".join((raw or "").split())


def _number(raw: str, message: str, field: str, *, low: int, high: int) -> int:
    text = (raw or "").strip()
    if not _INTEGER.fullmatch(text) or not low <= int(text) <= high:
        raise ContentError(message, field)
    return int(text)


def _china_time(raw: str, label: str, field: str) -> datetime | None:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M")
    except ValueError:
        raise ContentError(f"{label}格式不正确，请重新选择日期和时间。", field) from None
    return to_utc(moment.replace(tzinfo=CHINA_TIME))


def clean_link(raw: str) -> str:
    """An announcement's link: a path inside the site ("/articles/3") or an https:// address; empty: none."""
    link = (raw or "").strip()
    if not link:
        return ""
    refused = ContentError("公告链接只能是本站路径（以 / 开头）或 https:// 开头的网址。", "link")
    if len(link) > MAX_LINK_LENGTH or "\\" in link or any(ch.isspace() or not ch.isprintable() for ch in link):
        raise refused
    if link.startswith("/"):
        if link.startswith("//"):  # "//host/…" leaves the site
            raise refused
        return link
    try:
        parts = urlsplit(link)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed "[" of an IPv6 host
        raise refused from None
    if parts.scheme != "https" or not host:
        raise refused
    return link


def _banner_values(form: BannerInput) -> dict:
    title = _one_line(form.title)
    if not 1 <= len(title) <= 64:
        raise ContentError("横幅标题需为 1 到 64 个字。", "title")
    if form.target_kind not in set(BannerTarget):
        raise ContentError("请选择横幅跳转到商品、分类还是文章。", "target_kind")
    target_id = _number(form.target_id, "请填写跳转目标的编号（正整数）。", "target_id", low=1, high=MAX_ID)
    sort_order = _number(form.sort_order or "0", "排序需为 -9999 到 9999 的整数。", "sort_order", low=-9999, high=9999)
    return {"title": title, "target_kind": form.target_kind, "target_id": target_id, "sort_order": sort_order,
            "is_active": bool(form.is_active)}


def _check_target(session: Session, values: dict) -> None:
    """The banner's target is a plain id (it may name one of three tables), so no foreign key checks it."""
    model, label = {BannerTarget.PRODUCT: (Product, "商品"), BannerTarget.CATEGORY: (Category, "分类"),
                    BannerTarget.ARTICLE: (Article, "文章")}[BannerTarget(values["target_kind"])]
    if session.get(model, values["target_id"]) is None:
        raise ContentError(f"跳转目标不存在：没有编号为 {values['target_id']} 的{label}。", "target_id")


def _article_values(form: ArticleInput) -> dict:
    if form.kind not in set(ArticleKind):
        raise ContentError("请选择文章类型：品牌故事或产品故事。", "kind")
    title = _one_line(form.title)
    if not 1 <= len(title) <= 128:
        raise ContentError("文章标题需为 1 到 128 个字。", "title")
    summary = _one_line(form.summary)
    if len(summary) > 256:
        raise ContentError("摘要最多 256 个字。", "summary")
    if len(form.body_html or "") > MAX_BODY_LENGTH:
        raise ContentError("正文太长，请拆成几篇文章。", "body_html")
    product_id = None
    if (form.product_id or "").strip():
        product_id = _number(form.product_id, "关联商品的编号需为正整数。", "product_id", low=1, high=MAX_ID)
    return {"kind": form.kind, "title": title, "summary": summary, "body_html": sanitize_html(form.body_html or ""),
            "product_id": product_id, "is_published": bool(form.is_published)}


def _check_product(session: Session, values: dict) -> None:
    # Checked here for a Chinese message; the foreign key would refuse it too, as an error page.
    product_id = values["product_id"]
    if product_id is not None and session.get(Product, product_id) is None:
        raise ContentError(f"没有编号为 {product_id} 的商品。", "product_id")


def _announcement_values(form: AnnouncementInput) -> dict:
    text = _one_line(form.text)
    if not 1 <= len(text) <= MAX_ANNOUNCEMENT_LENGTH:
        raise ContentError(f"公告内容需为 1 到 {MAX_ANNOUNCEMENT_LENGTH} 个字。", "text")
    starts_at = _china_time(form.starts_at, "开始时间", "starts_at")
    ends_at = _china_time(form.ends_at, "结束时间", "ends_at")
    if starts_at and ends_at and ends_at <= starts_at:
        raise ContentError("结束时间需晚于开始时间。", "ends_at")
    return {"text": text, "link": clean_link(form.link), "starts_at": starts_at, "ends_at": ends_at,
            "is_active": bool(form.is_active)}


# --- the three kinds --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContentKind:
    model: type
    thing: str  # in audit actions ("content.banner.create") and as the audit's target type
    missing: str  # when the row to change is gone
    values: Callable[..., dict]  # the form's input → column values, or ContentError
    check: Callable[[Session, dict], None]  # what needs the database (targets exist), or ContentError
    off_flag: str  # the column switch_off turns off
    off_verb: str
    image_column: str | None = None  # where an uploaded image's path goes; the form's file field is "image_field"
    image_field: str = "image"
    image_required: str | None = None  # refusal when a new one comes without an image


BANNER = ContentKind(Banner, "banner", "横幅不存在。", _banner_values, _check_target, "is_active", "deactivate",
                     "image_path", "image", "请上传横幅图片。")
ARTICLE = ContentKind(Article, "article", "文章不存在。", _article_values, _check_product, "is_published", "unpublish",
                      "cover_path", "cover")
ANNOUNCEMENT = ContentKind(Announcement, "announcement", "公告不存在。", _announcement_values,
                           lambda session, values: None, "is_active", "deactivate")


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


def _apply(row, values: dict) -> dict:
    """Write ``values`` into ``row``; return field → [before, after] for what changed (empty: nothing to save or
    audit), the article body by its length only."""
    changed = {}
    for name, after in values.items():
        before = getattr(row, name)
        if before != after:
            changed["body_chars" if name == "body_html" else name] = (
                [len(before or ""), len(after)] if name == "body_html" else [_audit_value(before), _audit_value(after)])
    if changed:
        for name, value in values.items():
            setattr(row, name, value)
        if hasattr(row, "updated_at"):
            row.updated_at = utcnow()
    return changed


def _saved(session: Session, admin_id: int, kind: ContentKind, verb: str, row_id: int, detail: dict) -> None:
    """What every content write ends with, inside its transaction: the audit row and the new content version."""
    record_audit(session, actor_kind="admin", actor_id=admin_id, action=f"content.{kind.thing}.{verb}",
                 target_type=kind.thing, target_id=row_id, detail=detail)
    cache_versions.bump(session, cache_versions.CONTENT)


def for_edit(session: Session, kind: ContentKind, row_id: int):
    row = session.get(kind.model, row_id)
    if row is None:
        raise NotFound(kind.missing)
    return row


def create(session: Session, admin_id: int, kind: ContentKind, form, image: ImageUpload | None = None):
    if image is None and kind.image_required:
        raise ContentError(kind.image_required, kind.image_field)
    values = kind.values(form)
    saved = _store_image(image, f"{kind.thing}s")
    if kind.image_column:
        values[kind.image_column] = saved.path if saved else None
    with _kept_only_if_saved(image, saved), write_transaction(session):
        kind.check(session, values)
        row = kind.model(**values)
        session.add(row)
        session.flush()
        _saved(session, admin_id, kind, "create", row.id, _created(values))
    return row


def update_row(session: Session, admin_id: int, kind: ContentKind, row_id: int, form,
               image: ImageUpload | None = None):
    """Save the form; a new image replaces the old one, no image keeps it. Nothing changed: nothing written."""
    values = kind.values(form)
    saved = _store_image(image, f"{kind.thing}s")
    if saved is not None:
        values[kind.image_column] = saved.path
    with _kept_only_if_saved(image, saved), write_transaction(session):
        kind.check(session, values)
        # Locked on Postgres, so the audit's "before" values are the ones this update replaces.
        row = session.scalar(select(kind.model).where(kind.model.id == row_id).with_for_update()
                             .execution_options(populate_existing=True))
        if row is None:
            raise NotFound(kind.missing)
        if changed := _apply(row, values):
            _saved(session, admin_id, kind, "update", row.id, changed)
    return row


def switch_off(session: Session, admin_id: int, kind: ContentKind, row_id: int) -> None:
    """Take it off the site with a conditional UPDATE: already off is no change and no audit row."""
    model, flag = kind.model, kind.off_flag
    values = {flag: False, **({"updated_at": utcnow()} if hasattr(model, "updated_at") else {})}
    with write_transaction(session):
        switched = session.execute(
            update(model).where(model.id == row_id, getattr(model, flag).is_(True)).values(values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not switched:
            if session.get(model, row_id) is None:
                raise NotFound(kind.missing)
            return
        _saved(session, admin_id, kind, kind.off_verb, row_id, {flag: [True, False]})


# The names other modules and tests call, one per kind and verb.

def create_banner(session: Session, admin_id: int, form: BannerInput, image: ImageUpload | None) -> Banner:
    return create(session, admin_id, BANNER, form, image)


def update_banner(session: Session, admin_id: int, banner_id: int, form: BannerInput,
                  image: ImageUpload | None = None) -> Banner:
    return update_row(session, admin_id, BANNER, banner_id, form, image)


def deactivate_banner(session: Session, admin_id: int, banner_id: int) -> None:
    switch_off(session, admin_id, BANNER, banner_id)


def create_article(session: Session, admin_id: int, form: ArticleInput, cover: ImageUpload | None = None) -> Article:
    return create(session, admin_id, ARTICLE, form, cover)


def update_article(session: Session, admin_id: int, article_id: int, form: ArticleInput,
                   cover: ImageUpload | None = None) -> Article:
    return update_row(session, admin_id, ARTICLE, article_id, form, cover)


def unpublish_article(session: Session, admin_id: int, article_id: int) -> None:
    switch_off(session, admin_id, ARTICLE, article_id)


def create_announcement(session: Session, admin_id: int, form: AnnouncementInput) -> Announcement:
    return create(session, admin_id, ANNOUNCEMENT, form)


def update_announcement(session: Session, admin_id: int, announcement_id: int,
                        form: AnnouncementInput) -> Announcement:
    return update_row(session, admin_id, ANNOUNCEMENT, announcement_id, form)


def deactivate_announcement(session: Session, admin_id: int, announcement_id: int) -> None:
    switch_off(session, admin_id, ANNOUNCEMENT, announcement_id)
