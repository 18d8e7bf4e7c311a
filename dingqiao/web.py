"""The one place that decides page vs fragment, and the one error convention for views; also the page cache's
one way in (``cached``: rendered parts of busy pages), and which pages browsers must not keep at all.

A request gets only a fragment when htmx asked for it, except for a history restore (htmx 2 sends
HX-Request on those too) and a boosted navigation, which both need the whole page.
"""
import re
from collections.abc import Callable
from typing import TypeVar

from flask import Response, current_app, g, make_response, redirect, render_template, request, url_for
from flask.ctx import RequestContext
from flask.globals import _cv_request
from jinja2_fragments.flask import render_block
from werkzeug.routing import IntegerConverter

from .extensions import cache, htmx
from .services import Conflict, DomainError, Forbidden, NeedsHigherRole, NotAuthenticated, NotFound, TooManyAttempts


def request_context() -> RequestContext | None:
    """The request being answered (``.app``, ``.request``), or None outside one: read straight from Flask's context
    variable. Each access through werkzeug's proxies (``request``, ``current_app``) costs about a microsecond, so
    the helpers every page calls many times (``page_url``, ``cached``, the layout's parts) read it once this way."""
    return _cv_request.get(None)


def wants_fragment() -> bool:
    return bool(htmx) and not htmx.history_restore_request and not htmx.boosted


def render_page(template: str, block: str | None = None, *, status_code: int = 200, **context) -> Response:
    """Render ``template`` whole, or only ``block`` of it for an htmx request; one template serves both."""
    if block and wants_fragment():
        body = render_block(template, block, **context)
    else:
        body = render_template(template, **context)
    return html_response(body, status_code)


def html_response(body: str, status_code: int = 200) -> Response:
    """HTML that differs between htmx and plain requests to the same URL (a page or one of its fragments)."""
    response = make_response(body, status_code)
    response.vary.add("HX-Request")
    return response


def redirect_after_post(target: str, status: int = 303) -> Response:
    """After a state change: htmx is told to navigate (HX-Redirect), a plain form gets a redirect."""
    if htmx:
        return make_response("", 204, {"HX-Redirect": target})
    return redirect(target, status)


# Pages whose state moves under the visitor's feet — what is in the cart, whether an order is paid, the balance,
# the unread messages — and pages marked private_page: the browser keeps no copy of them, not on disk, not in
# the back-forward cache (app.js reloads one restored from it), not in htmx's history cache (base.html's
# hx-history="false"), so Back after paying shows the order paid and the cart emptied.
NO_STORE_BLUEPRINTS = frozenset({"cart", "orders", "wallet", "messages"})
NO_STORE = "private, no-store"


def is_no_store_page() -> bool:
    return request_context().request.blueprint in NO_STORE_BLUEPRINTS or g.get("no_store_page", False)


def mark_no_store_page() -> str:
    """Called by base.html for a page marked private_page; returns nothing to print."""
    g.no_store_page = True
    return ""


def keep_out_of_caches(response: Response) -> Response:
    """After every request: a no-store page says so, unless its view chose a Cache-Control of its own."""
    if "Cache-Control" not in response.headers and is_no_store_page():
        response.headers["Cache-Control"] = NO_STORE
    return response


# The response header naming the form field a refusal is about (a DomainError's ``field``): app.js shows the
# message in that field's slot of the form that was sent (templates/_field_errors.html, ``slot``), if it has one.
FIELD_HEADER = "DQ-Field"


def error_response(message: str, status: int, field: str | None = None) -> Response:
    """A human message in Chinese: a small fragment for htmx, a whole page otherwise."""
    if wants_fragment():
        response = make_response(render_template("_error.html", message=message), status)
        # Errors land in the page's one message area, whatever the request targeted, unless the form sent has a
        # place for them next to ``field`` (app.js moves it there).
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
        if field:
            response.headers[FIELD_HEADER] = field
    else:
        response = make_response(render_template("error.html", message=message, status=status), status)
    response.vary.add("HX-Request")
    return response


