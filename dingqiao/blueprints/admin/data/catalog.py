"""商品: categories and products. Prices and pictures follow the catalog's rules (services/catalog.py); the
pictures are resized and thumbnailed by ``dingqiao/uploads.py``."""
from flask import current_app, flash, request, url_for
from flask_admin.actions import action
from markupsafe import Markup
from wtforms import MultipleFileField, SelectMultipleField, StringField
from wtforms.validators import NumberRange

from ....extensions import db
from ....money import format_yuan
from ....services import DomainError, catalog
from ....uploads import UploadRefused, delete_stored, save_image
from ...common import current_admin
from .base import DataView
from .columns import local, yuan

SORT_ORDER_FIELD = {"label": "排序（小的在前）", "validators": [
    NumberRange(min=-1_000_000, max=1_000_000, message="排序需为 -1000000 到 1000000 之间的整数。")]}


class CategoryView(DataView):
    column_list = ["id", "name", "sort_order", "is_active"]
    column_labels = {"name": "名称", "sort_order": "排序", "is_active": "启用"}
    column_searchable_list = ["name"]
    column_default_sort = "sort_order"
    form_columns = ["name", "sort_order", "is_active"]
    form_args = {"name": {"label": "名称"}, "sort_order": SORT_ORDER_FIELD, "is_active": {"label": "启用"}}


class ProductView(DataView):
    """Products with the three identity prices typed in yuan, and pictures uploaded. Products are never
    deleted (orders name them): take them off sale."""

    can_delete = False
    column_list = ["id", "cover", "name", "category", "member_price_fen", "outlet_price_fen", "factory_price_fen",
                   "is_on_sale", "price_review_pending", "sort_order", "updated_at"]
    column_labels = {"cover": "图片", "name": "名称", "category": "分类", "member_price_fen": "会员价",
                     "outlet_price_fen": "网点价", "factory_price_fen": "工厂店价", "is_on_sale": "在售",
                     "price_review_pending": "待财务核价", "sort_order": "排序", "updated_at": "更新时间",
                     "category.name": "分类", "subtitle": "副标题"}
    column_searchable_list = ["name", "subtitle"]
    column_filters = ["category.name", "is_on_sale", "price_review_pending"]
    column_sortable_list = ["id", "name", ("category", "category.name"), "member_price_fen", "outlet_price_fen",
                            "factory_price_fen", "is_on_sale", "sort_order", "updated_at"]
    column_default_sort = [("sort_order", False), ("id", False)]
    column_formatters = {
        "member_price_fen": yuan, "outlet_price_fen": yuan, "factory_price_fen": yuan, "updated_at": local,
        "cover": lambda _v, _c, model, _n: Markup('<img src="{}" width="48" height="48" alt="">').format(
            url_for("media.file", filename=model.cover_thumb_path)) if model.cover_thumb_path else "",
    }
    form_columns = ["category", "name", "subtitle", "member_price", "outlet_price", "factory_price", "description",
                    "unit", "new_images", "is_on_sale", "sort_order"]
    form_extra_fields = {
        "member_price": StringField("会员价（元）"),
        "outlet_price": StringField("网点价（元）"),
        "factory_price": StringField("工厂店价（元）"),
        "new_images": MultipleFileField("上传图片（JPG/PNG/WEBP/GIF，自动缩放并生成缩略图）"),
    }
    form_args = {
        "category": {"label": "分类"}, "name": {"label": "名称"}, "subtitle": {"label": "副标题"},
        "description": {"label": "详情"}, "unit": {"label": "单位"}, "is_on_sale": {"label": "在售"},
        "sort_order": SORT_ORDER_FIELD,
    }

    def get_edit_form(self):
        class ProductEditForm(self.get_form()):
            remove_images = SelectMultipleField("删除图片", coerce=int, choices=[], validate_choice=False)

        return ProductEditForm

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if obj is not None:
            form.remove_images.choices = [(image.id, f"第 {n} 张：{image.path.rsplit('/', 1)[-1]}")
                                          for n, image in enumerate(obj.images, 1)]
        return form

    def on_form_prefill(self, form, id):
        product = self.get_one(id)
        for field, fen in (("member_price", product.member_price_fen), ("outlet_price", product.outlet_price_fen),
                           ("factory_price", product.factory_price_fen)):
            getattr(form, field).data = format_yuan(fen).lstrip("¥").replace(",", "")

    def on_model_change(self, form, model, is_created):
        """Inside the save's transaction (services/data_pages.py): the prices under the catalog's rules, the
        pictures removed and added. Returns what the audit row adds."""
        prices = catalog.parse_tier_prices(form.member_price.data, form.outlet_price.data, form.factory_price.data)
        catalog.set_product_terms(db.session, current_admin(), model, prices, on_sale=bool(form.is_on_sale.data),
                                  is_new=is_created,
                                  operator_max_bps=current_app.config["PRICE_CHANGE_OPERATOR_MAX_BPS"])
        db.session.flush()
        removed = [] if is_created else catalog.detach_images(db.session, model, set(form.remove_images.data or ()))
        saved = self._store_uploads(form)
        catalog.attach_images(db.session, model, saved)
        form.files_to_delete = removed
        if saved or removed:
            return {"images_added": [image.path for image in saved], "images_removed": removed}
        return None

    def _store_uploads(self, form):
        config = current_app.config
        saved = []
        for upload in request.files.getlist("new_images"):
            if not upload or not upload.filename:
                continue  # the browser sends an empty part when nothing was chosen
            try:
                image = save_image(upload.stream, config["UPLOAD_FOLDER"], "products", config["UPLOAD_MAX_BYTES"],
                                   thumbnail=True)
            except UploadRefused as exc:
                raise catalog.CatalogError(f"「{upload.filename[:40]}」：{exc.message}") from None
            form.stored_uploads += image.paths
            saved.append(image)
        return saved

    def after_model_change(self, form, model, is_created):
        delete_stored(current_app.config["UPLOAD_FOLDER"], form.files_to_delete)
        form.stored_uploads = []
        if is_created and model.price_review_pending:
            flash("新商品需财务核价后才能上架，已保存为下架状态。", "warning")

    @action("on_sale", "上架", "上架所选商品？")
    def action_on_sale(self, ids):
        self._set_on_sale(ids, True)

    @action("off_sale", "下架", "下架所选商品？已下单的订单不受影响。")
    def action_off_sale(self, ids):
        self._set_on_sale(ids, False)

    def _set_on_sale(self, ids, on_sale: bool) -> None:
        try:
            catalog.set_products_on_sale(db.session, current_admin(), [int(i) for i in ids], on_sale)
        except DomainError as exc:
            flash(exc.message, "error")
        else:
            flash("已上架。" if on_sale else "已下架。", "success")
