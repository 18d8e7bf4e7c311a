"""Brand and product articles as members read them. Public, like the shop front: no login needed."""
from flask import Blueprint

from ...extensions import db
from ...models import Product
from ...services import content
from ...web import render_page

bp = Blueprint("content", __name__, url_prefix="/articles")


@bp.get("/")
def index():
    return render_page("content/index.html", articles=content.published_articles(db.session))


@bp.get("/<int:article_id>")
def article(article_id: int):
    item = content.published_article(db.session, article_id)
    product = db.session.get(Product, item.product_id) if item.product_id else None
    return render_page("content/article.html", article=item,
                       product=product if product is not None and product.is_on_sale else None)
