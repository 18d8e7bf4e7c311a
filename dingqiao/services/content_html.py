"""Article bodies as we store them: sanitised with nh3 when they are saved, never at display time. The stored HTML
keeps only a few formatting tags, links to http(s) or relative addresses, and images from our own ``/media/``
path, so a page may render it as it is."""
import re

import nh3

# Where blueprints/public/media.py serves the uploads folder; the only place article images may come from.
MEDIA_URL_PREFIX = "/media/"

ALLOWED_TAGS = {"p", "br", "strong", "em", "b", "i", "u", "h2", "h3", "h4", "ul", "ol", "li", "blockquote", "a", "img"}
ALLOWED_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt", "width", "height"}}
# One path segment: no empty segment (//), no "." or ".." segment, nothing but plain file-name characters.
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
_MEDIA_SRC = re.compile(re.escape(MEDIA_URL_PREFIX) + rf"(?:{_SEGMENT}/)*{_SEGMENT}")
_DIMENSION = re.compile(r"[0-9]{1,4}")
# An <img> as nh3 writes it: every attribute double-quoted, quotes inside values escaped.
_IMG_TAG = re.compile(r'<img((?:\s+[\w-]+="[^"]*")*)\s*/?>')


def _allowed_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        return value if _MEDIA_SRC.fullmatch(value) else None
    if tag == "img" and attribute in ("width", "height"):
        return value if _DIMENSION.fullmatch(value) else None
    return value


def sanitize_html(html: str) -> str:
    """The article HTML we store: allowed tags and attributes only; script and style dropped with their
    content; links only to http, https or relative addresses (nh3 drops every other scheme, javascript:
    among them); images only from our own /media/ path (an image without a src left is dropped)."""
    cleaned = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_allowed_attribute,
        url_schemes={"http", "https"},
        strip_comments=True,
    )
    # An <img> whose src was refused would show as a broken image: remove it altogether.
    return _IMG_TAG.sub(lambda tag: tag.group(0) if ' src="' in tag.group(1) else "", cleaned)
