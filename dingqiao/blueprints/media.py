"""Uploaded images from the instance folder. Only image types are served, never as HTML."""
from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory

bp = Blueprint("media", __name__, url_prefix="/media")

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


@bp.get("/<path:filename>")
def file(filename: str):
    mimetype = IMAGE_TYPES.get(Path(filename).suffix.lower())
    if mimetype is None:
        abort(404)
    # send_from_directory refuses paths that leave the folder.
    response = send_from_directory(current_app.config["UPLOAD_FOLDER"], filename, mimetype=mimetype, max_age=86400)
    response.headers["Content-Disposition"] = "inline"
    return response
