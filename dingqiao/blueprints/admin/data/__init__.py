"""数据管理: Flask-Admin list / search / filter / sort / edit views over the tables an operations team browses.

Workflows with rules of their own (refunds, withdrawals, commission rules, applications, a member's relation, an
order's whole story, stock adjustments, exports) are our own views in the ``admin*`` blueprints; rows here link
to them. Three things hold for every view below:

- who: an admin, and for some views only finance (superadmin always) — anyone else is sent to the admin login
  or gets 403;
- writes run in one ``write_transaction`` together with an audit row naming each changed field (old, new);
- money tables (ledger, commission lines, payments, refunds, withdrawals, wallets) and the audit log are read
  only: the create / edit / delete endpoints answer 403 whatever is posted, because money moves only through
  the services.
"""
import json
import re
import secrets
from pathlib import Path

import flask_admin
import jinja2
from flask import abort, current_app, flash, g, make_response, redirect, request, url_for
from flask_admin import Admin, AdminIndexView, BaseView, expose
from flask_admin.actions import action
from flask_admin.contrib.sqla import ModelView
from flask_admin.menu import MenuLink
from flask_admin.theme import Bootstrap4Theme
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from wtforms import MultipleFileField, SelectMultipleField, StringField
from wtforms.validators import NumberRange

from ....db import write_transaction
from ....extensions import db, htmx
from ....models import (
    AdminRole,
    AdminUser,
    AuditLog,
    Category,
    CommissionKind,
    CommissionLine,
    FactoryStore,
    Identity,
    LedgerEntry,
    LedgerKind,
    Order,
    OrderStatus,
    Outlet,
    Payment,
    PaymentStatus,
    Product,
    Refund,
    RefundStatus,
    Region,
    SiteStatus,
    User,
    Wallet,
    Withdrawal,
)
from ....money import format_yuan
from ....services import DomainError, Forbidden, catalog, outlets
from ....services.audit import changed_fields, record_audit, snapshot, verify_audit_chain
from ....services.commissions import format_percent
from ....services.exports import COMMISSION_STATUS, PAYOUT_METHOD, WITHDRAWAL_STATUS
from ....templating import local_time
from ....uploads import UploadRefused, delete_stored, save_image
from ....web import MAX_ID, current_path, parse_id
from ...common import current_admin

URL = "/admin/data"


def _yuan(_view, _context, model, name):
    return format_yuan(getattr(model, name))


def _local(_view, _context, model, name):
    value = getattr(model, name)
    return local_time(value) if value else ""


def _link(endpoint: str, key: str, text):
    """A cell that links to one of our own workflow pages (order detail, member detail)."""

    def formatter(_view, _context, model, _name):
        return Markup('<a href="{}">{}</a>').format(url_for(endpoint, **{key: model.id}), text(model))

    return formatter


# Chinese for the values a table stores as English words (the enums without a ``.label`` of their own; the
# member-facing wording where one exists).
ADMIN_ROLES = {"operator": "运营", "finance": "财务", "superadmin": "超级管理员"}
ACTOR_KINDS = {"admin": "管理员", "user": "会员", "system": "系统"}
PAYMENT_STATUS = {PaymentStatus.CREATED: "待支付", PaymentStatus.PAID: "已支付", PaymentStatus.CLOSED: "已关闭"}
REFUND_STATUS = {RefundStatus.REQUESTED: "待审核", RefundStatus.APPROVED: "已提交微信，结果未知",
                 RefundStatus.PROCESSING: "微信退款处理中", RefundStatus.REJECTED: "已拒绝",
                 RefundStatus.SUCCEEDED: "已退款", RefundStatus.FAILED: "退款失败"}
LEDGER_KIND = {LedgerKind.COMMISSION_FROZEN: "佣金入账（冻结）", LedgerKind.COMMISSION_SETTLED: "佣金结算",
               LedgerKind.COMMISSION_REVERSED: "佣金撤销", LedgerKind.COMMISSION_CLAWED_BACK: "佣金追回",
               LedgerKind.WITHDRAWAL_REQUESTED: "申请提现", LedgerKind.WITHDRAWAL_PAID: "提现已打款",
               LedgerKind.WITHDRAWAL_RETURNED: "提现退回"}


def _choices(labels) -> list[tuple[str, str]]:
    """``column_choices`` for Flask-Admin: the list, the details and the filter's drop-down show the label."""
    if isinstance(labels, type):  # an enum whose members carry .label
        return [(member.value, member.label) for member in labels]
    return [(str(value), label) for value, label in labels.items()]


