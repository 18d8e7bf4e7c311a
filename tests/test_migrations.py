"""The migrations: `flask db upgrade` on an empty database builds exactly the models' schema, on a SQLite file and
on Postgres alike; the constraints the services rely on are really in the migrated database; downgrade undoes it
all; and the history stays one straight line.

These tests make their own empty databases (a SQLite file in tmp_path, a scratch Postgres database next to
TEST_POSTGRES_URL) instead of the suite's ``app`` fixture, which builds its tables with ``create_all`` and so
never runs a migration."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint, inspect, text
from sqlalchemy.exc import IntegrityError

from dingqiao import create_app
from dingqiao.extensions import db
from dingqiao.models import FactoryStore, LocationKind, StockLevel, StockLocation
from tests.conftest import (
    POSTGRES_URL,
    create_postgres_database,
    drop_postgres_database,
    make_config,
    postgres_reachable,
)
from tests.factories import make_product, make_region, make_user

BOTH_DATABASES = pytest.mark.parametrize(
    "empty_database_url",
    [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)],
    indirect=True,
)


@pytest.fixture
def empty_database_url(request, tmp_path):
    """A database with no tables at all: a fresh SQLite file, or a scratch Postgres database dropped afterwards.
    The Postgres one is made whatever TEST_DATABASE_URL says, so the SQLite run checks Postgres migrations too."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.sqlite3'}"
        return
    if not postgres_reachable(POSTGRES_URL):
        pytest.skip(f"Postgres does not answer at {POSTGRES_URL} (set TEST_POSTGRES_URL to point elsewhere)")
    url = create_postgres_database(POSTGRES_URL)
    try:
        yield url
    finally:
        drop_postgres_database(POSTGRES_URL, url)


@pytest.fixture
def migration_app(empty_database_url, tmp_path):
    """The real app on the empty database; nothing creates tables but the migrations a test runs."""
    app = create_app(make_config(empty_database_url, tmp_path))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()  # no pooled connection may keep the scratch Postgres database from being dropped


def run_db_command(app, *args: str) -> None:
    """``flask db <args>`` as a person runs it."""
    result = app.test_cli_runner().invoke(args=["db", *args])
    assert result.exit_code == 0, f"flask db {' '.join(args)} failed:\n{result.output}\n{result.exception!r}"


