"""The ``dingqiao`` command, the same in a checkout (``.venv/bin/dingqiao``) and in the single file (``dist/dingqiao``).

``serve``, ``demo`` and ``worker`` run the shop from its home folder: ``./instance`` of the current directory, or
``DINGQIAO_HOME``. Each first brings the database up to date (created on the first start; an existing database
with pending migrations is backed up first), then ``serve`` and ``demo`` run gunicorn with the settings of
dingqiao/gunicorn_conf.py (``GUNICORN_*`` honoured) and ``worker`` runs the scheduled jobs alone. Every other
command is the app's own command line (``app.cli``: check-money, backup, restore, create-admin …), so a command
added there is here too.
"""
import fcntl
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version as package_version
from pathlib import Path

import click
from flask import Flask
from flask.cli import ScriptInfo, pass_script_info, routes_command, shell_command
from flask_migrate.cli import db as db_commands
from gunicorn.app.base import BaseApplication

HOME = "DINGQIAO_HOME"
DEMO_HOME = "demo-instance"
DEMO_BIND = "127.0.0.1:5000"  # the demo lets anyone log in as anyone: this machine only, unless asked otherwise


def main() -> None:
    # The demo keeps its own folder: demo mode lets anyone log in as anyone, and must never meet a shop's data.
    default_home = DEMO_HOME if sys.argv[1:2] == ["demo"] else "instance"
    os.environ[HOME] = str(Path(os.environ.get(HOME) or default_home).absolute())
    os.umask(0o077)  # the database, uploads and backups hold members' data: for this user only
    cli.main(prog_name="dingqiao", obj=ScriptInfo(create_app=_create_app, set_debug_flag=False))


def _create_app() -> Flask:
    from . import create_app

    return create_app()


class ShopCommands(click.Group):
    """Our own commands first, then those of the app's command line, built for the home folder."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_listed_app_commands(ctx).list_commands(ctx)))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        ctx.meta[LISTING] = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            del ctx.meta[LISTING]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        own = super().get_command(ctx, name)
        if own is not None:
            return own
        return (_listed_app_commands(ctx) if ctx.meta.get(LISTING) else _app_commands(ctx)).get_command(ctx, name)


LISTING = "dingqiao.listing"


def _app_commands(ctx: click.Context) -> click.Group:
    return _load_app(ctx.ensure_object(ScriptInfo)).cli


def _load_app(info: ScriptInfo) -> Flask:
    """The app built for the home folder; a configuration it refuses is said in one line, not a traceback."""
    from .config import ConfigError

    try:
        return info.load_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _listed_app_commands(ctx: click.Context) -> click.Group:
    """For --help: the commands of an app with neutral settings in a scratch folder. The list is the same, and a
    folder not yet configured gets neither files written nor an error."""
    if "dingqiao.listed" not in ctx.meta:
        from . import create_app
        from .config import ConfigError

        with tempfile.TemporaryDirectory(prefix="dingqiao-help-") as scratch:
            try:
                ctx.meta["dingqiao.listed"] = create_app(
                    {"TESTING": True, "DINGQIAO_DEMO": False, "SECRET_KEY": "-" * 32,
                     "SQLALCHEMY_DATABASE_URI": "sqlite://"}, instance_path=scratch).cli
            except ConfigError as exc:
                click.echo(f"The app's commands are not listed: {exc}", err=True)
                ctx.meta["dingqiao.listed"] = click.Group()
    return ctx.meta["dingqiao.listed"]


@click.group(cls=ShopCommands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """顶俏 Dingqiao. Data lives in ./instance of the current directory, or in DINGQIAO_HOME; settings come from
    the environment (README, "Configuration"). Start with `dingqiao serve` (or `dingqiao demo`)."""


cli.add_command(db_commands)
cli.add_command(shell_command)
cli.add_command(routes_command)


@cli.command()
@click.option("--bind", "-b", metavar="HOST:PORT", help="Listen here (default GUNICORN_BIND, or 0.0.0.0:8000).")
@pass_script_info
def serve(info: ScriptInfo, bind: str | None) -> None:
    """Run the shop: bring the database up to date (backed up first when an existing one is upgraded), print
    the first-run setup link while the shop has no admin, then serve with gunicorn, whose workers also run the
    scheduled jobs."""
    from .setup_link import announce_setup_link

    app = _load_app(info)
    migrate_database(app, click.echo)
    refuse_demo_admin(app)

    announce_setup_link(app, click.echo)
    _serve(app, bind)


@cli.command()
@click.option("--bind", "-b", metavar="HOST:PORT", help=f"Listen here (default GUNICORN_BIND, or {DEMO_BIND}).")
@pass_script_info
def demo(info: ScriptInfo, bind: str | None) -> None:
    """The demo: demo mode, a simulated WeChat, the database brought up to date, the demo data seeded once, then
    served like `serve`. Log in as any seeded person; the admin is admin / dingqiao-demo."""
    from .cli import seed_demo_command

    os.environ["DINGQIAO_DEMO"] = "1"
    bind = bind or os.environ.get("GUNICORN_BIND") or DEMO_BIND
    # The simulated WeChat posts refund and transfer results to the notify address our requests carry.
    host, _, port = bind.rpartition(":")
    os.environ.setdefault("PUBLIC_BASE_URL", f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}")
    _start_simulated_wechat()  # before the app reads its settings; the workers forked later inherit them
    app = _load_app(info)
    migrate_database(app, click.echo)
    seed_demo_command.main(args=[], prog_name="dingqiao demo", obj=info, standalone_mode=False)
    click.echo(f"Demo: http://{bind}  (member: pick a demo user; admin: /admin/login admin / dingqiao-demo)\n"
               f"Simulated WeChat (messages sent, 模拟扫码关注): {os.environ['WECHAT_BASE_URL']}/")
    _serve(app, bind)


def refuse_demo_admin(app: Flask) -> None:
    """A database that still has the demo's admin with its published password is the demo's, not a shop's."""
    from .extensions import db
    from .services.demo_data import has_demo_admin

    with app.app_context():
        found = has_demo_admin(db.session)
        db.session.remove()
    if found:
        raise click.ClickException(
            f"This database holds the demo's admin with its published password: it is demo data ({app.instance_path})."
            " Serve a shop from its own folder (DINGQIAO_HOME), or change that admin's password first.")


