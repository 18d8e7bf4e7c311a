"""Benchmark (b) over HTTP, and (c): whole loops per second through gunicorn, on SQLite and on Postgres.

    .venv/bin/python bench/whole_loop_http.py [--runs 2] [--clients 32] [--duration 10] [--py-spy DIR]
                                              [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

One loop is what a member and an outlet do for one purchase, as HTTP requests to gunicorn (the committed
gunicorn.conf.py, 2 workers × 8 threads, demo mode):
  1. POST /cart/items          the member puts the ¥100 product in the cart
  2. POST /checkout/           places the order at an outlet (stock reserved)          → 302 /orders/DQ…
  3. POST /wechat/pay/notify   WeChat's signed pay notify (order PAID, pickup code, commission lines FROZEN,
                               wallets, ledger, audit, outbox)
  4. GET  /orders/DQ…          the member opens the order to show the pickup code
  5. POST /outlet/redeem/<code> the outlet owner hands the goods over (stock out, commissions SETTLED, …)
The world (bench/loop_world.py): 32 members two referral levels under a root, 600 outlets in 4 regions with
a factory store each. Pickups go round the outlets, so no owner or outlet comes near the redemption rate
limit (20 per owner, 60 per outlet per minute, counted per worker); a run that would pass it stops.
Each client is one member with its own keep-alive connections. Prints loops/s, loop latency p50/p99, the
median time of each step, the server CPU per loop, the load generator's CPU share, peak memory (VmHWM) per
worker, then checks the money, stock and audit-chain invariants over everything the runs wrote.
"""
import asyncio
import itertools
import statistics
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from http_load import Window, best, client_session, closed_loop, cookie_header, load_arguments, peak_memory_mb
from loop_world import PRICE_FEN, LoopWorld, build_loop_world
from scratch import scratch_app, scratch_databases

from dingqiao.extensions import db
from dingqiao.services.audit import verify_audit_chain
from dingqiao.services.invariants import check_money, check_stock
from tests.gunicorn_server import ORDER_URL, PICKUP_CODE, Visitor, demo_merchant_gateway, running_gunicorn

TARGET_LOOPS_PER_S = 150
REDEEMS_PER_OWNER = 19  # under REDEEM_RATE_PER_USER (20 per minute), however the two workers share them
STEPS = ("cart", "checkout", "notify", "order page", "redeem")


@dataclass(frozen=True)
class Browser:
    cookie: str
    token: str


def log_in_everyone(base_url: str, user_ids: list[int]) -> list[Browser]:
    def log_in(user_id: int) -> Browser:
        visitor = Visitor(base_url)
        visitor.log_in(user_id)
        return Browser(cookie_header(visitor), visitor.token)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(log_in, user_ids))


