"""消息中心: the member's messages (the outbox rows written with each event), unread first in the eye: a badge
on the tab bar refreshed by htmx polling and on every navigation, mark-as-read on opening or all at once."""
from flask import Blueprint, redirect, render_template, url_for

from ...extensions import db
from ...services.messages import inbox, inside_link, mark_all_read, mark_read, unread_count
from ...web import arg_id, redirect_after_post, render_page
from ..common import current_member, require_member

bp = Blueprint("messages", __name__, url_prefix="/messages")
bp.before_request(require_member)
PAGE = 30


@bp.get("/")
def index():
    member = current_member()
    rows = inbox(db.session, member.id, before_id=arg_id("before"), limit=PAGE)
    return render_page("messages/index.html", block="rows", rows=rows, more=len(rows) == PAGE,
                       unread=unread_count(db.session, member.id))


@bp.get("/<int:message_id>")
def open_message(message_id: int):
    """Mark it read and go where it points (inside the H5 only), or back to the list."""
    message = mark_read(db.session, current_member().id, message_id)
    return redirect(inside_link(message.link) or url_for("messages.index"))


@bp.post("/read-all")
def read_all():
    mark_all_read(db.session, current_member().id)
    return redirect_after_post(url_for("messages.index"))


@bp.get("/badge")
def badge():
    """The tab bar's unread badge, for htmx polling."""
    response = render_template("messages/_badge.html", unread_messages=unread_count(db.session, current_member().id))
    return response, 200, {"Cache-Control": "no-store"}
