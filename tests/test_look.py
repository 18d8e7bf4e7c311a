"""What pages ship for their look: the WeUI subset base.html links (and that it still holds every WeUI class
our templates and scripts use), product pictures sized for their cards, one colour per status meaning, and
theme colours that pass WCAG AA."""
import re
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from dingqiao.models import (
    CaseStatus,
    CommissionStatus,
    OrderStatus,
    RefundStatus,
    RestockStatus,
    WithdrawalStatus,
)
from dingqiao.services.demo_data import seed_demo
from dingqiao.uploads import THUMBNAIL_SIDE

PACKAGE = Path(__file__).resolve().parent.parent / "dingqiao"
TEMPLATES = PACKAGE / "templates"
WEUI = PACKAGE / "static" / "vendor" / "weui"
WEUI_CLASS = re.compile(r"\bweui-[a-z0-9_-]*[a-z0-9_]")


def used_weui_classes() -> set[str]:
    sources = [*TEMPLATES.rglob("*.html"), *(PACKAGE / "static" / "js").glob("*.js")]
    return {name for source in sources for name in WEUI_CLASS.findall(source.read_text(encoding="utf-8"))}


def test_base_html_links_the_weui_subset_and_not_the_whole_of_weui():
    base = (TEMPLATES / "_head_assets.html").read_text(encoding="utf-8")  # base.html's head, rendered once
    assert "head_assets()" in (TEMPLATES / "base.html").read_text(encoding="utf-8")
    linked = re.findall(r"static_url\('(vendor/weui/[^']+)'\)", base)
    assert linked == ["vendor/weui/weui.subset.min.css"]
    subset, whole = (WEUI / "weui.subset.min.css").stat().st_size, (WEUI / "weui.min.css").stat().st_size
    assert subset < whole * 0.4, (subset, whole)


def selectors(css: str) -> set[frozenset[str]]:
    """Each selector of a stylesheet as the set of classes it names (a rule for .a .b needs both a and b)."""
    found = set()
    for prelude in re.findall(r"([^{}]+)\{", css):
        if prelude.lstrip().startswith("@"):
            continue
        for selector in prelude.split(","):
            found.add(frozenset(re.findall(r"\.([a-zA-Z][\w-]*)", selector)))
    return found


def test_the_weui_subset_has_every_weui_rule_for_the_classes_the_templates_and_scripts_use():
    subset = selectors((WEUI / "weui.subset.min.css").read_text(encoding="utf-8"))
    used = used_weui_classes()
    assert {"weui-btn", "weui-cell", "weui-dialog", "weui-actionsheet"} <= used  # the scan finds them
    # Every rule of the whole of WeUI whose classes all appear in our markup or scripts is in the subset.
    whole = selectors((WEUI / "weui.min.css").read_text(encoding="utf-8"))
    needed = {classes for classes in whole if classes and classes <= used}
    assert len(needed) > 50
    assert sorted(sorted(classes) for classes in needed - subset) == []
    defined = {name for classes in subset for name in classes}
    # Components that scripts build, kept whole for everyone who adds them later.
    for name in ("weui-dialog__btn_warn", "weui-actionsheet__cell_warn", "weui-mask_transparent", "weui-toast",
                 "weui-half-screen-dialog__ft", "weui-loading"):
        assert name in defined, name


def test_the_subset_keeps_the_license_header_and_versions_md_says_how_it_was_made():
    assert (WEUI / "weui.subset.min.css").read_text(encoding="utf-8").startswith("/*!\n * WeUI v2.6.26")
    versions = (PACKAGE / "static" / "vendor" / "VERSIONS.md").read_text(encoding="utf-8")
    assert "purgecss@8.0.0" in versions and "weui/purgecss.config.cjs" in versions


@pytest.fixture
def shop(app, client, session):
    seed_demo(session, app.config["UPLOAD_FOLDER"], None)
    session.remove()
    return client


