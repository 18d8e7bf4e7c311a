"""The running demo does the scheduled work itself, with no cron (issue 20): with ORDER_PAYMENT_TIMEOUT_MINUTES=1
an unpaid order that nobody opens again is cancelled by the demo's own jobs, its stock released.

Nobody looks at the order while waiting — the database file is read directly — so the lazy cancel-on-view path
cannot be what cancels it. No timing is asserted (a busy machine may be slow); the deadline is generous, and the
test reports how long after the order's deadline the job cancelled it."""
import os
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.gunicorn_server import ROOT, Visitor, free_port

pytestmark = pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")),
                                reason="`dingqiao demo` keeps its data in a SQLite file in its home folder")
DINGQIAO = ROOT / ".venv" / "bin" / "dingqiao"
DEADLINE = 300  # seconds: the order expires after 60 and the job runs every 30; the rest is for a loaded machine


def query(database: Path, sql: str, *args):
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        return connection.execute(sql, args).fetchall()


def test_an_unpaid_order_nobody_opens_is_cancelled_by_the_running_demo(tmp_path):
    home, port = tmp_path / "instance", free_port()
    env = {**os.environ, "DINGQIAO_HOME": str(home), "ORDER_PAYMENT_TIMEOUT_MINUTES": "1", "GUNICORN_WORKERS": "2"}
    for name in ("DATABASE_URL", "DINGQIAO_DEMO", "DINGQIAO_JOBS", "SECRET_KEY", "WECHAT_BASE_URL"):
        env.pop(name, None)
    demo = subprocess.Popen([str(DINGQIAO), "demo", "--bind", f"127.0.0.1:{port}"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True).start()
    database = home / "dingqiao.sqlite3"
    try:
        visitor = Visitor(f"http://127.0.0.1:{port}")
        wait(lambda: answers(visitor), 180, "the demo to answer", lines, demo)
        [(member_id,)] = query(database, "SELECT id FROM users WHERE identity = 'member' AND phone != '' "
                                         "ORDER BY id LIMIT 1")
        [(outlet_id, product_id)] = query(database, """
            SELECT o.id, s.product_id FROM outlets o JOIN stock_levels s ON s.location_id = o.location_id
            JOIN products p ON p.id = s.product_id
            WHERE o.status = 'active' AND p.is_on_sale AND s.on_hand - s.reserved >= 1
            ORDER BY o.id, s.product_id LIMIT 1""")
        visitor.log_in(member_id)
        visitor.put_in_cart(product_id)
        status, order_no = visitor.check_out(outlet_id)
        assert status == 302 and order_no, (status, "".join(lines[-40:]))

        def cancelled() -> bool:
            return query(database, "SELECT status FROM orders WHERE order_no = ?", order_no) == [("cancelled",)]

        wait(cancelled, DEADLINE, f"the demo's jobs to cancel {order_no}", lines, demo)
        [(expires_at, cancelled_at)] = query(database, "SELECT expires_at, cancelled_at FROM orders WHERE order_no = ?",
                                             order_no)
        assert cancelled_at >= expires_at
        runs = query(database, "SELECT ok, summary FROM job_runs WHERE job_name = 'cancel-expired-orders'")
        assert any(ok and "Cancelled 1 expired" in summary for ok, summary in runs), runs  # the job did it
        print(f"cancelled {cancelled_at} for a deadline of {expires_at}")
        # Its reservation released: the order's reserve and release movements cancel out.
        assert query(database, "SELECT COUNT(*) FROM stock_movements m JOIN orders o ON o.id = m.order_id "
                               "WHERE o.order_no = ?", order_no) == [(2,)]
        assert not query(database, "SELECT 1 FROM stock_movements m JOIN orders o ON o.id = m.order_id "
                                   "WHERE o.order_no = ? GROUP BY m.order_id HAVING SUM(m.reserved_delta) != 0",
                         order_no)
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(timeout=60)


def answers(visitor: Visitor) -> bool:
    try:
        return visitor.get("/healthz").status_code == 200
    except OSError:
        return False


def wait(condition, deadline: float, what: str, lines: list[str], process: subprocess.Popen) -> None:
    """``wait_for`` while the demo runs: it stopping is a failure at once, with its last lines."""

    def alive_and(condition):
        assert process.poll() is None, "".join(lines[-80:])
        return condition()

    wait_for(lambda: alive_and(condition), what, deadline, step=1, explain=lambda: "".join(lines[-80:]))
