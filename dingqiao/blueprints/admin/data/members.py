"""People and orders: members and orders are searched here and open our own workflow pages; the team's
accounts (superadmin only) are edited here."""
from wtforms import StringField

from ....models import AdminRole, Identity, OrderStatus
from ....services import data_pages
from ...common import current_admin
from .base import DataView, ReadOnlyView
from .columns import choices, link, local, person_link, yuan


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
    column_choices = {"identity": choices(Identity)}
    column_formatters = {
        "nickname": link("member", lambda user: user.display_name),
        "binding.upline": lambda _v, _c, model, _n: model.binding.upline.display_name if model.binding else "—",
        "created_at": local, "last_login_at": local,
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
    person_columns = ("user_id",)
    column_formatters = {
        "order_no": link("order", lambda order: order.order_no),
        "user": lambda _v, _c, model, _n: person_link(model.user_id),
        "outlet": lambda _v, _c, model, _n: model.outlet.name,
        "total_fen": yuan, "created_at": local, "paid_at": local, "redeemed_at": local,
    }
    column_choices = {"status": choices(OrderStatus)}


class AdminUserView(DataView):
    """Team accounts (superadmin only). The password is set here but never shown or audited; the rules are
    ``data_pages.apply_admin_account``'s."""

    roles = (AdminRole.SUPERADMIN,)
    can_delete = False
    column_list = ["id", "username", "role", "is_active", "created_at", "last_login_at"]
    column_labels = {"username": "用户名", "role": "角色", "is_active": "启用", "created_at": "创建时间",
                     "last_login_at": "最近登录"}
    column_formatters = {"created_at": local, "last_login_at": local}
    column_choices = {"role": choices(AdminRole)}
    form_columns = ["username", "role", "is_active", "new_password"]
    form_choices = {"role": choices(AdminRole)}
    form_extra_fields = {"new_password": StringField(
        f"新密码（至少 {data_pages.MIN_ADMIN_PASSWORD_LENGTH} 位；不改请留空）")}
    audit_exclude = frozenset({"password_hash"})

    def on_model_change(self, form, model, is_created):
        # A new account is nobody's own: reading the acting admin (a refresh, which flushes) would insert the
        # pending row before its password is checked and set.
        acting = None if is_created else current_admin().id
        return data_pages.apply_admin_account(model, password=form.new_password.data or "", is_created=is_created,
                                              acting_admin_id=acting)
