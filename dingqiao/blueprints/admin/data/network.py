"""网点: regions, factory stores and outlets. They are opened on the network pages (/admin/network/) or by an
identity application, both through services/network.py (where "one factory store per region" is decided);
here they are renamed, corrected, suspended and reopened."""
from flask import flash
from flask_admin.actions import action

from ....extensions import db
from ....models import SiteStatus
from ....services import outlets
from ...common import current_admin
from .base import DataView
from .columns import choices, local, person

STATUS_CHOICES = choices(SiteStatus)


class RegionView(DataView):
    """Regions are created on the network pages; here they are renamed, or deleted while empty."""

    can_create = False
    column_list = ["id", "code", "name", "factory_store", "created_at"]
    column_labels = {"code": "编号", "name": "名称", "factory_store": "工厂店", "created_at": "创建时间"}
    column_searchable_list = ["code", "name"]
    column_formatters = {"created_at": local,
                         "factory_store": lambda _v, _c, model, _n: model.factory_store.name if model.factory_store else "—"}
    form_columns = ["code", "name"]
    form_args = {"code": {"label": "编号"}, "name": {"label": "名称"}}


class SiteView(DataView):
    can_create = can_delete = False
    site_kind = ""
    column_searchable_list = ["name", "address", "phone"]
    column_filters = ["status", "region.name"]
    column_formatters = {"created_at": local, "owner_user_id": person}
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
    """A factory store's details and status; its region is set when it opens, not edited here."""

    site_kind = "factory_store"
    column_list = ["id", "name", "region", "address", "phone", "status", "created_at"]
    column_labels = {"name": "店名", "region": "独家区域", "address": "地址", "phone": "电话", "status": "状态",
                     "created_at": "开通时间", "region.name": "区域", "owner_user_id": "店主"}
    form_columns = ["name", "address", "phone", "status"]
