"""The shop front: open to visitors (who see the member price) and to every identity (who see theirs).

The catalog part of the home page is the same for everyone of one identity, so it is kept rendered in the page
cache (web.cached) for CATALOG_CACHE_SECONDS (see ``catalog_html``), and a product page's details likewise; the
banners and announcements for HOME_CONTENT_CACHE_SECONDS. Every key carries the version of the data it was made
from (services/cache_versions.py), so an admin's save shows at once in every worker. What belongs to one member —
the login button, the share link, the CSRF token, the tab bar and its unread badge — is rendered on every request
and never kept.
"""
from flask import Blueprint, current_app, render_template, request
from jinja2_fragments.flask import render_block
from markupsafe import Markup

from ...extensions import db
from ...models import Identity
from ...models.base import utcnow
from ...services import cache_versions, catalog, commissions, content
from ...services import cart as carts
from ...web import arg_id, cached, html_response, page_url, render_page, wants_fragment
from ..common import current_member, identity_of

bp = Blueprint("shop", __name__)


def viewer_identity() -> Identity:
    return identity_of(current_member())


def _versions(*kinds: str) -> tuple[int, ...]:
    versions = cache_versions.current(db.session)
    return tuple(versions.get(kind, 0) for kind in kinds)


def catalog_html(identity: Identity, category_id: int | None, keyword: str, page_number: int, *,
                 cards_only: bool) -> Markup:
    """The rendered catalog (category chips and one page of product cards at ``identity``'s prices), or only
    the cards (``cards_only``: the "load more" fragment), kept for CATALOG_CACHE_SECONDS.

    An admin's save of a product, its prices or a category shows at once (a new catalog version). Stock moved by
    orders and restocks may show up to CATALOG_CACHE_SECONDS late: nothing is sold from this list, the cart
    shows current prices, and checkout prices the order anew and reserves the stock with a conditional update,
    so a stale "in stock" ends at worst in a sold-out message at checkout."""

    def render() -> Markup:
        context = {
            "categories": catalog.active_categories(db.session),
            "category_id": category_id,
            "keyword": keyword,
            "page": catalog.list_products(db.session, category_id=category_id, keyword=keyword, page=page_number),
            "identity": identity,
        }
        if cards_only:
            return Markup(render_block("shop/_catalog.html", "product_page", **context))
        return Markup(render_template("shop/_catalog.html", **context))

    key = ("catalog", *_versions(cache_versions.CATALOG), identity.value, category_id, keyword, page_number,
           cards_only)
    return cached(key, current_app.config["CATALOG_CACHE_SECONDS"], render)


def home_strip_html() -> Markup:
    """The home page's banners and announcements, rendered. A banner shows only while its product, category or
    article can be opened, so the key carries both versions; announcements' start and end times are honoured
    to within HOME_CONTENT_CACHE_SECONDS."""

    def render() -> Markup:
        home = content.load_home_content(db.session, utcnow())
        return Markup(render_template("content/_home_strip.html", home=home))

    key = ("home_strip", *_versions(cache_versions.CONTENT, cache_versions.CATALOG))
    return cached(key, current_app.config["HOME_CONTENT_CACHE_SECONDS"], render)


def shop_open() -> bool:
    """Whether members can buy: not before a commission rule is published (orders.NOT_OPEN_YET says why)."""
    return cached(("shop_open",), current_app.config["HOME_CONTENT_CACHE_SECONDS"],
                  lambda: commissions.rule_published(db.session))


@bp.get("/")
def home():
    category_id = arg_id("category")
    keyword = catalog.clean_keyword(request.args.get("q"))
    page_number = catalog.clamp_page(arg_id("page"))
    if wants_fragment():
        # Page 2+ is the "load more" fragment; a category or keyword change swaps the whole catalog block.
        return html_response(catalog_html(viewer_identity(), category_id, keyword, page_number,
                                          cards_only=page_number > 1))
    return render_page(
        "shop/home.html",
        catalog_html=catalog_html(viewer_identity(), category_id, keyword, page_number, cards_only=False),
        keyword=keyword,
        home_strip_html=home_strip_html(),
        shop_open=shop_open(),
    )


@bp.get("/products/<int:product_id>")
def product(product_id: int):
    """A product at the viewer's price. Its details and stock are kept like the catalog's (``catalog_html``).
    Its quantity stepper's −/+ ask again with ``quantity`` and ``step`` and get only the stepper back."""
    item = cached(("product", *_versions(cache_versions.CATALOG), product_id), current_app.config["CATALOG_CACHE_SECONDS"],
                  lambda: catalog.get_product(db.session, product_id))
    member = current_member()
    # Shared from inside WeChat (JS-SDK share), the link carries the sharer's code.
    share_link = page_url("shop.product", product_id=item.id, ref=member.referral_code, _external=True) if member else None
    max_quantity = carts.line_cap(item.most_at_one_outlet)
    args = request.args
    quantity, quantity_note = carts.stepped_quantity(args.get("quantity"), args.get("step"), max_quantity)
    return render_page("shop/product.html", block="quantity_stepper" if "step" in args else None,
                       product=item, identity=identity_of(member), share_link=share_link, quantity=quantity,
                       quantity_note=quantity_note, max_quantity=max_quantity)
