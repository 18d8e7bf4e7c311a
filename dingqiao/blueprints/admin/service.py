"""The operations team's side of after-sales cases: the queue, a case's thread, reply and close. Any admin
role may answer; every reply and closing is audited by the service."""
from flask import Blueprint, render_template, request, url_for

from ...extensions import db
from ...models import CaseKind, CaseStatus
from ...services import service_cases
from ...services.submissions import FIELD_NAME as SUBMISSION_KEY
from ...web import arg_id, redirect_after_post
from ..common import current_admin, photo_storage, require_admin, uploaded_photos
from .forms import ReplyForm

bp = Blueprint("admin_service", __name__, url_prefix="/admin/service")
bp.before_request(require_admin())


@bp.get("/")
def queue():
    status = request.args.get("status", "")
    if status not in set(CaseStatus):
        status = ""
    return render_template("admin/service/queue.html", admin=current_admin(), status=status,
                           page=service_cases.admin_queue(db.session, status, arg_id("page")),
                           statuses=list(CaseStatus), CaseKind=CaseKind, CaseStatus=CaseStatus)


@bp.get("/<int:case_id>")
def detail(case_id: int):
    return render_template("admin/service/detail.html", admin=current_admin(),
                           thread=service_cases.admin_thread(db.session, case_id), max_photos=service_cases.MAX_PHOTOS,
                           max_body=service_cases.MAX_BODY_LENGTH, CaseKind=CaseKind, CaseStatus=CaseStatus)


@bp.post("/<int:case_id>/reply")
def reply(case_id: int):
    service_cases.add_admin_reply(db.session, current_admin(), case_id, ReplyForm().body.data or "",
                                  photos=uploaded_photos(), **photo_storage(),
                                  submission_key=request.form.get(SUBMISSION_KEY))
    return redirect_after_post(url_for("admin_service.detail", case_id=case_id))


@bp.post("/<int:case_id>/close")
def close(case_id: int):
    service_cases.close_case_by_admin(db.session, current_admin(), case_id,
                                      submission_key=request.form.get(SUBMISSION_KEY))
    return redirect_after_post(url_for("admin_service.detail", case_id=case_id))
