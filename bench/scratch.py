"""What every benchmark script shares: an app on a scratch database, run on a SQLite file and — with
``--postgres URL`` — on a scratch Postgres database made next to URL and dropped afterwards."""
import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dingqiao import create_app  # noqa: E402
from dingqiao.extensions import db  # noqa: E402


def bench_app(url: str, instance_path: str | None = None, **settings):
    """The app as the benchmarks configure it, on ``url``; ``settings`` override."""
    return create_app({"TESTING": True, "SECRET_KEY": "bench-secret-key-of-at-least-32-bytes", "SQLALCHEMY_DATABASE_URI": url, "DINGQIAO_DEMO": False,
                       "WECHAT_APP_ID": "wxbench", "WECHAT_APP_SECRET": "x", "PUBLIC_BASE_URL": "http://bench",
                       **settings}, instance_path=instance_path or tempfile.mkdtemp(prefix="dq-bench-"))


@contextmanager
def scratch_app(url: str) -> Iterator:
    """An app context on ``url`` with the schema created; the tables are dropped on the way out."""
    app = bench_app(url)
    with app.app_context():
        db.create_all()
        try:
            yield app
        finally:
            db.session.remove()
            db.drop_all()
            db.engine.dispose()


def timed(work: Callable[[], object], runs: int = 7) -> tuple[float, float]:
    """(median, max) milliseconds of ``work()``, each run on a fresh session."""
    samples = []
    for _ in range(runs):
        db.session.remove()
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples)


def scratch_databases(postgres_admin_url: str = "") -> Iterator[tuple[str, str]]:
    """(label, URL) of an empty SQLite file, then — with ``postgres_admin_url`` — of a scratch Postgres database
    made next to it; each is removed once the caller has moved on to the next one (or stopped)."""
    with tempfile.TemporaryDirectory() as tmp:
        yield "SQLite", f"sqlite:///{tmp}/bench.sqlite3"
    if postgres_admin_url:
        from tests.conftest import create_postgres_database, drop_postgres_database

        url = create_postgres_database(postgres_admin_url)
        try:
            yield "Postgres", url
        finally:
            drop_postgres_database(postgres_admin_url, url)


def on_each_database(run: Callable[[str, str, int], None], size_option: str, default_size: int) -> None:
    """Parse ``--<size_option> N`` and ``--postgres URL``; call ``run(label, url, N)`` on SQLite, then Postgres."""
    parser = argparse.ArgumentParser()
    parser.add_argument(f"--{size_option}", type=int, default=default_size)
    parser.add_argument("--postgres", default="")
    args = parser.parse_args()
    size = getattr(args, size_option)
    for label, url in scratch_databases(args.postgres):
        run(label, url, size)