def schema_differences(app) -> list:
    """What `flask db migrate` would generate now: empty when the database is exactly the models."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, db.metadata)


def check_constraint_differences(app) -> dict:
    """Autogenerate does not compare CHECK constraints at all, so compare their names table by table."""
    differences = {}
    with app.app_context(), db.engine.connect() as connection:
        inspector = inspect(connection)
        for table in db.metadata.sorted_tables:
            expected = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
            found = {c["name"] for c in inspector.get_check_constraints(table.name)}
            if expected != found:
                differences[table.name] = {"missing": sorted(expected - found), "unexpected": sorted(found - expected)}
    return differences


def table_names(app) -> set[str]:
    with app.app_context(), db.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def script_directory(app) -> ScriptDirectory:
    migrate = app.extensions["migrate"]
    with app.app_context():
        return ScriptDirectory.from_config(migrate.migrate.get_config(migrate.directory))


def current_revisions(app) -> set[str]:
    with app.app_context(), db.engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def assert_schema_is_the_models(app) -> None:
    differences = schema_differences(app)
    assert differences == [], "the migrated schema differs from the models:\n" + "\n".join(map(repr, differences))
    checks = check_constraint_differences(app)
    assert checks == {}, f"CHECK constraints differ between the migrated schema and the models: {checks}"
    assert table_names(app) == {t.name for t in db.metadata.sorted_tables} | {"alembic_version"}
    assert current_revisions(app) == set(script_directory(app).get_heads())


def assert_constraints_hold(app) -> None:
    """The guarantees the services lean on are enforced by the migrated database itself."""
    with app.app_context():
        session = db.session
        if db.engine.dialect.name == "sqlite":
            assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1

        inspector = inspect(db.engine)
        assert {"users", "orders", "wallets", "ledger_entries", "audit_log"} <= set(inspector.get_table_names())
        assert {"uq_factory_stores_region_id": ["region_id"]}.items() <= {
            u["name"]: u["column_names"] for u in inspector.get_unique_constraints("factory_stores")
        }.items()

        # One factory store per region.
        region = make_region("迁移区域")
        for index, owner in enumerate([make_user("甲"), make_user("乙")]):
            location = StockLocation(kind=LocationKind.FACTORY, name=f"工厂店{index}")
            session.add(location)
            session.flush()
            session.add(FactoryStore(region_id=region.id, owner_user_id=owner.id, location_id=location.id,
                                     name=f"店{index}"))
            if index == 0:
                session.commit()
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()

        # Stock never negative nor over-reserved; a stock level needs a real location (foreign keys are on).
        product = make_product()
        location = StockLocation(kind=LocationKind.OUTLET, name="迁移网点")
        session.add(location)
        session.commit()
        refused = (
            {"on_hand": -1},
            {"on_hand": 1, "reserved": 2},
            {"low_stock_threshold": -1},
            {"location_id": location.id + 1000},  # no such location
        )
        for values in refused:
            session.add(StockLevel(**{"location_id": location.id, "product_id": product.id, **values}))
            with pytest.raises(IntegrityError):
                session.commit()
            session.rollback()
        session.add(StockLevel(location_id=location.id, product_id=product.id, on_hand=3, reserved=3))
        session.commit()  # and the valid row is accepted: the failures above were the constraints, not the row


@BOTH_DATABASES
def test_upgrade_on_an_empty_database_builds_exactly_the_models_schema(migration_app):
    assert table_names(migration_app) == set()
    run_db_command(migration_app, "upgrade")
    assert_schema_is_the_models(migration_app)
    assert_constraints_hold(migration_app)


@BOTH_DATABASES
def test_downgrade_to_base_removes_everything_and_upgrade_rebuilds_it(migration_app):
    run_db_command(migration_app, "upgrade")
    run_db_command(migration_app, "downgrade", "base")
    assert table_names(migration_app) == {"alembic_version"}
    assert current_revisions(migration_app) == set()
    run_db_command(migration_app, "upgrade")
    assert_schema_is_the_models(migration_app)
    assert_constraints_hold(migration_app)


def test_migration_history_is_one_straight_line(tmp_path):
    app = create_app(make_config(f"sqlite:///{tmp_path / 'unused.sqlite3'}", tmp_path))
    script = script_directory(app)
    assert script.dir == app.extensions["migrate"].directory
    revisions = list(script.walk_revisions())
    assert revisions, "there is at least the initial migration"
    assert len(script.get_heads()) == 1, f"the history forks: heads {script.get_heads()}; merge or re-parent"
    assert len(script.get_bases()) == 1, f"more than one initial migration: {script.get_bases()}"
    assert not [r.revision for r in revisions if r.is_merge_point or r.is_branch_point]
    assert not [r.revision for r in revisions if r.branch_labels or r.dependencies]
    # walk_revisions goes head to base; each one's parent is the next one.
    assert [r.down_revision for r in revisions] == [r.revision for r in revisions[1:]] + [None]


def test_an_in_process_upgrade_leaves_the_loggers_alone(tmp_path):
    import logging

    # A host process that set logging up (pytest does; so does gunicorn).
    host_handler = logging.NullHandler()
    logging.getLogger().addHandler(host_handler)
    try:
        watched = logging.getLogger("sqlalchemy.engine")
        root_handlers = logging.getLogger().handlers[:]
        app = create_app(make_config(f"sqlite:///{tmp_path / 'log.sqlite3'}", tmp_path))
        run_db_command(app, "upgrade")
        assert not watched.disabled
        assert logging.getLogger().handlers == root_handlers
    finally:
        logging.getLogger().removeHandler(host_handler)
    with app.app_context():
        db.engine.dispose()


@BOTH_DATABASES
def test_upgrading_a_live_database_keeps_its_rows_and_tidies_the_payment_queue(migration_app):
    """The security migration on a database in use: accounts get session version 0 (everyone logs in once
    more), existing products stay on sale, a second refund offer for one WeChat transaction becomes a
    duplicate before the unique index is built, and unsigned notifies leave the finance queue."""
    run_db_command(migration_app, "upgrade", "6a3abfc39eac")
    with migration_app.app_context(), db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO users (openid, nickname, avatar_url, identity, referral_code, is_active, created_at) "
            "VALUES ('o-1', '甲', '', 'member', 'REF001', true, CURRENT_TIMESTAMP)"))
        connection.execute(text(
            "INSERT INTO admin_users (username, password_hash, role, is_active, created_at) "
            "VALUES ('boss', 'x', 'superadmin', true, CURRENT_TIMESTAMP)"))
        connection.execute(text(
            "INSERT INTO categories (name, sort_order, is_active) VALUES ('洗护', 0, true)"))
        connection.execute(text(
            "INSERT INTO products (category_id, name, subtitle, description, unit, member_price_fen, "
            "outlet_price_fen, factory_price_fen, is_on_sale, sort_order, created_at, updated_at) SELECT id, "
            "'洗衣液', '', '', '瓶', 1000, 900, 800, true, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM categories"))
        for kind, transaction_id in (("after_cancel", "T1"), ("after_cancel", "T1"), ("after_cancel", "T2"),
                                     ("bad_signature", ""), ("malformed", ""), ("mismatch", "T3")):
            connection.execute(text(
                "INSERT INTO payment_events (kind, out_trade_no, transaction_id, detail, needs_attention, created_at) "
                "VALUES (:kind, 'O1', :tid, '', true, CURRENT_TIMESTAMP)"), {"kind": kind, "tid": transaction_id})
    run_db_command(migration_app, "upgrade")
    assert_schema_is_the_models(migration_app)
    with migration_app.app_context(), db.engine.connect() as connection:
        assert connection.execute(text("SELECT session_version FROM users")).scalar_one() == 0
        assert connection.execute(text("SELECT session_version, failed_logins, locked_until FROM admin_users")).one() \
            == (0, 0, None)
        assert connection.execute(text("SELECT is_on_sale, price_review_pending FROM products")).one() == (True, False)
        events = connection.execute(text(
            "SELECT kind, transaction_id, needs_attention, resolved_at IS NULL FROM payment_events ORDER BY id")).all()
        assert [tuple(row) for row in events] == [
            ("after_cancel", "T1", True, True), ("duplicate", "T1", False, True), ("after_cancel", "T2", True, True),
            ("bad_signature", "", True, False), ("malformed", "", True, False), ("mismatch", "T3", True, True)]
