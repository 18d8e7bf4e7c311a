"""What every data page shares: who may open it, Flask-Admin's inline click handlers moved out of the HTML
(our CSP runs none), the per-response script nonce, the query string and bulk-action ids checked before
Flask-Admin reads them, and the write hooks handing each change to services/data_pages.py (one transaction
with its audit row)."""
import re
import secrets

from flask import abort, current_app, flash, g, make_response, redirect, request, url_for
from flask_admin.contrib.sqla import ModelView
from flask_wtf import FlaskForm
from sqlalchemy.exc import IntegrityError

from ....extensions import db, htmx
from ....models import AdminRole
from ....services import DomainError, Forbidden, NotFound, data_pages
from ....uploads import delete_stored
from ....web import MAX_ID, current_path, parse_id
from ...common import current_admin
from . import columns


class DataForm(FlaskForm):
    """FlaskForm carries the CSRF token the app-wide CSRFProtect checks; Flask-Admin's unique-value check also
    needs to know which row is being edited (else saving a row unchanged finds "itself" and refuses).
    ``stored_uploads`` are files a save wrote before it failed (deleted again), ``files_to_delete`` the ones
    it stopped using (deleted once it committed)."""

    def __init__(self, formdata=None, obj=None, **kwargs):
        self._obj = obj
        self.stored_uploads: list[str] = []
        self.files_to_delete: list[str] = []
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


def csp_nonce() -> str:
    """One nonce per response for Flask-Admin's script tags; the CSP header names it (blueprints/__init__)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


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
    """A table the team may edit: every write is one transaction with its audit row (services/data_pages.py).
    A view's ``on_model_change`` may return what the audit row adds to the changed fields."""

    form_base_class = DataForm
    page_size = 50
    can_set_page_size = True
    can_view_details = True
    column_display_pk = True
    audit_exclude: frozenset[str] = frozenset()
    person_columns: tuple[str, ...] = ()  # member ids shown as names: read for the whole page at once
    order_columns: tuple[str, ...] = ()  # order ids shown as order numbers: read for the whole page at once
    wallet_columns: tuple[str, ...] = ()  # wallet ids shown as their members' names: read for the whole page at once
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
        owners = columns.wallet_owners(getattr(row, column) for row in rows for column in self.wallet_columns)
        columns.people([*(getattr(row, column) for row in rows for column in self.person_columns), *owners.values()])
        columns.order_numbers(getattr(row, column) for row in rows for column in self.order_columns)
        return count, rows

    @property
    def last_page(self) -> int:
        """The highest ?page= whose OFFSET the database still takes (64 bits), whatever the page size."""
        return MAX_ID // max(self.page_size_options)

    def _get_list_extra_args(self):
        # Flask-Admin takes ?page= as any integer and a word as page 0: a negative one or one past 64 bits
        # reached the database as an OFFSET it refuses (a 500). Only a plain page number is a page; a page past
        # the last row within these bounds is simply empty.
        raw = request.args.get("page")
        if raw is not None and raw != "" and ((page := parse_id(raw)) is None or page > self.last_page):
            raise NotFound("没有这一页：页码需为 0 或正整数。")
        return super()._get_list_extra_args()

    def handle_action(self, return_view=None):
        """Bulk actions get the chosen rows' ids as the browser sent them: anything but plain row numbers is
        refused here, once for every action, before one of them turns it into an int: nothing is written, and
        the answer is 400 with the reason in Chinese on the admin's error page."""
        if any(parse_id(raw) is None for raw in request.form.getlist("rowid")):
            raise DomainError("所选记录无效，请刷新列表后重新选择。")
        return super().handle_action(return_view)

    # ------------------------------------------------------------ writes: one service call each

    def create_model(self, form):
        model = self.build_new_instance()

        def fill():
            form.populate_obj(model)
            db.session.add(model)
            return self.on_model_change(form, model, True)

        try:
            data_pages.create_row(db.session, current_admin().id, model, fill, exclude=self.audit_exclude)
        except Exception as exc:
            self._failed(exc, form)
            return False
        self.after_model_change(form, model, True)
        return model

    def update_model(self, form, model):
        def fill():
            form.populate_obj(model)
            return self.on_model_change(form, model, False)

        try:
            data_pages.update_row(db.session, current_admin().id, model, fill, exclude=self.audit_exclude)
        except Exception as exc:
            self._failed(exc, form)
            return False
        self.after_model_change(form, model, False)
        return True

    def delete_model(self, model):
        try:
            data_pages.delete_row(db.session, current_admin().id, model, lambda: self.on_model_delete(model),
                                  exclude=self.audit_exclude)
        except Exception as exc:
            self._failed(exc)
            return False
        self.after_model_delete(model)
        return True

    def _failed(self, exc: Exception, form: DataForm | None = None) -> None:
        """The write is rolled back; the page says why in Chinese and never shows SQL or a stack trace."""
        db.session.rollback()
        if form is not None:
            delete_stored(current_app.config["UPLOAD_FOLDER"], form.stored_uploads)
            form.stored_uploads = []
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
