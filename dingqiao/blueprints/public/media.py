"""Uploaded images from the instance folder. Only image types are served, never as HTML.

After-sales photos are private: only the member whose case they belong to and the team see them, and no
cache keeps a copy. Product pictures, banners and article images are public.

A file has one address: its canonical path relative to the uploads folder. Any other spelling of it —
``./service/…``, ``x/../service/…``, ``a//b`` (after the URL's own ``%2e``/``%2f`` decoding) — is a 404, so the
privacy decision is always made on the very path that is then served."""
import posixpath
from pathlib import PurePosixPath

from flask import Blueprint, abort, current_app, send_from_directory

from ...extensions import db
from ...services.service_cases import PHOTO_KIND, photo_owner
from ..common import current_admin, current_member

bp = Blueprint("media", __name__, url_prefix="/media")

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
MAX_AGE = 86400

@bp.get("/<path:filename>")
def file(filename: str):
    mimetype = IMAGE_TYPES.get(PurePosixPath(filename).suffix.lower())
    if mimetype is None or not is_canonical(filename):
        abort(404)
    # Private when a stored after-sales photo has this path, and — should a file ever lie in the photo
    # folder without its row — by its folder too: nothing there is ever public.
    owner_id = photo_owner(db.session, filename)
    private = owner_id is not None or PurePosixPath(filename).parts[0] == PHOTO_KIND
    if private and not _may_see_photo(owner_id):
        abort(404)  # like a missing file, so photo addresses cannot be probed
    # send_from_directory also refuses paths that leave the folder.
    response = send_from_directory(current_app.config["UPLOAD_FOLDER"], filename, mimetype=mimetype,
                                   max_age=None if private else MAX_AGE)
    response.headers["Content-Disposition"] = "inline"
    if private:
        response.cache_control.public = False
        response.cache_control.max_age = None
        response.cache_control.private = True
        response.cache_control.no_store = True
    return response


def is_canonical(path: str) -> bool:
    """A relative path with no empty, "." or ".." segment: exactly what ``normpath`` leaves unchanged."""
    return not path.startswith("/") and posixpath.normpath(path) == path and ".." not in path.split("/")


def _may_see_photo(owner_id: int | None) -> bool:
    if current_admin() is not None:
        return True
    member = current_member()
    return member is not None and owner_id is not None and owner_id == member.id