# What each kind of refusal is in HTTP (dingqiao.services): the first class the error is an instance of.
_DOMAIN_ERROR_STATUS = ((NotFound, 404), (Forbidden, 403), (NeedsHigherRole, 403), (Conflict, 409),
                        (NotAuthenticated, 401), (TooManyAttempts, 429))


def domain_error_status(exc: DomainError) -> int:
    """The HTTP status for a refusal from the services: by its kind, 400 for a plain one (the request is wrong)."""
    for kind, status in _DOMAIN_ERROR_STATUS:
        if isinstance(exc, kind):
            return status
    return 400


T = TypeVar("T")


def cached(key: tuple, ttl_seconds: int, make: Callable[[], T]) -> T:
    """The value the page cache (extensions.cache: this worker's, or Redis shared by all) keeps for ``key`` if it
    is younger than ``ttl_seconds``, else ``make()``, kept from now on. ``key`` names what it is and carries the
    versions of the data it was made from (services/cache_versions.py), so an admin's save is never served
    late; the mount point is added (rendered links start with it). A TTL of 0 keeps nothing. Work out ``key``
    before calling: a value made while a save commits is then kept under the old version, which no later
    request asks for."""
    if ttl_seconds <= 0:
        return make()
    context = request_context()
    name = _cache_name(context.request.script_root, key)
    backend = context.app.extensions["cache"][cache]  # what ``cache.get`` finds through current_app
    value = backend.get(name)
    if value is None:
        value = make()
        backend.set(name, value, timeout=ttl_seconds)
    return value


def forget(key: tuple) -> None:
    """Drop what ``cached`` keeps for ``key``: in this worker, or in every worker with Redis."""
    cache.delete(_cache_name(request.script_root, key))


def _cache_name(script_root: str, key: tuple) -> str:
    return repr((script_root, *key))


# Addresses drawn into pages: werkzeug builds each one anew (about 5% of a product page's instructions, by
# bench/page_instructions.py), though an address depends only on its endpoint and values and on where the request
# came in — mount point, host, port and scheme, all in the WSGI environ once ProxyFix has read the proxy's headers.
# So they are remembered per app under exactly those (a memo, nothing expires: the URL map never changes while the
# app runs), at most URLS_PER_APP of them. A long value is built each time and not kept: it comes from the request
# (a login link's ?next= carries the visitor's own path), and keeping it would let visitors fill a worker's memory.
URLS_PER_APP = 4096
KEPT_VALUE_CHARS = 64
_URL_ENVIRON = ("SCRIPT_NAME", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme")


def page_url(endpoint: str, **values) -> str:
    """``url_for`` for pages (templates' ``url_for`` is this one): the same address, built once per app."""
    context = request_context()
    if context is None or context.app.url_default_functions:
        return url_for(endpoint, **values)
    environ = context.request.environ
    if endpoint[:1] == ".":  # relative to the request's blueprint
        blueprint = context.request.blueprint
        endpoint = f"{blueprint}{endpoint}" if blueprint else endpoint[1:]
    key = (endpoint, *map(environ.get, _URL_ENVIRON), *sorted(values.items()))
    urls = context.app.extensions.setdefault("dingqiao.page_urls", {})
    try:
        return urls[key]
    except KeyError:
        pass
    except TypeError:  # a value that cannot be a key (a list of query values): built each time
        return url_for(endpoint, **values)
    address = url_for(endpoint, **values)
    if any(isinstance(value, str) and len(value) > KEPT_VALUE_CHARS for value in values.values()):
        return address  # only looked up (never found): kept values are short
    if len(urls) >= URLS_PER_APP:
        urls.clear()
    urls[key] = address
    return address


def public_url(path: str = "") -> str:
    """An absolute address on this site: under PUBLIC_BASE_URL (the address WeChat and members know) when it is
    set, else under the host this request came to (the demo, tests). ``path`` starts with "/"."""
    return (current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/")) + path


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