def _people(user_ids) -> dict[int, str]:
    """Members' display names by id, read once per request for a whole page of rows (``DataView.get_list``)."""
    known = g.setdefault("people", {})
    missing = {user_id for user_id in user_ids if user_id is not None} - known.keys()
    if missing:
        people = db.session.scalars(select(User).where(User.id.in_(missing)))
        known.update((user.id, user.display_name) for user in people)
    return known


def _person_link(user_id: int | None):
    if user_id is None:
        return "—"
    name = _people([user_id]).get(user_id, f"#{user_id}")
    return Markup('<a href="{}">{}</a>').format(url_for("admin_members.detail", user_id=user_id), name)


def _person(_view, _context, model, name):
    """A member id shown as the member's name, linking to their page."""
    return _person_link(getattr(model, name))


def _wallet_owner(_view, _context, model, name):
    owners = g.setdefault("wallet_owners", {})
    wallet_id = getattr(model, name)
    if wallet_id not in owners:
        owners[wallet_id] = db.session.scalar(select(Wallet.user_id).where(Wallet.id == wallet_id))
    return _person_link(owners[wallet_id])


def _admin_names() -> dict[int, str]:
    if "admin_names" not in g:  # a team of a few accounts: read them all once
        g.admin_names = dict(db.session.execute(select(AdminUser.id, AdminUser.username)).all())
    return g.admin_names


def _admin(_view, _context, model, name):
    admin_id = getattr(model, name)
    return "—" if admin_id is None else _admin_names().get(admin_id, f"#{admin_id}")


def _percent(_view, _context, model, name):
    return format_percent(getattr(model, name))


def audit_detail_rows(action: str, detail: dict) -> list[tuple[str, object, object]]:
    """An audit row's JSON detail as (field, old, new): ``changes`` holds ``{field: [old, new]}``, ``values`` a
    created row's values (a deleted one's: old), ``old_x`` / ``new_x`` pairs are one field; anything else is a
    plain value (new)."""
    rows = []
    for key, value in detail.items():
        if key == "changes" and isinstance(value, dict):
            rows += [(field, *pair) if isinstance(pair, list) and len(pair) == 2 else (field, None, pair)
                     for field, pair in value.items()]
        elif key == "values" and isinstance(value, dict):
            deleted = action.endswith(".delete")
            rows += [(field, v, None) if deleted else (field, None, v) for field, v in value.items()]
        elif key.startswith("old_") and f"new_{key[4:]}" in detail:
            rows.append((key[4:], value, detail[f"new_{key[4:]}"]))
        elif not (key.startswith("new_") and f"old_{key[4:]}" in detail):
            rows.append((key, None, value))
    return rows


# Fields of audit details that hold a member's id (wallet movements, shops, bindings, team accounts).
AUDIT_PERSON_FIELDS = frozenset({"user", "user_id", "upline_id", "owner_user_id", "staff_user_id",
                                 "beneficiary_user_id"})


def _audit_value(field: str, value) -> str:
    if field in AUDIT_PERSON_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return f"{_people([value]).get(value, '?')}（#{value}）"
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _audit_detail(limit: int | None):
    """The detail column as a field / old / new table; in the list at most ``limit`` rows (all in the details)."""

    def formatter(_view, _context, model, _name):
        try:
            detail = json.loads(model.detail or "{}")
        except ValueError:
            return model.detail
        rows = audit_detail_rows(model.action, detail) if isinstance(detail, dict) else [("", None, detail)]
        if not rows:
            return "—"
        shown = rows if limit is None else rows[:limit]
        body = Markup("").join(Markup("<tr><th>{}</th><td>{}</td><td>{}</td></tr>").format(
            field, _audit_value(field, old), _audit_value(field, new)) for field, old, new in shown)
        more = Markup('<tr><td colspan="3" class="text-muted">… 共 {} 项，见详情</td></tr>').format(len(rows)) \
            if len(shown) < len(rows) else ""
        return Markup('<table class="dq-audit-detail"><thead><tr><th>字段</th><th>原值</th><th>新值</th></tr></thead>'
                      '<tbody>{}{}</tbody></table>').format(body, more)

    return formatter


def _actor(_view, _context, model, _name):
    if model.actor_id is None:
        return ACTOR_KINDS.get(model.actor_kind, model.actor_kind)
    if model.actor_kind == "admin":
        return _admin_names().get(model.actor_id, f"#{model.actor_id}")
    if model.actor_kind == "user":
        return _person_link(model.actor_id)
    return f"#{model.actor_id}"


