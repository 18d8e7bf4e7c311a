"""The content pages' forms (banners, articles, announcements). Each only reads what was typed, as the service's
input (``to_input``); services/content.py says what is allowed, and its refusal lands on the field it names
(``show_refusal``), so every rule is written once, there."""
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, SelectField, StringField, TextAreaField

from ....forms import place_refusal
from ....models import ArticleKind, BannerTarget
from ....services import content
from ....templating import local_time

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


class ContentForm(FlaskForm):
    class Meta:
        csrf = False  # CSRFProtect checks every POST already (extensions.csrf), with the same token

    input_class: type
    image_field: str | None = None

    def to_input(self):
        """The service's input: the form's fields by name, text as typed."""
        names = self.input_class.__dataclass_fields__
        return self.input_class(**{name: self[name].data if isinstance(self[name], BooleanField)
                                   else (self[name].data or "") for name in names})

    def show_refusal(self, refusal) -> str | None:
        """Put the service's refusal under the field it is about; what is about no field is returned, for the
        top of the form."""
        # The service names its field; an upload refused (uploads.UploadRefused) is about the form's image.
        default = None if isinstance(refusal, content.ContentError) else self.image_field
        return None if place_refusal(self, refusal, default) else refusal.message


class BannerForm(ContentForm):
    input_class = content.BannerInput
    image_field = "image"

    title = StringField("标题")
    target_kind = SelectField("跳转到", choices=[(BannerTarget.PRODUCT.value, "商品"),
                                               (BannerTarget.CATEGORY.value, "分类"),
                                               (BannerTarget.ARTICLE.value, "文章")],
                              default=BannerTarget.PRODUCT.value, validate_choice=False)
    target_id = StringField("目标编号")
    sort_order = StringField("排序（小的在前）", default="0")
    is_active = BooleanField("上线", default=True)
    image = FileField("图片")

    @classmethod
    def of(cls, banner):
        return cls(data={"title": banner.title, "target_kind": banner.target_kind, "target_id": str(banner.target_id),
                         "sort_order": str(banner.sort_order), "is_active": banner.is_active})


class ArticleForm(ContentForm):
    input_class = content.ArticleInput
    image_field = "cover"

    kind = SelectField("类型", choices=[(ArticleKind.BRAND.value, "品牌故事"), (ArticleKind.PRODUCT.value, "产品故事")],
                       default=ArticleKind.BRAND.value, validate_choice=False)
    title = StringField("标题")
    summary = StringField("摘要")
    body_html = TextAreaField("正文（HTML）")
    product_id = StringField("关联商品")
    is_published = BooleanField("发布")
    cover = FileField("封面")

    @classmethod
    def of(cls, article):
        return cls(data={"kind": article.kind, "title": article.title, "summary": article.summary,
                         "body_html": article.body_html, "product_id": str(article.product_id or ""),
                         "is_published": article.is_published})


class AnnouncementForm(ContentForm):
    input_class = content.AnnouncementInput

    text = StringField("公告内容")
    link = StringField("链接")
    starts_at = StringField("开始时间")
    ends_at = StringField("结束时间")
    is_active = BooleanField("上线", default=True)

    @classmethod
    def of(cls, announcement):
        return cls(data={"text": announcement.text, "link": announcement.link,
                         "starts_at": local_time(announcement.starts_at, DATETIME_LOCAL),
                         "ends_at": local_time(announcement.ends_at, DATETIME_LOCAL),
                         "is_active": announcement.is_active})


class ArticleImageForm(ContentForm):
    image = FileField("图片")
