"""Banners, articles and announcements in the admin pages (filled in by the content work)."""
from flask import Blueprint

bp = Blueprint("admin_content", __name__, url_prefix="/admin/content")