class DataForm(FlaskForm):
    """FlaskForm carries the CSRF token the app-wide CSRFProtect checks; Flask-Admin's unique-value check also
    needs to know which row is being edited (else saving a row unchanged finds "itself" and refuses)."""

    def __init__(self, formdata=None, obj=None, **kwargs):
        self._obj = obj
        super().__init__(formdata=formdata, obj=obj, **kwargs)

    def populate_obj(self, obj):
        """A browser sends a textarea's line breaks as \\r\\n: stored as \\n, so saving a text unchanged is no
        change (and no audit row)."""
        for field in self:
            if isinstance(field.data, str):
                field.data = field.data.replace("\r\n", "\n")
        super().populate_obj(obj)


# Flask-Admin's templates put three kinds of inline click handler on links and buttons (bulk actions, the delete
# confirmation, filter menu entries). Our CSP runs no inline handler, and Chromium reports each one as a CSP error
# while the page is parsed, so they leave the HTML as data-fa-click and static/js/admin-data.js runs them.
FLASK_ADMIN_ONCLICK = re.compile(
    r' onclick="((?:return modelActions\.execute|return faHelpers\.safeConfirm)\([^"]*\);?|return false;?)"')


class AdminOnly:
    """Mixed into every view: an admin must be logged in; ``roles`` narrows it (superadmin always passes)."""

    roles: tuple[AdminRole, ...] = ()

    def is_accessible(self) -> bool:
        admin = current_admin()
        return admin is not None and (not self.roles or admin.role in {*self.roles, AdminRole.SUPERADMIN})

    def inaccessible_callback(self, name, **kwargs):
        if current_admin() is None:
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
        abort(403)

    def render(self, template, **kwargs):
        return FLASK_ADMIN_ONCLICK.sub(r' data-fa-click="\1"', super().render(template, **kwargs))

    def _handle_view(self, name, **kwargs):
        # A boosted link from one of our pages would swap only the body in: this page's head (Bootstrap, its
        # nonce'd scripts) would be missing — unstyled, and CSP errors. htmx is told to load it whole instead.
        if htmx.boosted and request.method == "GET":
            return make_response("", 204, {"HX-Redirect": current_path()})
        return super()._handle_view(name, **kwargs)


