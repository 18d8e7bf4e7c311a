"""消息中心: the member's messages with unread counts."""
from flask import Blueprint

bp = Blueprint("messages", __name__, url_prefix="/messages")
