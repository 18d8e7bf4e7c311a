"""Banners, articles and announcements in the admin pages (desktop). Any admin may edit content; every change
goes through services/content.py, which sanitises, stores images through uploads.save_image and audits."""
from flask import Blueprint, current_app, redirect, render_template, request, url_for
from sqlalchemy import select

from ...extensions import db
from ...models import Announcement, Article, ArticleKind, Banner, BannerTarget, Category, Product
from ...models.base import utcnow
from ...paging import page_of
from ...services import content
from ...templating import local_time
from ...uploads import UploadRefused
from ...web import arg_id, render_page
from ..common import current_admin, require_admin

bp = Blueprint("admin_content", __name__, url_prefix="/admin/content")
bp.before_request(require_admin())

# Refusals the admin can fix in the form: shown above it, with what was typed kept.
FORM_ERRORS = (content.ContentError, UploadRefused)
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


def _uploaded_image(field: str) -> content.ImageUpload | None:
    upload = request.files.get(field)
    if upload is None or not upload.filename:
        return None
    return content.ImageUpload(upload.stream, current_app.config["UPLOAD_FOLDER"],
                               current_app.config["UPLOAD_MAX_BYTES"])


def _checked(name: str) -> bool:
    return request.form.get(name) == "1"


def _form_page(template: str, error: str | None, **context):
    return render_template(template, admin=current_admin(), error=error, **context), 400 if error else 200


@bp.get("/")
def index():
    return redirect(url_for(".banners"))


# --- banners ----------------------------------------------------------------------------------------------

@bp.get("/banners")
def banners():
    page = page_of(db.session, select(Banner).order_by(Banner.is_active.desc(), Banner.sort_order, Banner.id),
                   arg_id("page"), scalars=True)
    return render_template("admin/content/banners.html", admin=current_admin(), page=page)


@bp.route("/banners/new", methods=["GET", "POST"])
def new_banner():
    return _banner_form(None)


@bp.route("/banners/<int:banner_id>", methods=["GET", "POST"])
def edit_banner(banner_id: int):
    return _banner_form(db.get_or_404(Banner, banner_id))


def _banner_form(banner: Banner | None):
    error = None
    if request.method == "POST":
        form = content.BannerInput(
            title=request.form.get("title", ""), target_kind=request.form.get("target_kind", ""),
            target_id=request.form.get("target_id", ""), sort_order=request.form.get("sort_order", ""),
            is_active=_checked("is_active"),
        )
        try:
            if banner is None:
                content.create_banner(db.session, current_admin().id, form, _uploaded_image("image"))
            else:
                content.update_banner(db.session, current_admin().id, banner.id, form, _uploaded_image("image"))
            return redirect(url_for(".banners"))
        except FORM_ERRORS as exc:
            error = exc.message
        values = request.form
    elif banner is None:
        values = {"sort_order": "0", "is_active": "1", "target_kind": BannerTarget.PRODUCT}
    else:
        values = {"title": banner.title, "target_kind": banner.target_kind, "target_id": banner.target_id,
                  "sort_order": banner.sort_order, "is_active": "1" if banner.is_active else ""}
    return _form_page(
        "admin/content/banner_form.html", error, banner=banner, values=values,
        products=db.session.scalars(select(Product).order_by(Product.sort_order, Product.id)).all(),
        categories=db.session.scalars(select(Category).order_by(Category.sort_order, Category.id)).all(),
        articles=db.session.scalars(select(Article).order_by(Article.id.desc())).all(),
    )


@bp.post("/banners/<int:banner_id>/deactivate")
def deactivate_banner(banner_id: int):
    content.deactivate_banner(db.session, current_admin().id, banner_id)
    return redirect(url_for(".banners"))


# --- articles ---------------------------------------------------------------------------------------------

@bp.get("/articles")
def articles():
    page = page_of(db.session, select(Article).order_by(Article.id.desc()), arg_id("page"), scalars=True)
    return render_template("admin/content/articles.html", admin=current_admin(), page=page)


@bp.route("/articles/new", methods=["GET", "POST"])
def new_article():
    return _article_form(None)


