"""The shop front: open to visitors (who see the member price) and to every identity (who see theirs)."""
from flask import Blueprint, abort, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Category, Identity, Product
from ..web import render_page
from .access import current_member

bp = Blueprint("shop", __name__)


def viewer_identity() -> Identity:
    member = current_member()
    return member.identity_enum if member else Identity.MEMBER


@bp.get("/")
def home():
    categories = db.session.execute(
        select(Category).where(Category.is_active.is_(True)).order_by(Category.sort_order, Category.id)
    ).scalars().all()
    category_id = request.args.get("category", type=int)
    query = (
        select(Product)
        .where(Product.is_on_sale.is_(True))
        .options(selectinload(Product.images))
        .order_by(Product.sort_order, Product.id)
    )
    if category_id:
        query = query.where(Product.category_id == category_id)
    products = db.session.execute(query).scalars().all()
    return render_page(
        "shop/home.html",
        block="catalog",
        categories=categories,
        category_id=category_id,
        products=products,
        identity=viewer_identity(),
    )


@bp.get("/products/<int:product_id>")
def product(product_id: int):
    item = db.session.execute(
        select(Product).where(Product.id == product_id).options(selectinload(Product.images))
    ).scalar_one_or_none()
    if item is None or not item.is_on_sale:
        abort(404)
    return render_page("shop/product.html", product=item, identity=viewer_identity())
