"""The shop front: open to visitors (who see the member price) and to every identity (who see theirs)."""
from flask import Blueprint, current_app, request, url_for

from ..extensions import db
from ..models import Identity
from ..services import catalog, content
from ..web import arg_id, render_page
from .access import current_member

bp = Blueprint("shop", __name__)


def viewer_identity() -> Identity:
    member = current_member()
    return member.identity_enum if member else Identity.MEMBER


@bp.get("/")
def home():
    category_id = arg_id("category")
    keyword = catalog.clean_keyword(request.args.get("q"))
    page = catalog.list_products(db.session, category_id=category_id, keyword=keyword,
                                 page=arg_id("page") or 1)
    # Page 2+ is the "load more" fragment; a category or keyword change swaps the whole catalog block.
    block = "product_page" if page.page > 1 else "catalog"
    return render_page(
        "shop/home.html",
        block=block,
        categories=catalog.active_categories(db.session),
        category_id=category_id,
        keyword=keyword,
        page=page,
        identity=viewer_identity(),
        home=content.home_content(db.session, current_app.config["HOME_CONTENT_CACHE_SECONDS"]),
    )


@bp.get("/products/<int:product_id>")
def product(product_id: int):
    item = catalog.get_product(db.session, product_id)
    available = catalog.available_units(db.session, [item.id])[item.id]
    member = current_member()
    # Shared from inside WeChat (JS-SDK share), the link carries the sharer's code.
    share_link = url_for("shop.product", product_id=item.id, ref=member.referral_code, _external=True) if member else None
    return render_page("shop/product.html", product=item, available=available, identity=viewer_identity(),
                       share_link=share_link)