@bp.route("/articles/<int:article_id>", methods=["GET", "POST"])
def edit_article(article_id: int):
    return _article_form(db.get_or_404(Article, article_id))


def _article_form(article: Article | None):
    error = None
    if request.method == "POST":
        form = content.ArticleInput(
            kind=request.form.get("kind", ""), title=request.form.get("title", ""),
            summary=request.form.get("summary", ""), body_html=request.form.get("body_html", ""),
            product_id=request.form.get("product_id", ""), is_published=_checked("is_published"),
        )
        try:
            if article is None:
                content.create_article(db.session, current_admin().id, form, _uploaded_image("cover"))
            else:
                content.update_article(db.session, current_admin().id, article.id, form, _uploaded_image("cover"))
            return redirect(url_for(".articles"))
        except FORM_ERRORS as exc:
            error = exc.message
        values = request.form
    elif article is None:
        values = {"kind": ArticleKind.BRAND}
    else:
        values = {"kind": article.kind, "title": article.title, "summary": article.summary,
                  "body_html": article.body_html, "product_id": str(article.product_id or ""),
                  "is_published": "1" if article.is_published else ""}
    return _form_page("admin/content/article_form.html", error, article=article, values=values,
                      products=db.session.scalars(select(Product).order_by(Product.sort_order, Product.id)).all())


@bp.post("/articles/<int:article_id>/unpublish")
def unpublish_article(article_id: int):
    content.unpublish_article(db.session, current_admin().id, article_id)
    return redirect(url_for(".articles"))


@bp.post("/articles/images")
def upload_article_image():
    """Store an image for an article's body and show its /media/ address to paste: into the article form
    (htmx), or as a page of its own (a plain form post)."""
    image = _uploaded_image("image")
    if image is None:
        raise content.ContentError("请选择要上传的图片。")
    saved = content.upload_article_image(db.session, current_admin().id, image)
    return render_page("admin/content/image_uploaded.html", block="uploaded", admin=current_admin(),
                       url=url_for("media.file", filename=saved.path), saved=saved)


# --- announcements ----------------------------------------------------------------------------------------

@bp.get("/announcements")
def announcements():
    page = page_of(db.session, select(Announcement).order_by(Announcement.is_active.desc(), Announcement.id.desc()),
                   arg_id("page"), scalars=True)
    return render_template("admin/content/announcements.html", admin=current_admin(), page=page, now=utcnow())


@bp.route("/announcements/new", methods=["GET", "POST"])
def new_announcement():
    return _announcement_form(None)


@bp.route("/announcements/<int:announcement_id>", methods=["GET", "POST"])
def edit_announcement(announcement_id: int):
    return _announcement_form(db.get_or_404(Announcement, announcement_id))


def _announcement_form(announcement: Announcement | None):
    error = None
    if request.method == "POST":
        form = content.AnnouncementInput(
            text=request.form.get("text", ""), link=request.form.get("link", ""),
            starts_at=request.form.get("starts_at", ""), ends_at=request.form.get("ends_at", ""),
            is_active=_checked("is_active"),
        )
        try:
            if announcement is None:
                content.create_announcement(db.session, current_admin().id, form)
            else:
                content.update_announcement(db.session, current_admin().id, announcement.id, form)
            return redirect(url_for(".announcements"))
        except FORM_ERRORS as exc:
            error = exc.message
        values = request.form
    elif announcement is None:
        values = {"is_active": "1"}
    else:
        values = {"text": announcement.text, "link": announcement.link,
                  "starts_at": local_time(announcement.starts_at, DATETIME_LOCAL),
                  "ends_at": local_time(announcement.ends_at, DATETIME_LOCAL),
                  "is_active": "1" if announcement.is_active else ""}
    return _form_page("admin/content/announcement_form.html", error, announcement=announcement, values=values)


@bp.post("/announcements/<int:announcement_id>/deactivate")
def deactivate_announcement(announcement_id: int):
    content.deactivate_announcement(db.session, current_admin().id, announcement_id)
    return redirect(url_for(".announcements"))
