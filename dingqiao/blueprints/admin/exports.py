"""Exports of orders, commissions and withdrawals for a date range, as CSV and as XLSX."""
from tempfile import TemporaryFile
from urllib.parse import quote

from flask import Blueprint, Response, render_template, request, stream_with_context
from werkzeug.wsgi import wrap_file

from ...extensions import db
from ...forms import place_refusal
from ...models.base import utcnow
from ...services import DomainError, Forbidden, exports
from ...services.periods import china_today
from ..common import current_admin, require_admin
from .forms import ExportForm

bp = Blueprint("admin_exports", __name__, url_prefix="/admin/exports")
bp.before_request(require_admin())

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _form(form: ExportForm, status: int = 200, error: str | None = None):
    admin, today = current_admin(), china_today(utcnow())
    values = {"kind": form.kind.data or exports.ExportKind.ORDERS,
              "start": form.start.data or today.replace(day=1).isoformat(),
              "end": form.end.data or today.isoformat()}
    return render_template("admin/exports.html", admin=admin, kinds=exports.kinds_for(admin), values=values,
                           form=form, error=error), status


@bp.get("/")
def index():
    """The form: what to export, from which China-time day to which (this month so far by default)."""
    return _form(ExportForm(request.args))


@bp.get("/download")
def download():
    """The file itself. A GET, because an export changes no business data and a plain link or bookmark should
    work; it still writes one audit row, which is the point of auditing an export."""
    form = ExportForm(request.args)
    try:
        export = exports.parse_export(form.kind.data, form.start.data, form.end.data, form.format.data)
        rows = exports.begin_export(db.session, current_admin(), export)
    except DomainError as exc:
        if isinstance(exc, Forbidden):
            raise
        return _form(form, 400, None if place_refusal(form, exc) else exc.message)  # next to its field if it has one
    if export.format is exports.ExportFormat.CSV:
        response = Response(stream_with_context(exports.write_csv(export, rows)), mimetype="text/csv")
    else:
        # Built on disk rather than in memory; the response streams the file and closes (deletes) it.
        out = TemporaryFile()
        exports.write_xlsx(export, rows, out)
        out.seek(0)
        response = Response(wrap_file(request.environ, out), mimetype=XLSX_MIMETYPE, direct_passthrough=True)
    response.headers["Content-Disposition"] = (
        f"attachment; filename={export.ascii_filename}; filename*=UTF-8''{quote(export.filename)}"
    )
    response.headers["Cache-Control"] = "private, no-store"  # personal data: no copies in caches
    return response