def test_product_cards_ask_for_the_thumbnail_at_the_card_size_and_load_the_first_row_first(shop):
    html = shop.get("/").get_data(as_text=True)
    images = re.findall(r'<img class="dq-card__img"[^>]*>', html)
    assert len(images) >= 6
    for image in images:
        assert re.search(rf'srcset="[^"]+ {THUMBNAIL_SIDE}w"', image), image
        assert 'sizes="(min-width: 640px) 312px, calc(50vw - 12px)"' in image
        assert 'width="400" height="320"' in image  # the card's 5:4 box, so nothing moves as they load
    assert all('loading="eager" fetchpriority="high"' in image for image in images[:4])
    assert all('loading="lazy"' in image and "fetchpriority" not in image for image in images[4:])
    # The next page (infinite scroll) is below the first screen: all lazy.
    more = re.search(r'class="dq-more" href="([^"]+)"', html)
    if more:
        next_page = shop.get(more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
        assert 'fetchpriority="high"' not in next_page.get_data(as_text=True)


def test_the_demo_products_have_list_sized_thumbnails_the_cards_use(app, shop):
    from PIL import Image

    html = shop.get("/").get_data(as_text=True)
    thumbs = re.findall(r'srcset="/media/(products/demo-\d+_t\.png) 400w"', html)
    assert len(thumbs) >= 6, "the demo's cards must not load the 600 px pictures"
    with Image.open(Path(app.config["UPLOAD_FOLDER"]) / thumbs[0]) as thumb:
        assert max(thumb.size) == THUMBNAIL_SIDE
    assert shop.get(f"/media/{thumbs[0]}").status_code == 200


STATUSES = {"order": OrderStatus, "restock": RestockStatus, "case": CaseStatus, "withdrawal": WithdrawalStatus,
            "refund": RefundStatus, "commission": CommissionStatus}
MEANINGS = {"done", "wait", "busy", "off", "bad"}


def badge(kind: str, status: str) -> str:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined)
    return environment.from_string('{% from "_status.html" import status_badge %}'
                                   '{{ status_badge(kind, status, "x") }}').render(kind=kind, status=status)


@pytest.mark.parametrize("kind", STATUSES)
def test_every_status_has_a_badge_colour_by_its_meaning(kind):
    for status in STATUSES[kind]:
        tone = re.search(r'class="dq-badge dq-badge--(\w+)"', badge(kind, status.value)).group(1)
        assert tone in MEANINGS, (kind, status, tone)
    css = (PACKAGE / "static" / "css" / "app.css").read_text(encoding="utf-8")
    for tone in MEANINGS:
        assert f".dq-badge--{tone} {{" in css


def tone(kind: str, status: str) -> str:
    return re.search(r"dq-badge--(\w+)", badge(kind, status)).group(1)


def test_cancelled_differs_from_waiting_and_from_done():
    assert tone("restock", "cancelled") == "off" and tone("restock", "pending") == "wait"
    tones = {status: tone("order", status) for status in OrderStatus}
    assert tones["cancelled"] == tones["refunded"] == "off"
    assert tones["completed"] == "done" and tones["paid"] == tones["pending_payment"] == "wait"


def contrast(one: str, other: str) -> float:
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(one), luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_theme_colours_for_text_pass_wcag_aa():
    css = (PACKAGE / "static" / "css" / "app.css").read_text(encoding="utf-8")
    ink = re.search(r"--dq-brand-ink: (#[0-9a-f]{6})", css).group(1)
    price = re.search(r"--dq-price: (#[0-9a-f]{6})", css).group(1)
    assert re.search(rf"--weui-BRAND: {ink}", css)  # WeUI's primary buttons carry white text on it
    for text, background in ((ink, "#ffffff"), ("#ffffff", ink), (ink, "#f5f6f7"), (price, "#ffffff")):
        assert contrast(text, background) >= 4.5, (text, background)
    notices = (PACKAGE / "static" / "css" / "content.css").read_text(encoding="utf-8")
    tag = re.search(r"\.dq-notice__tag \{[^}]*color: (#[0-9a-f]{6})", notices).group(1)
    assert contrast(tag, "#fffbe6") >= 4.5
