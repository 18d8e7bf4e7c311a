"""Brand and product articles as members read them (filled in by the content work)."""
from flask import Blueprint

bp = Blueprint("content", __name__, url_prefix="/articles")
