"""Flask extensions, created unbound and bound to the app in ``create_app``."""
from flask_babel import Babel
from flask_caching import Cache
from flask_caching.backends import SimpleCache
from flask_compress import Compress
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import BigInteger, Integer, MetaData
from sqlalchemy.orm import DeclarativeBase, registry

# Deterministic constraint names so Alembic can alter them on SQLite (batch mode) and Postgres alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    # Every integer is 64-bit: ids, quantities and money in fen alike. On SQLite it must be spelled INTEGER,
    # the only type whose primary key aliases the rowid and autoincrements.
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={int: BigInteger().with_variant(Integer(), "sqlite")},
    )


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
# Only Flask-Admin's data pages are translated (its bundled zh_Hans_CN catalogue); our own templates are Chinese.
babel = Babel()
htmx = HTMX()
# Stylesheets and scripts go out compressed (brotli or gzip, as the browser accepts): WeUI, app.css and htmx are
# most of a first visit's bytes. Pages and JSON are not compressed: they carry the CSRF token and echo what the
# visitor typed (a search), the two halves of a BREACH attack on compressed HTTPS responses.
compress = Compress()
COMPRESSED_TYPES = ["text/css", "text/javascript", "application/javascript", "image/svg+xml"]
# Limits are declared on the views that need them (pickup-code guessing, logins); storage from
# RATELIMIT_STORAGE_URI: database:// (the app's own database, dingqiao/ratelimit.py) by default or redis://…,
# both shared by every worker.
limiter = Limiter(key_func=get_remote_address)
# Rendered parts of the busiest pages (the shop's catalog, product details, the home page's banners): per worker
# or in Redis (config.cache_settings), keyed by the data's version (services/cache_versions.py).
cache = Cache()


class _AsIs:
    """Keeps a value as it is: what the page cache holds is immutable (Markup, frozen dataclasses, str, bool)."""

    @staticmethod
    def dumps(value, protocol=None):
        return value

    @staticmethod
    def loads(value):
        return value


class InProcessCache(SimpleCache):
    """Flask-Caching's SimpleCache without pickling each value in and out: within one process nothing needs to
    be serialised, and a cached page would pay for it on every request."""

    serializer = _AsIs()
