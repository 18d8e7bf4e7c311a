"""Reading content: the published articles members see, the home page's banners and announcements (which the shop
keeps in the page cache under the content and catalog versions, services/cache_versions.py), and the admin's
lists and form choices."""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, or_, select
from sqlalchemy.orm import Session

from ..models import Announcement, Article, ArticleKind, Banner, BannerTarget, Category, Product
from ..paging import Page, page_of
from . import NotFound


def published_articles(session: Session) -> list[Article]:
    """Brand stories first, then product stories; newest first within each."""
    brand_first = case((Article.kind == ArticleKind.BRAND, 0), else_=1)
    return list(session.scalars(
        select(Article).where(Article.is_published.is_(True)).order_by(brand_first, Article.id.desc())
    ))


def published_article(session: Session, article_id: int) -> Article:
    article = session.get(Article, article_id)
    if article is None or not article.is_published:
        raise NotFound("文章不存在或已下线。")
    return article


def article_product(session: Session, article: Article) -> Product | None:
    """The product an article is about, shown under it only while it is on sale."""
    product = session.get(Product, article.product_id) if article.product_id else None
    return product if product is not None and product.is_on_sale else None


@dataclass(frozen=True)
class HomeBanner:
    id: int
    title: str
    image_path: str
    target_kind: str
    target_id: int


@dataclass(frozen=True)
class HomeAnnouncement:
    id: int
    text: str
    link: str


@dataclass(frozen=True)
class HomeContent:
    banners: tuple[HomeBanner, ...]
    announcements: tuple[HomeAnnouncement, ...]


def load_home_content(session: Session, now: datetime) -> HomeContent:
    """Active banners in their order, leaving out those whose target members cannot open (a product off
    sale, an inactive category, an unpublished article); active announcements inside their dates."""
    banners = session.scalars(
        select(Banner).where(Banner.is_active.is_(True)).order_by(Banner.sort_order, Banner.id)
    ).all()
    wanted = {kind: {b.target_id for b in banners if b.target_kind == kind} for kind in BannerTarget}
    visible = {
        BannerTarget.PRODUCT: set(session.scalars(select(Product.id).where(
            Product.id.in_(wanted[BannerTarget.PRODUCT]), Product.is_on_sale.is_(True)))),
        BannerTarget.CATEGORY: set(session.scalars(select(Category.id).where(
            Category.id.in_(wanted[BannerTarget.CATEGORY]), Category.is_active.is_(True)))),
        BannerTarget.ARTICLE: set(session.scalars(select(Article.id).where(
            Article.id.in_(wanted[BannerTarget.ARTICLE]), Article.is_published.is_(True)))),
    }
    announcements = session.scalars(
        select(Announcement)
        .where(Announcement.is_active.is_(True),
               or_(Announcement.starts_at.is_(None), Announcement.starts_at <= now),
               or_(Announcement.ends_at.is_(None), Announcement.ends_at > now))
        .order_by(Announcement.id.desc())
    ).all()
    return HomeContent(
        tuple(HomeBanner(b.id, b.title, b.image_path, b.target_kind, b.target_id)
              for b in banners if b.target_id in visible[BannerTarget(b.target_kind)]),
        tuple(HomeAnnouncement(a.id, a.text, a.link) for a in announcements),
    )


# --- the admin's pages ------------------------------------------------------------------------------------

# Each list as the admin pages show it: what is live first.
ADMIN_ORDER = {
    Banner: (Banner.is_active.desc(), Banner.sort_order, Banner.id),
    Article: (Article.id.desc(),),
    Announcement: (Announcement.is_active.desc(), Announcement.id.desc()),
}


def admin_page(session: Session, model, number: int | None) -> Page:
    """One page of banners, articles or announcements for the admin's list."""
    return page_of(session, select(model).order_by(*ADMIN_ORDER[model]), number, scalars=True)


@dataclass(frozen=True)
class Choices:
    """What a banner may point at and an article may be about, for the admin's forms."""

    products: list[Product]
    categories: list[Category]
    articles: list[Article]


def form_choices(session: Session) -> Choices:
    return Choices(
        products=list(session.scalars(select(Product).order_by(Product.sort_order, Product.id))),
        categories=list(session.scalars(select(Category).order_by(Category.sort_order, Category.id))),
        articles=list(session.scalars(select(Article).order_by(Article.id.desc()))),
    )
