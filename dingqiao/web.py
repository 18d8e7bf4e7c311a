"""The one place that decides page vs fragment, and the one error convention for views.

A request gets only a fragment when htmx asked for it, except for a history restore (htmx 2 sends
HX-Request on those too) and a boosted navigation, which both need the whole page.
"""
import re

from flask import Response, make_response, redirect, render_template, request
from jinja2_fragments.flask import render_block
from werkzeug.routing import IntegerConverter

from .extensions import htmx


def wants_fragment() -> bool:
    return bool(htmx) and not htmx.history_restore_request and not htmx.boosted


def render_page(template: str, block: str | None = None, *, status_code: int = 200, **context) -> Response:
    """Render ``template`` whole, or only ``block`` of it for an htmx request; one template serves both."""
    if block and wants_fragment():
        body = render_block(template, block, **context)
    else:
        body = render_template(template, **context)
    response = make_response(body, status_code)
    response.vary.add("HX-Request")
    return response


def redirect_after_post(target: str, status: int = 303) -> Response:
    """After a state change: htmx is told to navigate (HX-Redirect), a plain form gets a redirect."""
    if htmx:
        return make_response("", 204, {"HX-Redirect": target})
    return redirect(target, status)


def error_response(message: str, status: int) -> Response:
    """A human message in Chinese: a small fragment for htmx, a whole page otherwise."""
    if wants_fragment():
        response = make_response(render_template("_error.html", message=message), status)
        # Errors land in the page's one message area, whatever the request targeted.
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    else:
        response = make_response(render_template("error.html", message=message, status=status), status)
    response.vary.add("HX-Request")
    return response


def current_path() -> str:
    """This request's path with its query string, for ?next=; no dangling "?" when there is no query."""
    query = request.query_string.decode("utf-8", "replace")
    return f"{request.path}?{query}" if query else request.path


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


# Ids, quantities and page numbers from the outside: ASCII digits only ("²".isdigit() is True), and small
# enough for a 64-bit column — a longer number is no id of ours, never a database overflow.
_ID = re.compile(r"^[0-9]{1,18}$")
MAX_ID = 10**18 - 1


def parse_id(raw: str | None) -> int | None:
    return int(raw) if raw is not None and _ID.fullmatch(raw.strip()) else None


def parse_signed_int(raw: str | None) -> int | None:
    """"+12" / "-3" / "7" → int (at most 7 digits, for stock changes); anything else → None."""
    text = (raw or "").strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not digits.isascii() or not digits.isdigit() or len(digits) > 7:
        return None
    return int(text)


def arg_id(name: str) -> int | None:
    return parse_id(request.args.get(name))


class BoundedIntConverter(IntegerConverter):
    """``<int:…>`` in every route: a number beyond any 64-bit id is a 404, not a database error."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)
