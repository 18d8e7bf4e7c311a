"""Brand and product articles as members read them. Public, like the shop front: no login needed."""
from flask import Blueprint

from ...extensions import db
from ...services import content
from ...web import render_page

bp = Blueprint("content", __name__, url_prefix="/articles")


@bp.get("/")
def index():
    return render_page("content/index.html", articles=content.published_articles(db.session))


@bp.get("/<int:article_id>")
def article(article_id: int):
    item = content.published_article(db.session, article_id)
    return render_page("content/article.html", article=item, product=content.article_product(db.session, item))
