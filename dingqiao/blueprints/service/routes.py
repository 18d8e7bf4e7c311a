"""售后与客服: a member's cases, each a message thread with the team, with photos. Someone else's case
answers 404, exactly like a missing one."""
from flask import Blueprint, current_app, request, url_for

from ...extensions import db
from ...models import CaseKind, CaseStatus
from ...services import service_cases
from ...web import redirect_after_post, render_page
from ..common import current_member, photo_storage, require_member, uploaded_photos
from .forms import CaseForm, CaseMessageForm, CloseCaseForm

bp = Blueprint("service", __name__, url_prefix="/service")
bp.before_request(require_member)


@bp.get("/")
def index():
    member = current_member()
    preselected = request.args.get("order", "").strip()
    return render_page(
        "service/index.html",
        cases=service_cases.member_cases(db.session, member.id),
        orders=service_cases.order_choices(db.session, member.id, preselected),
        preselected=preselected,
        kinds=list(CaseKind),
        **_page_values(),
    )


@bp.post("/")
def open_case():
    form = CaseForm()
    case = service_cases.open_case(
        db.session, current_member().id, kind=form.kind.data or "", subject=form.subject.data or "",
        body=form.body.data or "", order_no=form.order_no.data, photos=uploaded_photos(), **photo_storage(),
        submission_key=form.key,
    )
    return redirect_after_post(url_for("service.detail", case_id=case.id))


@bp.get("/<int:case_id>")
def detail(case_id: int):
    thread = service_cases.member_thread(db.session, current_member().id, case_id)
    return render_page("service/detail.html", thread=thread, **_page_values())


@bp.post("/<int:case_id>/messages")
def add_message(case_id: int):
    form = CaseMessageForm()
    service_cases.add_member_message(db.session, current_member().id, case_id, form.body.data or "",
                                     photos=uploaded_photos(), **photo_storage(), submission_key=form.key)
    return redirect_after_post(url_for("service.detail", case_id=case_id))


@bp.post("/<int:case_id>/close")
def close(case_id: int):
    service_cases.close_member_case(db.session, current_member().id, case_id, submission_key=CloseCaseForm().key)
    return redirect_after_post(url_for("service.detail", case_id=case_id))


def _page_values() -> dict:
    """The labels and the limits the forms tell the member before they write and choose photos."""
    return {"CaseKind": CaseKind, "CaseStatus": CaseStatus, "max_photos": service_cases.MAX_PHOTOS,
            "max_photo_mb": current_app.config["UPLOAD_MAX_BYTES"] // (1024 * 1024),
            "max_subject": service_cases.MAX_SUBJECT_LENGTH, "max_body": service_cases.MAX_BODY_LENGTH}
