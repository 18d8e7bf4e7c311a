"""数据管理: Flask-Admin list / search / filter / sort / edit views over the tables an operations team browses.

Workflows with rules of their own (refunds, withdrawals, commission rules, applications, a member's relation, an
order's whole story, stock adjustments, exports) are our own views in the ``admin*`` blueprints; rows here link
to them. Three things hold for every view below:

- who: an admin, and for some views only finance (superadmin always) — anyone else is sent to the admin login
  or gets 403;
- writes run in one ``write_transaction`` together with an audit row naming each changed field (old, new)
  (services/data_pages.py);
- money tables (ledger, commission lines, payments, refunds, withdrawals, wallets) and the audit log are read
  only: the create / edit / delete endpoints answer 403 whatever is posted, because money moves only through
  the services.

One module per subject: base.py (access, the write hooks, the query-string and bulk-action checks, the nonce),
columns.py (how a cell shows), catalog.py, network.py, members.py, money.py, audit.py.
"""
from pathlib import Path

import flask_admin
import jinja2
from flask import redirect, url_for
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.menu import MenuLink
from flask_admin.theme import Bootstrap4Theme

from ....extensions import db
from ....models import (
    AdminUser,
    AuditLog,
    Category,
    CommissionLine,
    FactoryStore,
    LedgerEntry,
    Order,
    Outlet,
    Payment,
    Product,
    Refund,
    Region,
    User,
    Wallet,
    Withdrawal,
)
from .audit import AuditLogView, AuditVerifyView, audit_detail_rows  # noqa: F401  (audit_detail_rows: tests)
from .base import AdminOnly, csp_nonce
from .catalog import CategoryView, ProductView
from .members import AdminUserView, MemberView, OrderView
from .money import CommissionLineView, LedgerView, PaymentView, RefundView, WalletView, WithdrawalView
from .network import FactoryStoreView, OutletView, RegionView

URL = "/admin/data"


class DataIndexView(AdminOnly, AdminIndexView):
    """The dashboard is our own page; the data area's front door leads there."""

    @expose("/")
    def index(self):
        return redirect(url_for("admin.home"))


VIEWS = [
    (CategoryView, Category, "分类", "商品"), (ProductView, Product, "商品", "商品"),
    (RegionView, Region, "区域", "网点"), (FactoryStoreView, FactoryStore, "工厂店", "网点"),
    (OutletView, Outlet, "核销网点", "网点"),
    (MemberView, User, "会员", None), (OrderView, Order, "订单", None),
    (PaymentView, Payment, "支付", "资金（只读）"), (RefundView, Refund, "退款", "资金（只读）"),
    (CommissionLineView, CommissionLine, "佣金明细", "资金（只读）"), (LedgerView, LedgerEntry, "钱包流水", "资金（只读）"),
    (WalletView, Wallet, "钱包", "资金（只读）"), (WithdrawalView, Withdrawal, "提现记录", "资金（只读）"),
    (AuditLogView, AuditLog, "审计日志", "审计"), (AdminUserView, AdminUser, "后台账号", "审计"),
]


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
    for view, model, name, category in VIEWS:
        data.add_view(view(model, db, name=name, category=category, endpoint=f"data_{model.__tablename__}",
                           url=model.__tablename__))
    data.add_view(AuditVerifyView(name="校验审计链", category="审计", endpoint="audit_verify", url="audit-verify"))
    data.add_link(MenuLink(name="开设区域、工厂店、网点", endpoint="admin_network.index", category="网点"))
    data.add_link(MenuLink(name="库存调整", endpoint="admin_stock.index", category="商品"))
    data.add_link(MenuLink(name="导出", endpoint="admin_exports.index", category="审计"))
    data.add_link(MenuLink(name="← 运营后台", endpoint="admin.home"))
    return data