def drive(base_url: str, world: LoopWorld, master_pid: int, args,
          profile_to: Path | None) -> tuple[Window, dict[str, list[float]]]:
    members = log_in_everyone(base_url, [buyer.id for buyer in world.buyers[:args.clients]])
    owners = log_in_everyone(base_url, [outlet.owner_id for outlet in world.outlets])
    gateway = demo_merchant_gateway()  # the demo merchant the server runs as (API v3)
    pickups = itertools.count()
    step_times: dict[str, list[tuple[float, float]]] = defaultdict(list)

    async def run() -> Window:
        shoppers = [client_session(member.cookie) for member in members]
        counters = [client_session() for _ in members]
        wechat = [client_session() for _ in members]

        async def timed(step: str, request) -> aiohttp.ClientResponse:
            began = time.monotonic()
            answer = await request
            await answer.read()
            finished = time.monotonic()
            step_times[step].append((finished, (finished - began) * 1000))
            return answer

        async def loop(client: int) -> str | None:
            member, buyer = members[client], world.buyers[client]
            number = next(pickups)
            if number >= len(world.outlets) * REDEEMS_PER_OWNER:
                return "out of outlets under the redemption rate limit: raise --outlets"
            outlet, owner = world.outlets[number % len(world.outlets)], owners[number % len(world.outlets)]
            shop = shoppers[client]
            try:
                added = await timed("cart", shop.post(f"{base_url}/cart/items", allow_redirects=False, data={
                    "csrf_token": member.token, "product_id": str(world.product_id), "quantity": "1"}))
                if added.status != 302:
                    return f"cart {added.status}"
                placed = await timed("checkout", shop.post(f"{base_url}/checkout/", allow_redirects=False, data={
                    "csrf_token": member.token, "outlet_id": str(outlet.id)}))
                match = ORDER_URL.search(placed.headers.get("Location", ""))
                if placed.status != 302 or not match:
                    return f"checkout {placed.status}"
                order_no = match.group(1)
                body, signed = gateway.signed_notification(out_trade_no=order_no, transaction_id=f"42{order_no[2:]}",
                                                           total_fee=PRICE_FEN, openid=buyer.openid)
                paid = await timed("notify", wechat[client].post(f"{base_url}/wechat/pay/v3/notify", data=body,
                                                                 headers={"Content-Type": "application/json",
                                                                          **signed}))
                if paid.status != 204:
                    return f"notify {paid.status}"
                page = await timed("order page", shop.get(f"{base_url}/orders/{order_no}"))
                code = PICKUP_CODE.search(await page.text())
                if page.status != 200 or not code:
                    return f"order page {page.status}"
                redeemed = await timed("redeem", counters[client].post(
                    f"{base_url}/outlet/redeem/{code.group(1).replace(' ', '')}",
                    data={"csrf_token": owner.token}, headers={"Cookie": owner.cookie, "HX-Request": "true"}))
                if redeemed.status != 200 or "核销成功" not in await redeemed.text():
                    return f"redeem {redeemed.status}"
                return None
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
                return type(exc).__name__

        try:
            return await closed_loop(len(members), loop, master_pid=master_pid, warmup=args.warmup,
                                     duration=args.duration, profile_to=profile_to, profile_waits=not args.cpu_profile)
        finally:
            await asyncio.gather(*(session.close() for session in shoppers + counters + wechat))

    window = asyncio.run(run())
    return window, {step: [ms for finished, ms in step_times[step] if window.holds(finished)] for step in STEPS}


def main() -> None:
    parser = load_arguments(__doc__.splitlines()[0])
    parser.add_argument("--outlets", type=int, default=600)
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="profile every worker's threads, waiting ones included, during the measured window "
                             "(py-spy --idle, collapsed stacks into DIR/sqlite, DIR/postgres)")
    parser.add_argument("--cpu-profile", action="store_true",
                        help="with --py-spy: only the thread holding the GIL (py-spy --gil), where the CPU goes")
    args = parser.parse_args()
    print(f"gunicorn {args.workers} workers × {args.threads} threads (gthread), {args.clients} members looping, "
          f"{args.outlets} outlets, {args.warmup:g} s warm-up + {args.duration:g} s measured, "
          f"best of {args.runs} runs\n")
    for label, url in scratch_databases(args.postgres):
        with tempfile.TemporaryDirectory() as tmp, scratch_app(url) as app:
            world = build_loop_world(app, buyers=args.clients, outlets=args.outlets)
            windows = []
            for number in range(args.runs):
                with running_gunicorn(url, Path(tmp) / "gunicorn.log", workers=args.workers,
                                      threads=args.threads) as server:
                    window, steps = drive(server.url, world, server.process.pid, args,
                                          args.py_spy / label.lower() if args.py_spy else None)
                    peaks = peak_memory_mb(server.process.pid)
                    errors = server.unhandled_errors()
                windows.append(window)
                print(f"{label} run {number + 1}: {window.summary('loop')}")
                print("  median per step: " + ", ".join(
                    f"{step} {statistics.median(times):.1f} ms" for step, times in steps.items() if times))
                print("  peak memory per worker: " + ", ".join(f"{mb:.0f} MB" for mb in peaks)
                      + (f"  UNHANDLED ERRORS: {len(errors)}" if errors else ""))
            top = best(windows)
            verdict = f"target ≥ {TARGET_LOOPS_PER_S} loops/s: {'met' if top.rate >= TARGET_LOOPS_PER_S else 'MISSED'}"
            print(f"{label} best: {top.rate:.1f} loops/s ({verdict if label == 'SQLite' else 'no target'})")
            db.session.remove()
            problems = check_money(db.session) + check_stock(db.session)
            chain = verify_audit_chain(db.session)
            print(f"{label} invariants after the runs: "
                  f"{'ok' if not problems and chain is None else f'BROKEN {problems[:3]} {chain}'}\n")
            db.session.remove()


if __name__ == "__main__":
    main()
