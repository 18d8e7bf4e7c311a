"""The one place that decides page vs fragment, and the one error convention for views; also the short cache
that keeps rendered parts of busy pages for a few seconds, and which pages browsers must not keep at all.

A request gets only a fragment when htmx asked for it, except for a history restore (htmx 2 sends
HX-Request on those too) and a boosted navigation, which both need the whole page.
"""
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

from flask import Response, current_app, g, make_response, redirect, render_template, request
from jinja2_fragments.flask import render_block
from werkzeug.routing import IntegerConverter

from .extensions import htmx
from .services import (
    Conflict,
    DomainError,
    Forbidden,
    NeedsHigherRole,
    NotAuthenticated,
    NotFound,
    TooManyAttempts,
)


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
    return request.blueprint in NO_STORE_BLUEPRINTS or g.get("no_store_page", False)


def mark_no_store_page() -> str:
    """Called by base.html for a page marked private_page; returns nothing to print."""
    g.no_store_page = True
    return ""


def keep_out_of_caches(response: Response) -> Response:
    """After every request: a no-store page says so, unless its view chose a Cache-Control of its own."""
    if "Cache-Control" not in response.headers and is_no_store_page():
        response.headers["Cache-Control"] = NO_STORE
    return response


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


# What each kind of refusal is in HTTP (dingqiao.services): the first class the error is an instance of.
_DOMAIN_ERROR_STATUS = ((NotFound, 404), (Forbidden, 403), (NeedsHigherRole, 403), (Conflict, 409),
                        (NotAuthenticated, 401), (TooManyAttempts, 429))


def domain_error_status(exc: DomainError) -> int:
    """The HTTP status for a refusal from the services: by its kind, 400 for a plain one (the request is wrong)."""
    for kind, status in _DOMAIN_ERROR_STATUS:
        if isinstance(exc, kind):
            return status
    return 400


# Transitional: a few views still read ``exc.status`` (the blueprints are being moved into packages; see
# issue 22). It is computed here, at the edge, from the kind; the errors themselves carry no status. Remove
# this line once those views call domain_error_status.
DomainError.status = property(domain_error_status)


T = TypeVar("T")


class ShortCache:
    """Values kept for a few seconds in this process, per app (tests build many apps in one process) and mount
    point (rendered links start with it), at most ``max_entries`` of them per app: the least recently used
    leave first, so keys made of what visitors type cannot grow it without bound. ``clock`` gives monotonic
    seconds; tests replace it."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self._apps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # app → OrderedDict key → (made at, value)
        self._lock = threading.Lock()

    def get(self, key: Hashable, ttl_seconds: float, make: Callable[[], T]) -> T:
        """The value kept for ``key`` if it is younger than ``ttl_seconds``, else ``make()`` (kept from now on).
        A TTL of 0 keeps nothing."""
        if ttl_seconds <= 0:
            return make()
        key = (request.script_root, key)
        started = self.clock()
        app = current_app._get_current_object()
        with self._lock:
            entries = self._apps.get(app)  # not setdefault: that makes a weak reference on every call
            if entries is None:
                entries = self._apps[app] = OrderedDict()
            kept = entries.get(key)
            if kept is not None and started - kept[0] < ttl_seconds:
                entries.move_to_end(key)
                return kept[1]
        value = make()  # outside the lock: other keys are served meanwhile
        with self._lock:
            entries[key] = (started, value)
            entries.move_to_end(key)
            while len(entries) > self.max_entries:
                entries.popitem(last=False)
        return value

    def forget(self, key: Hashable) -> None:
        """Drop ``key`` for the current app, so this process shows a change at once (others within the TTL)."""
        with self._lock:
            self._apps.get(current_app._get_current_object(), {}).pop((request.script_root, key), None)

    def __len__(self) -> int:
        """Entries kept for the current app."""
        with self._lock:
            return len(self._apps.get(current_app._get_current_object(), ()))


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