def _serve(app: Flask, bind: str | None) -> None:
    from .extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()  # gunicorn forks its workers from this process: none may inherit a connection
    ShopServer(bind).run()


def _start_simulated_wechat() -> None:
    from .wechat.simulator import start_demo_wechat  # only the demo loads the simulator

    os.environ.update(start_demo_wechat(os.environ[HOME]))


@cli.command()
@click.option("--poll", type=float, default=None, help="Seconds between looks for due jobs.")
@pass_script_info
def worker(info: ScriptInfo, poll: float | None) -> None:
    """Run the scheduled jobs only, no web server: a second process or host beside `serve` (each due job still
    runs once). SIGTERM or Ctrl-C stops it after the job at hand."""
    from .jobs import run_forever, stop_on_signals

    app = _load_app(info)
    migrate_database(app, click.echo)
    stop = stop_on_signals()
    click.echo(f"Scheduled jobs running for {app.instance_path} (SIGTERM or Ctrl-C stops).")
    run_forever(app, stop, **({} if poll is None else {"poll_seconds": poll}))


@cli.command()
def version() -> None:
    """This release, its schema, where it runs from, and its compiled parts (each one loaded)."""
    from alembic.script import ScriptDirectory

    try:
        release = package_version("dingqiao")
    except PackageNotFoundError:
        release = "unknown"
    heads = ", ".join(ScriptDirectory(str(Path(__file__).parent / "migrations")).get_heads())
    where = f"single file {sys.executable}" if getattr(sys, "frozen", False) else f"Python at {sys.prefix}"
    click.echo(f"dingqiao {release} (schema {heads}; Python {platform.python_version()}; {where})")
    click.echo(f"compiled parts: {_compiled_parts()}")


