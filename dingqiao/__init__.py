"""顶俏 Dingqiao: the application factory."""
import os
import secrets
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as settings
from .db import configure_sqlite
from .extensions import COMPRESSED_TYPES, babel, cache, compress, csrf, db, htmx, limiter, login_manager, migrate


def create_app(test_config: dict | None = None, instance_path: str | None = None) -> Flask:
    """The instance folder (database, uploads, secret key, backups) is ``instance_path``, else DINGQIAO_HOME, else
    Flask's ``instance/`` beside the package (a checkout). The ``dingqiao`` command sets DINGQIAO_HOME: inside the
    single file the package lives in a temporary unpack folder."""
    home = instance_path or os.environ.get("DINGQIAO_HOME")
    app = Flask(__name__, instance_relative_config=True, instance_path=str(Path(home).absolute()) if home else None)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    app.config.from_mapping(settings.DEFAULTS)
    app.config.from_mapping(settings.from_environment(app.instance_path))
    if test_config:
        app.config.from_mapping(test_config)
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.normalise_database_url(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config.setdefault("UPLOAD_FOLDER", os.path.join(app.instance_path, "uploads"))
    app.config.setdefault("POSTER_FOLDER", os.path.join(app.instance_path, "posters"))
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret_key(app.instance_path, app.config["DINGQIAO_DEMO"])
    settings.validate(app.config)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A SQLite connection is an open file, never dropped by a server: no "SELECT 1" before each checkout.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {**app.config["SQLALCHEMY_ENGINE_OPTIONS"], "pool_pre_ping": False}
    if app.config.get("PROXY_COUNT"):
        hops = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).parent / "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)
    app.config.setdefault("COMPRESS_MIMETYPES", COMPRESSED_TYPES)
    compress.init_app(app)
    from . import ratelimit  # noqa: F401  (registers the database:// storage before the limiter picks one)

    limiter.init_app(app)
    _check_limits_only_in_limited_views(app)
    babel.init_app(app, locale_selector=lambda: "zh_Hans_CN")
    cache.init_app(app, config={**app.config, **settings.cache_settings(app.config)})
    with app.app_context():
        configure_sqlite(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
    from .services.audit import install_audit_chain

    install_audit_chain(db.session)  # the audit rows a write transaction records join the hash chain at its commit

    from . import models  # noqa: F401  (registers every table)
    from .web import BoundedIntConverter

    app.url_map.converters["int"] = BoundedIntConverter
    from .blueprints import register_blueprints
    from .cli import register_cli
    from .templating import register_templating

    register_blueprints(app)
    register_templating(app)
    register_cli(app)
    return app


def _check_limits_only_in_limited_views(app: Flask) -> None:
    """Every rate limit here decorates its view (pickup codes, the admin login) and is checked when that view
    is called. Flask-Limiter also checks every request before dispatch, for default and application-wide
    limits; with none configured that check finds nothing, yet costs a page about 5% of its CPU. Drop it then."""
    if not (app.config.get("RATELIMIT_DEFAULT") or app.config.get("RATELIMIT_APPLICATION")):
        app.before_request_funcs[None].remove(limiter._check_request_limit)


def _instance_secret_key(instance_path: str, demo: bool) -> str:
    """Without SECRET_KEY the key is generated once into the instance folder (mode 0600), so every gunicorn worker
    and every restart share it and sessions survive. Demo folders made before it had that name keep their key."""
    path = Path(instance_path) / "secret_key"
    legacy = path.with_name("demo_secret_key")
    if demo and not path.exists() and legacy.exists():
        return legacy.read_text().strip()
    if not path.exists():
        # Written aside (created 0600, never readable by others even for a moment) and linked into place: two
        # workers starting at once agree on one key.
        draft = path.with_name(f"{path.name}.{os.getpid()}")
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
