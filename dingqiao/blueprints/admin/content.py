"""Banners, articles and announcements in the admin pages (desktop). Any admin may edit content; every change
goes through services/content.py, which sanitises, stores images through uploads.save_image and audits. The
three kinds are edited the same way (``_edit``): a form class from forms/content.py, one service call, the
service's refusal shown under its field with what was typed kept."""
from flask import Blueprint, current_app, redirect, render_template, request, url_for

from ...extensions import db
from ...models.base import utcnow
from ...services import content
from ...uploads import UploadRefused
from ...web import arg_id, render_page
from ..common import current_admin, require_admin
from .forms.content import AnnouncementForm, ArticleForm, ArticleImageForm, BannerForm

bp = Blueprint("admin_content", __name__, url_prefix="/admin/content")
bp.before_request(require_admin())

# Refusals the admin can fix in the form: shown under the field they are about, with what was typed kept.
FORM_ERRORS = (content.ContentError, UploadRefused)


def _uploaded_image(field) -> content.ImageUpload | None:
    upload = field.data
    if upload is None or not getattr(upload, "filename", ""):
        return None
    return content.ImageUpload(upload.stream, current_app.config["UPLOAD_FOLDER"],
                               current_app.config["UPLOAD_MAX_BYTES"])


def _list(kind: content.ContentKind, template: str, **context):
    page = content.admin_page(db.session, kind.model, arg_id("page"))
    return render_template(template, admin=current_admin(), page=page, **context)


def _edit(kind: content.ContentKind, row_id: int | None, form_class, template: str, back: str, **context):
    """New (``row_id`` None) or edit: on POST one service call, then back to the list; refused, the form again
    (status 400) with the refusal under its field."""
    row = content.for_edit(db.session, kind, row_id) if row_id is not None else None
    if request.method == "POST":
        form = form_class()
        image = _uploaded_image(form[form.image_field]) if form.image_field else None
        try:
            if row is None:
                content.create(db.session, current_admin().id, kind, form.to_input(), image)
            else:
                content.update_row(db.session, current_admin().id, kind, row.id, form.to_input(), image)
            return redirect(url_for(back))
        except FORM_ERRORS as refusal:
            error = form.show_refusal(refusal)
        status = 400
    else:
        form = form_class() if row is None else form_class.of(row)
        error, status = None, 200
    page = render_template(template, admin=current_admin(), form=form, error=error, **{kind.thing: row},
                           choices=content.form_choices(db.session) if kind is not content.ANNOUNCEMENT else None,
                           **context)
    return page, status


@bp.get("/")
def index():
    return redirect(url_for(".banners"))


# --- banners ----------------------------------------------------------------------------------------------

@bp.get("/banners")
def banners():
    return _list(content.BANNER, "admin/content/banners.html")


@bp.route("/banners/new", methods=["GET", "POST"])
def new_banner():
    return _edit(content.BANNER, None, BannerForm, "admin/content/banner_form.html", ".banners")


@bp.route("/banners/<int:banner_id>", methods=["GET", "POST"])
def edit_banner(banner_id: int):
    return _edit(content.BANNER, banner_id, BannerForm, "admin/content/banner_form.html", ".banners")


@bp.post("/banners/<int:banner_id>/deactivate")
def deactivate_banner(banner_id: int):
    content.switch_off(db.session, current_admin().id, content.BANNER, banner_id)
    return redirect(url_for(".banners"))


# --- articles ---------------------------------------------------------------------------------------------

@bp.get("/articles")
def articles():
    return _list(content.ARTICLE, "admin/content/articles.html")


@bp.route("/articles/new", methods=["GET", "POST"])
def new_article():
    return _edit(content.ARTICLE, None, ArticleForm, "admin/content/article_form.html", ".articles")


@bp.route("/articles/<int:article_id>", methods=["GET", "POST"])
def edit_article(article_id: int):
    return _edit(content.ARTICLE, article_id, ArticleForm, "admin/content/article_form.html", ".articles")


@bp.post("/articles/<int:article_id>/unpublish")
def unpublish_article(article_id: int):
    content.switch_off(db.session, current_admin().id, content.ARTICLE, article_id)
    return redirect(url_for(".articles"))


@bp.post("/articles/images")
def upload_article_image():
    """Store an image for an article's body and show its /media/ address to paste: into the article form
    (htmx), or as a page of its own (a plain form post)."""
    image = _uploaded_image(ArticleImageForm().image)
    if image is None:
        raise content.ContentError("请选择要上传的图片。")
    saved = content.upload_article_image(db.session, current_admin().id, image)
    return render_page("admin/content/image_uploaded.html", block="uploaded", admin=current_admin(),
                       url=url_for("media.file", filename=saved.path), saved=saved)


# --- announcements ----------------------------------------------------------------------------------------

@bp.get("/announcements")
def announcements():
    return _list(content.ANNOUNCEMENT, "admin/content/announcements.html", now=utcnow())


@bp.route("/announcements/new", methods=["GET", "POST"])
def new_announcement():
    return _edit(content.ANNOUNCEMENT, None, AnnouncementForm, "admin/content/announcement_form.html",
                 ".announcements")


@bp.route("/announcements/<int:announcement_id>", methods=["GET", "POST"])
def edit_announcement(announcement_id: int):
    return _edit(content.ANNOUNCEMENT, announcement_id, AnnouncementForm, "admin/content/announcement_form.html",
                 ".announcements")


@bp.post("/announcements/<int:announcement_id>/deactivate")
def deactivate_announcement(announcement_id: int):
    content.switch_off(db.session, current_admin().id, content.ANNOUNCEMENT, announcement_id)
    return redirect(url_for(".announcements"))