class DataView(AdminOnly, ModelView):
    """A table the team may edit: every write is one transaction with its audit row."""

    form_base_class = DataForm
    page_size = 50
    can_set_page_size = True
    can_view_details = True
    column_display_pk = True
    audit_exclude: frozenset[str] = frozenset()
    person_columns: tuple[str, ...] = ()  # member ids shown as names: read for the whole page at once
    details_extra: tuple[str, ...] = ()  # shown in the details after the list's columns

    def get_details_columns(self):
        # Flask-Admin's own choice leaves foreign keys out (the member a withdrawal is for) and shows internals
        # under English names: the details show the list's columns and these.
        if self.column_list is None:
            return super().get_details_columns()
        return self.get_column_names(only_columns=[*self.column_list, *self.details_extra],
                                     excluded_columns=self.column_details_exclude_list)

    def get_list(self, *args, **kwargs):
        count, rows = super().get_list(*args, **kwargs)
        rows = list(rows)
        _people(getattr(row, column) for row in rows for column in self.person_columns)
        return count, rows

    def _get_list_extra_args(self):
        # Flask-Admin takes ?page= as any integer: a negative one or one past 64 bits reached the database as
        # an OFFSET it refuses (a 500). Within these bounds a page past the end is simply empty.
        args = super()._get_list_extra_args()
        args.page = min(max(args.page or 0, 0), MAX_ID // max(self.page_size_options))
        return args

    def _audit(self, model, action: str, detail: dict) -> None:
        record_audit(db.session, actor_kind="admin", actor_id=current_admin().id,
                     action=f"{model.__tablename__}.{action}", target_type=model.__tablename__,
                     target_id=model.id, detail=detail)

    def handle_action(self, return_view=None):
        """Bulk actions get the chosen rows' ids as the browser sent them: anything but plain row numbers is
        refused here, once for every action, before one of them turns it into an int."""
        if any(parse_id(raw) is None for raw in request.form.getlist("rowid")):
            flash("所选记录无效，请刷新列表后重新选择。", "error")
            return redirect(self.get_url(".index_view"))
        return super().handle_action(return_view)

    def create_model(self, form):
        try:
            with write_transaction(db.session):
                model = self.build_new_instance()
                form.populate_obj(model)
                db.session.add(model)
                self.on_model_change(form, model, True)
                db.session.flush()
                self._audit(model, "create", {"values": snapshot(model, self.audit_exclude), **g.pop("audit_extra", {})})
        except Exception as exc:
            self._failed(exc)
            return False
        self.after_model_change(form, model, True)
        return model

    def update_model(self, form, model):
        try:
            with write_transaction(db.session):
                before = snapshot(model, self.audit_exclude)  # read inside the write transaction
                form.populate_obj(model)
                self.on_model_change(form, model, False)
                db.session.flush()
                changes = changed_fields(before, snapshot(model, self.audit_exclude))
                extra = g.pop("audit_extra", {})
                if changes or extra:
                    self._audit(model, "update", {"changes": changes, **extra})
        except Exception as exc:
            self._failed(exc)
            return False
        self.after_model_change(form, model, False)
        return True

    def delete_model(self, model):
        try:
            with write_transaction(db.session):
                values = snapshot(model, self.audit_exclude)
                self.on_model_delete(model)
                self._audit(model, "delete", {"values": values})
                db.session.delete(model)
                db.session.flush()
        except Exception as exc:
            self._failed(exc)
            return False
        self.after_model_delete(model)
        return True

    def _failed(self, exc: Exception) -> None:
        """The write is rolled back; the page says why in Chinese and never shows SQL or a stack trace."""
        db.session.rollback()
        delete_stored(current_app.config["UPLOAD_FOLDER"], g.pop("stored_uploads", []))
        g.pop("audit_extra", None)
        if isinstance(exc, Forbidden):
            abort(403)
        if isinstance(exc, DomainError):
            flash(exc.message, "error")
        elif isinstance(exc, IntegrityError):
            flash("保存失败：与已有记录冲突（名称或编号重复、区域已被占用），或仍有其它记录引用它。", "error")
        else:
            current_app.logger.exception("admin data write failed in %s", type(self).__name__)
            flash("保存失败，请稍后重试。", "error")


class ReadOnlyView(DataView):
    """Money and history: list, search, filter and details only."""

    can_create = can_edit = can_delete = False
    action_disallowed_list = ["delete"]
    WRITE_ENDPOINTS = {"create_view", "edit_view", "delete_view", "action_view", "ajax_update"}

    def _handle_view(self, name, **kwargs):
        refused = super()._handle_view(name, **kwargs)
        if refused is not None:
            return refused
        if name in self.WRITE_ENDPOINTS:
            abort(403)
        return None

    def create_model(self, form):
        raise Forbidden("只读数据。")

    update_model = delete_model = create_model


# ---------------------------------------------------------------- catalog

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
    """Products with the three identity prices typed in yuan, and pictures uploaded, resized and thumbnailed
    by ``dingqiao/uploads.py``. Products are never deleted (orders name them): take them off sale."""

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
        "member_price_fen": _yuan, "outlet_price_fen": _yuan, "factory_price_fen": _yuan, "updated_at": _local,
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
        product = db.session.get(Product, id)
        for field, fen in (("member_price", product.member_price_fen), ("outlet_price", product.outlet_price_fen),
                           ("factory_price", product.factory_price_fen)):
            getattr(form, field).data = format_yuan(fen).lstrip("¥").replace(",", "")

    def on_model_change(self, form, model, is_created):
        prices = catalog.parse_tier_prices(form.member_price.data, form.outlet_price.data, form.factory_price.data)
        catalog.set_product_terms(db.session, current_admin(), model, prices, on_sale=bool(form.is_on_sale.data),
                                  is_new=is_created,
                                  operator_max_bps=current_app.config["PRICE_CHANGE_OPERATOR_MAX_BPS"])
        db.session.flush()
        removed = [] if is_created else catalog.detach_images(db.session, model, set(form.remove_images.data or ()))
        saved = self._store_uploads()
        catalog.attach_images(db.session, model, saved)
        if saved or removed:
            g.audit_extra = {"images_added": [image.path for image in saved], "images_removed": removed}
        g.files_to_delete = removed

    def _store_uploads(self):
        config = current_app.config
        saved = []
        g.stored_uploads = []
        for upload in request.files.getlist("new_images"):
            if not upload or not upload.filename:
                continue  # the browser sends an empty part when nothing was chosen
            try:
                image = save_image(upload.stream, config["UPLOAD_FOLDER"], "products", config["UPLOAD_MAX_BYTES"],
                                   thumbnail=True)
            except UploadRefused as exc:
                raise catalog.CatalogError(f"「{upload.filename[:40]}」：{exc.message}") from None
            g.stored_uploads += image.paths
            saved.append(image)
        return saved

    def after_model_change(self, form, model, is_created):
        delete_stored(current_app.config["UPLOAD_FOLDER"], g.pop("files_to_delete", []))
        g.pop("stored_uploads", None)
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


# ---------------------------------------------------------------- network

SITE_STATUS = {SiteStatus.ACTIVE: "营业中", SiteStatus.SUSPENDED: "已暂停", SiteStatus.PENDING: "待开通"}
STATUS_CHOICES = [(status.value, label) for status, label in SITE_STATUS.items()]


class RegionView(DataView):
    """Regions are created on the network pages (/admin/network/); here they are renamed, or deleted while empty."""

    can_create = False
    column_list = ["id", "code", "name", "factory_store", "created_at"]
    column_labels = {"code": "编号", "name": "名称", "factory_store": "工厂店", "created_at": "创建时间"}
    column_searchable_list = ["code", "name"]
    column_formatters = {"created_at": _local,
                         "factory_store": lambda _v, _c, model, _n: model.factory_store.name if model.factory_store else "—"}
    form_columns = ["code", "name"]
    form_args = {"code": {"label": "编号"}, "name": {"label": "名称"}}


class SiteView(DataView):
    """Outlets and factory stores are opened on the network pages (/admin/network/) or by an application
    (身份申请), both through services/network.py; here they are corrected, suspended and reopened."""

    can_create = can_delete = False
    site_kind = ""
    column_searchable_list = ["name", "address", "phone"]
    column_filters = ["status", "region.name"]
    column_formatters = {"created_at": _local, "owner_user_id": _person}
    details_extra = ("owner_user_id",)
    column_choices = {"status": STATUS_CHOICES}
    form_choices = {"status": STATUS_CHOICES}

    @action("suspend", "暂停营业", "暂停所选？暂停后不能下单到此、不能核销或进货。")
    def action_suspend(self, ids):
        self._set_status(ids, SiteStatus.SUSPENDED)

    @action("reopen", "恢复营业", "恢复所选的营业？")
    def action_reopen(self, ids):
        self._set_status(ids, SiteStatus.ACTIVE)

    def _set_status(self, ids, status: SiteStatus) -> None:
        changed = outlets.set_site_status(db.session, current_admin().id, self.site_kind, [int(i) for i in ids], status)
        flash(f"已更新 {changed} 个。", "success")


class OutletView(SiteView):
    """An outlet changes region only by 划转 on the network pages, which handles its open restock orders."""

    site_kind = "outlet"
    column_list = ["id", "name", "region", "address", "phone", "opening_hours", "status", "created_at"]
    column_labels = {"name": "店名", "region": "区域", "address": "地址", "phone": "电话", "opening_hours": "营业时间",
                     "status": "状态", "created_at": "开通时间", "region.name": "区域", "owner_user_id": "店主"}
    form_columns = ["name", "address", "phone", "opening_hours", "status"]


class FactoryStoreView(SiteView):
    """A factory store's details and status; its region is set when it opens (网络, services/network.py, where
    "one per region" is decided), not edited here."""

    site_kind = "factory_store"
    column_list = ["id", "name", "region", "address", "phone", "status", "created_at"]
    column_labels = {"name": "店名", "region": "独家区域", "address": "地址", "phone": "电话", "status": "状态",
                     "created_at": "开通时间", "region.name": "区域", "owner_user_id": "店主"}
    form_columns = ["name", "address", "phone", "status"]


# ---------------------------------------------------------------- people and orders

class MemberView(ReadOnlyView):
    """Search members; the name opens the member page (identity, upline, relation correction, disable)."""

    can_view_details = False
    column_list = ["id", "nickname", "phone", "identity", "referral_code", "binding.upline", "is_active", "created_at",
                   "last_login_at"]
    column_labels = {"nickname": "昵称", "phone": "手机", "identity": "身份", "referral_code": "推广码",
                     "binding.upline": "推荐人", "is_active": "正常", "created_at": "注册时间", "last_login_at": "最近登录",
                     "openid": "OpenID"}
    column_searchable_list = ["nickname", "phone", "referral_code", "openid"]
    column_filters = ["identity", "is_active", "created_at"]
    column_choices = {"identity": _choices(Identity)}
    column_formatters = {
        "nickname": _link("admin_members.detail", "user_id", lambda user: user.display_name),
        "binding.upline": lambda _v, _c, model, _n: model.binding.upline.display_name if model.binding else "—",
        "created_at": _local, "last_login_at": _local,
    }


class OrderView(ReadOnlyView):
    """Find an order by number, the buyer's phone, the outlet, status and date; the number opens its story."""

    can_view_details = False
    column_list = ["id", "order_no", "user", "user.phone", "outlet", "status", "total_fen", "created_at", "paid_at",
                   "redeemed_at"]
    column_labels = {"order_no": "订单号", "user": "会员", "user.phone": "手机", "outlet": "核销网点", "status": "状态",
                     "total_fen": "金额", "created_at": "下单时间", "paid_at": "支付时间", "redeemed_at": "核销时间",
                     "outlet.name": "核销网点"}
    column_searchable_list = ["order_no", "user.phone", "outlet.name"]
    column_filters = ["status", "outlet.name", "created_at", "paid_at"]
    column_default_sort = ("id", True)
    column_formatters = {
        "order_no": _link("admin_orders.detail", "order_id", lambda order: order.order_no),
        "user": lambda _v, _c, model, _n: _person_link(model.user_id),
        "outlet": lambda _v, _c, model, _n: model.outlet.name,
        "total_fen": _yuan, "created_at": _local, "paid_at": _local, "redeemed_at": _local,
    }
    column_choices = {"status": _choices(OrderStatus)}


class AdminUserView(DataView):
    """Team accounts (superadmin only). The password is set here but never shown or audited."""

    roles = (AdminRole.SUPERADMIN,)
    can_delete = False
    column_list = ["id", "username", "role", "is_active", "created_at", "last_login_at"]
    column_labels = {"username": "用户名", "role": "角色", "is_active": "启用", "created_at": "创建时间",
                     "last_login_at": "最近登录"}
    column_formatters = {"created_at": _local, "last_login_at": _local}
    column_choices = {"role": _choices(ADMIN_ROLES)}
    form_columns = ["username", "role", "is_active", "new_password"]
    form_choices = {"role": _choices(ADMIN_ROLES)}
    form_extra_fields = {"new_password": StringField("新密码（至少 12 位；不改请留空）")}
    audit_exclude = frozenset({"password_hash"})

    def on_model_change(self, form, model, is_created):
        password = form.new_password.data or ""
        if is_created and not password:
            raise DomainError("新账号需要设置密码。")
        if password:
            if len(password) < 12:
                raise DomainError("密码至少 12 位。")
            model.set_password(password)
            g.audit_extra = {"password_changed": True}
        if not is_created and model.id == current_admin().id and (model.role != AdminRole.SUPERADMIN or not model.is_active):
            raise DomainError("不能取消自己的超级管理员权限或停用自己。")


# ---------------------------------------------------------------- money (read only) and the audit log

FINANCE = (AdminRole.FINANCE,)


class MoneyView(ReadOnlyView):
    roles = FINANCE
    column_default_sort = ("id", True)


class LedgerView(MoneyView):
    column_list = ["id", "wallet_id", "kind", "available_delta_fen", "frozen_delta_fen", "withdrawing_delta_fen",
                   "order_id", "commission_line_id", "withdrawal_id", "memo", "created_at"]
    column_labels = {"wallet_id": "钱包", "kind": "类型", "available_delta_fen": "可提现变动", "frozen_delta_fen": "冻结变动",
                     "withdrawing_delta_fen": "提现中变动", "order_id": "订单", "commission_line_id": "佣金明细",
                     "withdrawal_id": "提现", "memo": "备注", "created_at": "时间"}
    column_labels = {**column_labels, "wallet_id": "钱包（会员）"}
    column_filters = ["kind", "wallet_id", "order_id", "withdrawal_id", "created_at"]
    column_choices = {"kind": _choices(LEDGER_KIND)}
    column_formatters = {"available_delta_fen": _yuan, "frozen_delta_fen": _yuan, "withdrawing_delta_fen": _yuan,
                         "created_at": _local, "wallet_id": _wallet_owner}


class WalletView(MoneyView):
    column_list = ["id", "user_id", "available_fen", "frozen_fen", "withdrawing_fen", "total_earned_fen",
                   "withdrawn_fen", "updated_at"]
    column_labels = {"user_id": "会员", "available_fen": "可提现", "frozen_fen": "冻结", "withdrawing_fen": "提现中",
                     "total_earned_fen": "累计收益", "withdrawn_fen": "已提现", "updated_at": "更新时间"}
    column_filters = ["user_id"]
    person_columns = ("user_id",)
    column_formatters = {name: _yuan for name in ("available_fen", "frozen_fen", "withdrawing_fen", "total_earned_fen",
                                                  "withdrawn_fen")} | {"updated_at": _local, "user_id": _person}


class CommissionLineView(MoneyView):
    column_list = ["id", "order_id", "kind", "level", "beneficiary_user_id", "base_fen", "rate_bps", "amount_fen",
                   "status", "created_at", "settled_at", "reversed_at"]
    column_labels = {"order_id": "订单", "kind": "类型", "level": "层级", "beneficiary_user_id": "受益人", "base_fen": "基数",
                     "rate_bps": "比例", "amount_fen": "金额", "status": "状态", "created_at": "产生时间",
                     "settled_at": "结算时间", "reversed_at": "冲回时间", "available_at": "冷静期结束",
                     "rule_version_id": "规则版本"}
    details_extra = ("available_at", "rule_version_id")
    column_filters = ["kind", "status", "order_id", "beneficiary_user_id", "created_at"]
    column_choices = {"kind": _choices(CommissionKind), "status": _choices(COMMISSION_STATUS)}
    person_columns = ("beneficiary_user_id",)
    column_formatters = {"base_fen": _yuan, "amount_fen": _yuan, "rate_bps": _percent, "created_at": _local,
                         "settled_at": _local, "reversed_at": _local, "available_at": _local,
                         "beneficiary_user_id": _person}


class PaymentView(MoneyView):
    column_list = ["id", "order_id", "out_trade_no", "transaction_id", "amount_fen", "status", "created_at", "paid_at"]
    column_labels = {"order_id": "订单", "out_trade_no": "商户单号", "transaction_id": "微信支付单号", "amount_fen": "金额",
                     "status": "状态", "created_at": "创建时间", "paid_at": "支付时间"}
    column_searchable_list = ["out_trade_no", "transaction_id"]
    column_filters = ["status", "order_id", "created_at"]
    column_choices = {"status": _choices(PAYMENT_STATUS)}
    column_formatters = {"amount_fen": _yuan, "created_at": _local, "paid_at": _local}


class RefundView(MoneyView):
    column_list = ["id", "order_id", "out_refund_no", "amount_fen", "status", "reason", "reject_reason", "created_at",
                   "reviewed_at", "completed_at"]
    column_labels = {"order_id": "订单", "out_refund_no": "退款单号", "amount_fen": "金额", "status": "状态", "reason": "原因",
                     "reject_reason": "拒绝/失败原因", "created_at": "申请时间", "reviewed_at": "审核时间",
                     "completed_at": "完成时间", "wechat_refund_id": "微信退款单号", "requested_by_user_id": "申请会员",
                     "reviewed_by_admin_id": "审核人"}
    details_extra = ("wechat_refund_id", "requested_by_user_id", "reviewed_by_admin_id")
    column_searchable_list = ["out_refund_no"]
    column_filters = ["status", "order_id", "created_at"]
    column_choices = {"status": _choices(REFUND_STATUS)}
    column_formatters = {"amount_fen": _yuan, "created_at": _local, "reviewed_at": _local, "completed_at": _local,
                         "requested_by_user_id": _person, "reviewed_by_admin_id": _admin}


class WithdrawalView(MoneyView):
    column_list = ["id", "withdrawal_no", "user_id", "amount_fen", "fee_fen", "status", "payout_method", "created_at",
                   "reviewed_at", "paid_at", "reject_reason", "failure_reason"]
    column_labels = {"withdrawal_no": "提现单号", "user_id": "会员", "amount_fen": "金额", "fee_fen": "手续费",
                     "status": "状态", "payout_method": "方式", "created_at": "申请时间", "reviewed_at": "审核时间",
                     "paid_at": "打款时间", "reject_reason": "拒绝原因", "failure_reason": "失败原因",
                     "payment_no": "微信付款单号", "transfer_state": "微信转账状态", "payee_name": "实名",
                     "reviewed_by_admin_id": "审核人"}
    details_extra = ("payment_no", "transfer_state", "payee_name", "reviewed_by_admin_id")
    column_searchable_list = ["withdrawal_no", "payment_no"]
    column_filters = ["status", "user_id", "created_at"]
    column_choices = {"status": _choices(WITHDRAWAL_STATUS), "payout_method": _choices(PAYOUT_METHOD)}
    person_columns = ("user_id",)
    column_formatters = {"amount_fen": _yuan, "fee_fen": _yuan, "created_at": _local, "reviewed_at": _local,
                         "paid_at": _local, "user_id": _person, "wallet_id": _wallet_owner,
                         "reviewed_by_admin_id": _admin}


class AuditLogView(MoneyView):
    """Every admin action and every money movement. Append-only: no write endpoint exists for it here, and a
    change made behind our back is found by 校验 below or ``flask --app wsgi audit-verify``."""

    column_list = ["id", "created_at", "actor_kind", "actor_id", "action", "target_type", "target_id", "detail"]
    column_labels = {"created_at": "时间", "actor_kind": "操作者类型", "actor_id": "操作者", "action": "动作",
                     "target_type": "对象类型", "target_id": "对象", "detail": "详情"}
    column_searchable_list = ["action", "target_id", "detail"]
    column_filters = ["action", "actor_kind", "actor_id", "target_type", "target_id", "created_at"]
    column_choices = {"actor_kind": _choices(ACTOR_KINDS)}
    column_formatters = {"created_at": _local, "actor_id": _actor, "detail": _audit_detail(limit=6)}
    column_formatters_detail = {**column_formatters, "detail": _audit_detail(limit=None)}
    list_template = "admin/data/audit_list.html"

    def render(self, template, **kwargs):
        if template == self.list_template:
            kwargs["verify_url"] = url_for("audit_verify.index")
        return super().render(template, **kwargs)


class AuditVerifyView(AdminOnly, BaseView):
    roles = FINANCE

    @expose("/")
    def index(self):
        broken = verify_audit_chain(db.session)
        return self.render("admin/data/audit_verify.html", broken=broken,
                           rows=db.session.scalar(select(func.count()).select_from(AuditLog)))


class DataIndexView(AdminOnly, AdminIndexView):
    """The dashboard is our own page; the data area's front door leads there."""

    @expose("/")
    def index(self):
        return redirect(url_for("admin.home"))


def csp_nonce() -> str:
    """One nonce per response for Flask-Admin's script tags; the CSP header names it (blueprints/__init__)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def init_admin_data(app) -> Admin:
    """Flask-Admin's own ``admin/base.html`` is shadowed by ours (the H5-styled admin pages), so its templates
    folder is also reachable under ``flask_admin/`` for our data-area layout to extend."""
    bundled = Path(flask_admin.__file__).parent / "templates" / "bootstrap4"
    app.jinja_loader = jinja2.ChoiceLoader([
        app.jinja_loader, jinja2.PrefixLoader({"flask_admin": jinja2.FileSystemLoader(str(bundled))}),
    ])
    data = Admin(app, name="顶俏 · 数据管理", url=URL, endpoint="admin_data",
                 index_view=DataIndexView(name="概览", url=URL, endpoint="admin_data"),
                 theme=Bootstrap4Theme(base_template="admin/data/layout.html", fluid=True),
                 csp_nonce_generator=csp_nonce)
    views = [
        (CategoryView, Category, "分类", "商品"), (ProductView, Product, "商品", "商品"),
        (RegionView, Region, "区域", "网点"), (FactoryStoreView, FactoryStore, "工厂店", "网点"),
        (OutletView, Outlet, "核销网点", "网点"),
        (MemberView, User, "会员", None), (OrderView, Order, "订单", None),
        (PaymentView, Payment, "支付", "资金（只读）"), (RefundView, Refund, "退款", "资金（只读）"),
        (CommissionLineView, CommissionLine, "佣金明细", "资金（只读）"), (LedgerView, LedgerEntry, "钱包流水", "资金（只读）"),
        (WalletView, Wallet, "钱包", "资金（只读）"), (WithdrawalView, Withdrawal, "提现记录", "资金（只读）"),
        (AuditLogView, AuditLog, "审计日志", "审计"), (AdminUserView, AdminUser, "后台账号", "审计"),
    ]
    for view, model, name, category in views:
        data.add_view(view(model, db, name=name, category=category, endpoint=f"data_{model.__tablename__}",
                           url=model.__tablename__))
    data.add_view(AuditVerifyView(name="校验审计链", category="审计", endpoint="audit_verify", url="audit-verify"))
    data.add_link(MenuLink(name="开设区域、工厂店、网点", endpoint="admin_network.index", category="网点"))
    data.add_link(MenuLink(name="库存调整", endpoint="admin_stock.index", category="商品"))
    data.add_link(MenuLink(name="导出", endpoint="admin_exports.index", category="审计"))
    data.add_link(MenuLink(name="← 运营后台", endpoint="admin.home"))
    return data
