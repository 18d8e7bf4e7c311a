"""Uploaded images from the instance folder. Only image types are served, never as HTML.

After-sales photos are private: only the member whose case they belong to and the team see them, and no
shared cache keeps a copy. Product pictures, banners and article images are public."""
from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory
from sqlalchemy import select

from ..extensions import db
from ..models import ServiceCase, ServiceMessage, ServicePhoto
from ..services.service_cases import PHOTO_KIND
from .access import current_admin, current_member

bp = Blueprint("media", __name__, url_prefix="/media")

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
MAX_AGE = 86400


@bp.get("/<path:filename>")
def file(filename: str):
    mimetype = IMAGE_TYPES.get(Path(filename).suffix.lower())
    if mimetype is None:
        abort(404)
    private = filename.startswith(f"{PHOTO_KIND}/")
    if private and not _may_see_case_photo(filename):
        abort(404)  # like a missing file, so photo addresses cannot be probed
    # send_from_directory refuses paths that leave the folder.
    response = send_from_directory(current_app.config["UPLOAD_FOLDER"], filename, mimetype=mimetype, max_age=MAX_AGE)
    response.headers["Content-Disposition"] = "inline"
    if private:
        response.cache_control.public = False
        response.cache_control.private = True
    return response


def _may_see_case_photo(path: str) -> bool:
    if current_admin() is not None:
        return True
    member = current_member()
    if member is None:
        return False
    owner_id = db.session.scalar(
        select(ServiceCase.user_id)
        .join(ServiceMessage, ServiceMessage.case_id == ServiceCase.id)
        .join(ServicePhoto, ServicePhoto.message_id == ServiceMessage.id)
        .where(ServicePhoto.path == path)
    )
    return owner_id == member.id
