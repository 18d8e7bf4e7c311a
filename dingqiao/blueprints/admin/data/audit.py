"""审计: the audit log (finance's to read) with each row's detail as a field / old / new table, and the chain
check. Append-only: no write endpoint exists for it here, and a change made behind our back is found by 校验
or ``flask --app wsgi audit-verify``."""
import json

from flask import url_for
from flask_admin import BaseView, expose
from markupsafe import Markup

from ....extensions import db
from ....services import data_pages
from ....services.audit import verify_audit_chain
from .base import AdminOnly
from .columns import admin_names, choices, local, people, person_link
from .money import FINANCE, MoneyView

ACTOR_KINDS = {"admin": "管理员", "user": "会员", "system": "系统"}  # AuditLog.actor_kind is a plain word, no enum

# Fields of audit details that hold a member's id (wallet movements, shops, bindings, team accounts).
AUDIT_PERSON_FIELDS = frozenset({"user", "user_id", "upline_id", "owner_user_id", "staff_user_id",
                                 "beneficiary_user_id"})


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


def _audit_value(field: str, value) -> str:
    if field in AUDIT_PERSON_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return f"{people([value]).get(value, '?')}（#{value}）"
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
        return admin_names().get(model.actor_id, f"#{model.actor_id}")
    if model.actor_kind == "user":
        return person_link(model.actor_id)
    return f"#{model.actor_id}"


class AuditLogView(MoneyView):
    """Every admin action and every money movement."""

    column_list = ["id", "created_at", "actor_kind", "actor_id", "action", "target_type", "target_id", "detail"]
    column_labels = {"created_at": "时间", "actor_kind": "操作者类型", "actor_id": "操作者", "action": "动作",
                     "target_type": "对象类型", "target_id": "对象", "detail": "详情"}
    column_searchable_list = ["action", "target_id", "detail"]
    column_filters = ["action", "actor_kind", "actor_id", "target_type", "target_id", "created_at"]
    column_choices = {"actor_kind": choices(ACTOR_KINDS)}
    column_formatters = {"created_at": local, "actor_id": _actor, "detail": _audit_detail(limit=6)}
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
                           rows=data_pages.audit_row_count(db.session))
