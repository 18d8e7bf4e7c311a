"""Benchmark (d): the flash sale of tests/test_under_load.py — 200 members press 提交订单 at once for 50 units.

    .venv/bin/python bench/flash_sale.py [--runs 2] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

Each run builds a fresh world (tests/money_world.py: one outlet with 50 units of a ¥100 product, the
worked-example commission rule; every fourth buyer came by a share link) on a fresh scratch database (a
SQLite file; with --postgres also a scratch Postgres database), starts gunicorn (the committed
gunicorn.conf.py, 2 workers × 8 threads), logs the 200 members in and puts the product in each cart. Then
every member's checkout is sent at the same instant, each on its own already-open keep-alive connection.
Prints when the 50th order was answered (sold out), when the last of the 200 answers came back, and the
peak memory (VmHWM) per worker; checks that exactly 50 orders exist and that everyone else got 409.
"""
import argparse
import asyncio
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from http_load import THREADS, WORKERS, client_session, cookie_header, peak_memory_mb
from scratch import scratch_app, scratch_databases
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import BindingSource, Order, User
from dingqiao.services.referrals import bind_upline
from tests.factories import make_user
from tests.gunicorn_server import ORDER_URL, Visitor, running_gunicorn
from tests.money_world import build_world

BUYERS, UNITS = 200, 50


def sell_out(url: str, log: Path, args) -> tuple[float, float, list[float]]:
    """(seconds to the 50th order, seconds to the last answer, peak MB per worker) of one flash sale."""
    with scratch_app(url) as app:
        world = build_world(app, units=UNITS)
        sharer = db.session.get(User, world.parent)
        buyers = [make_user(f"抢购{n}") for n in range(BUYERS)]
        for buyer in buyers[::4]:
            bind_upline(db.session, buyer.id, sharer.referral_code, BindingSource.LINK)
        buyer_ids = [buyer.id for buyer in buyers]
        db.session.remove()
        with running_gunicorn(url, log, workers=args.workers, threads=args.threads) as server:
            def get_ready(user_id: int) -> tuple[str, str]:
                visitor = Visitor(server.url)
                visitor.log_in(user_id)
                visitor.put_in_cart(world.product_id)
                return cookie_header(visitor), visitor.token

            with ThreadPoolExecutor(16) as pool:
                browsers = list(pool.map(get_ready, buyer_ids))
            sold_out, last, outcomes = asyncio.run(press_submit_together(server.url, browsers, world.outlet_id))
            peaks = peak_memory_mb(server.process.pid)
            assert server.unhandled_errors() == []
        orders = [no for status, no in outcomes if no]
        assert len(orders) == UNITS and sorted({status for status, _ in outcomes}) == [302, 409], outcomes
        assert db.session.scalar(select(func.count()).select_from(Order)) == UNITS
        db.session.remove()
    return sold_out, last, peaks


async def press_submit_together(base_url: str, browsers: list[tuple[str, str]], outlet_id: int):
    sessions = [client_session(cookie) for cookie, _ in browsers]
    try:
        await asyncio.gather(*(session.get(f"{base_url}/healthz") for session in sessions))  # connections open
        answered: list[tuple[float, int, str | None]] = []
        start = time.monotonic()

        async def press(session: aiohttp.ClientSession, token: str) -> None:
            async with session.post(f"{base_url}/checkout/", data={"csrf_token": token, "outlet_id": str(outlet_id)},
                                    allow_redirects=False) as answer:
                await answer.read()
                match = ORDER_URL.search(answer.headers.get("Location", ""))
                answered.append((time.monotonic() - start, answer.status, match.group(1) if match else None))

        await asyncio.gather(*(press(session, token) for session, (_, token) in zip(sessions, browsers)))
    finally:
        await asyncio.gather(*(session.close() for session in sessions))
    orders = sorted(at for at, _, order_no in answered if order_no)
    sold_out = orders[UNITS - 1] if len(orders) >= UNITS else float("nan")
    return sold_out, max(at for at, _, _ in answered), [(status, order_no) for _, status, order_no in answered]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--postgres", default="")
    args = parser.parse_args()
    print(f"gunicorn {args.workers} workers × {args.threads} threads (gthread), {BUYERS} buyers, {UNITS} units, "
          f"{args.runs} runs on fresh databases\n")
    results: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.runs):
        for label, url in scratch_databases(args.postgres):
            with tempfile.TemporaryDirectory() as tmp:
                sold_out, last, peaks = sell_out(url, Path(tmp) / "gunicorn.log", args)
            results.setdefault(label, []).append((sold_out, last))
            print(f"{label}: sold out ({UNITS} orders answered) after {sold_out:.2f} s, all {BUYERS} answered after "
                  f"{last:.2f} s; peak memory per worker " + ", ".join(f"{mb:.0f} MB" for mb in peaks))
    print()
    for label, times in results.items():
        print(f"{label} median of {len(times)}: sold out after {statistics.median(t for t, _ in times):.2f} s, "
              f"all answered after {statistics.median(t for _, t in times):.2f} s")


if __name__ == "__main__":
    main()
