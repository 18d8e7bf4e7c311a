"""What a log line may say about a request: its route, never the values in its URL.

Pickup codes travel in URLs (``/outlet/redeem/<code>``, ``/outlet/redeem/lookup?code=``), and so do WeChat's
OAuth ``code``/``state`` (``/auth/wechat/callback?code=…``) and staff invite tokens (``/outlet/join/<token>``).
A pickup code is the key to someone's goods, so none of them may reach a log file. The app notes the matched
route in the WSGI environ (``note_route``); gunicorn's access log (``gunicorn.conf.py``) and the app's error
log write that route, query keys without their values, and only the origin of a Referer.
"""
import re
from urllib.parse import parse_qsl, urlsplit

from flask import request

ROUTE_ENVIRON_KEY = "dingqiao.route"
HIDDEN = "*"
# A query key is shown when it looks like a parameter name; "?123456789012" would be a code typed as a key.
QUERY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,31}")


def note_route() -> None:
    """Called for every request the app answers; a request no route matched keeps no note."""
    answered = request._get_current_object()  # once: each access through the proxy costs a lookup
    if answered.url_rule is not None:
        answered.environ[ROUTE_ENVIRON_KEY] = answered.url_rule.rule


def loggable_request() -> str:
    """The current request as a log line may show it."""
    route = request.url_rule.rule if request.url_rule is not None else None
    return loggable_target(request.path, request.query_string.decode("latin-1"), route)


def loggable_target(path: str, query: str, route: str | None = None) -> str:
    """The route (or, when none matched, the first path segment) and the query's keys: ``/orders/<order_no>``,
    ``/auth/wechat/callback?code=*&state=*``, ``/outlet/*``."""
    shown = route or _first_segment(path)
    if query:
        keys = (key if QUERY_KEY.fullmatch(key) else HIDDEN for key, _ in parse_qsl(query, keep_blank_values=True))
        shown += "?" + "&".join(f"{key}={HIDDEN}" for key in keys)
    return shown


def loggable_uri(uri: str) -> str:
    """``loggable_target`` of a raw request URI, for lines written before any route is known."""
    parts = urlsplit(uri)
    return loggable_target(parts.path, parts.query)


def loggable_referer(referer: str) -> str:
    """A Referer is the URL of the page before, pickup codes and OAuth codes included: only its origin."""
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "-"


def _first_segment(path: str) -> str:
    head, _, rest = path.lstrip("/").partition("/")
    return f"/{head}/{HIDDEN}" if rest else f"/{head}"