def _compiled_parts() -> str:
    """Each compiled dependency, loaded: a build missing one says so here rather than at the first upload."""
    import cryptography
    import nh3
    import psycopg
    import sqlalchemy
    import sqlalchemy.util
    from cryptography.hazmat.bindings import _rust  # noqa: F401
    from PIL import __version__ as pillow_version, features

    formats = ", ".join(name for name, feature in (("JPEG", "jpg"), ("WebP", "webp"), ("FreeType", "freetype2"))
                        if features.check(feature))
    sqlalchemy_kind = "compiled" if sqlalchemy.util.has_compiled_ext() else "pure Python"
    return (f"Pillow {pillow_version} ({formats}), cryptography {cryptography.__version__}, psycopg "
            f"{psycopg.__version__} ({psycopg.pq.__impl__}), SQLAlchemy {sqlalchemy.__version__} ({sqlalchemy_kind}), "
            f"nh3 {nh3.__version__}")


def migrate_database(app: Flask, echo: Callable[[str], None]) -> None:
    """Create the schema, or bring it up to date. An existing database with pending migrations is backed up into
    the instance's backups/ first, so an upgrade that goes wrong can be undone with `dingqiao restore`."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from flask_migrate import upgrade

    from .backup import BackupError, create_backup
    from .extensions import db

    with app.app_context(), _one_migration_at_a_time(app):
        script = ScriptDirectory(app.extensions["migrate"].directory)
        with db.engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
        heads = set(script.get_heads())
        if current - {revision.revision for revision in script.walk_revisions()}:
            raise click.ClickException(
                f"The database is at schema {', '.join(sorted(current))}, which this release does not know: it "
                "was used by a newer release. Run that release, or restore a backup made for this one.")
        if current != heads:
            if current:
                try:
                    made = create_backup(app.config["SQLALCHEMY_DATABASE_URI"], app.config["UPLOAD_FOLDER"],
                                         Path(app.instance_path) / "backups")
                except BackupError as exc:
                    raise click.ClickException(
                        f"Not upgraded: the backup before the upgrade failed ({exc}). Take one yourself, then run "
                        "`dingqiao db upgrade`.") from None
                echo(f"Backup before upgrading the database: {made.path}")
            with _console_log():
                upgrade()
            echo(f"Database at schema {', '.join(sorted(heads))}"
                 + (f" (was {', '.join(sorted(current))})." if current else " (created)."))
        db.session.remove()


MIGRATION_LOCK_KEY = 5_021_020  # pg_advisory_lock key: one process migrates at a time


@contextmanager
def _one_migration_at_a_time(app: Flask):
    """`serve` and `worker` may start together (their units after an upgrade, or several hosts on one Postgres):
    one checks, backs up and migrates; the others wait, then find the schema up to date."""
    from sqlalchemy import text

    from .extensions import db

    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()  # the lock is the session's: no transaction left open meanwhile
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                connection.commit()
    else:
        with open(Path(app.instance_path) / "migrate.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            yield


@contextmanager
def _console_log():
    """Alembic's progress on the console during the upgrade, with the process's logging left as it was for the
    workers forked afterwards (the migration environment sets logging up only where nobody has)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s [%(name)s] %(message)s"))
    alembic_log = logging.getLogger("alembic")
    root, level = logging.getLogger(), alembic_log.level
    root.addHandler(handler)
    alembic_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        alembic_log.setLevel(level)


class ShopServer(BaseApplication):
    """gunicorn run from here: the settings of dingqiao/gunicorn_conf.py, then GUNICORN_CMD_ARGS, then --bind. Each
    worker builds its own app, as `gunicorn wsgi:app` does."""

    def __init__(self, bind: str | None = None):
        self.bind = bind
        super().__init__(prog="dingqiao")

    def load_config(self) -> None:
        from . import gunicorn_conf

        for name, value in vars(gunicorn_conf).items():
            if name in self.cfg.settings and value is not None:
                self.cfg.set(name, value)
        from_environment = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
        for name, value in vars(from_environment).items():
            if name != "args" and value is not None:
                self.cfg.set(name.lower(), value)
        if self.bind:
            self.cfg.set("bind", self.bind)

    def load(self) -> Flask:
        return _create_app()
