"""Benchmark (b) in-process: the whole loop through the services, as a share of the same loop in raw SQL.

    .venv/bin/python bench/whole_loop_inprocess.py [--runs 2] [--duration 5] [--profile]
                                                   [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

On a scratch database (a SQLite file; with --postgres also a scratch Postgres database, dropped afterwards)
holding the world of bench/loop_world.py, one thread runs loops back to back for a fixed time:
  services  services.orders.place_order → services.payments.apply_payment (what the verified pay notify
            calls) → services.redemption.redeem, each on a fresh session, as three requests would;
  raw SQL   bench/raw_sql_loop.py: the same three transactions with the same writes, through the DB-API
            (sqlite3 / psycopg) with no SQLAlchemy.
The two alternate, each run twice or more; the best of each is compared. With --profile, one more services
run goes under cProfile and its own time is summed by where the code lives (SQLAlchemy, the DB driver, our
code, the rest). The warm-up also counts the SQL
statements each version sends per loop (COMMIT included; on SQLite our BEGIN goes straight to the
driver, past the counting event). Afterwards the money, stock and
audit-chain invariants are checked over everything both wrote. Asserts nothing.
"""
import argparse
import cProfile
import pstats
import time
from collections import Counter
from collections.abc import Callable

from loop_world import PRICE_FEN, build_loop_world
from raw_sql_loop import RawLoop
from scratch import scratch_app, scratch_databases
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from dingqiao.extensions import db
from dingqiao.models import Order, User
from dingqiao.services.audit import verify_audit_chain
from dingqiao.services.invariants import check_money, check_stock
from dingqiao.services.orders import place_order
from dingqiao.services.payments import apply_payment
from dingqiao.services.redemption import redeem
from dingqiao.wechat.pay import DEMO_SETTINGS

TARGET_SHARE = 0.20
BUYERS = OUTLETS = 32
WARMUP_LOOPS = 30


def loops_per_second(loop: Callable[[int], None], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loop(done)
        done += 1
    return done / (time.perf_counter() - start)


def where(filename: str, function: str) -> str:
    if "sqlalchemy/" in filename:
        return "SQLAlchemy"
    if "psycopg" in filename or "sqlite3" in function or "psycopg" in function:
        return "the DB driver (sqlite3 / psycopg)"
    if "/dingqiao/" in filename:
        return "dingqiao (our services)"
    return "the rest (stdlib json/hashlib/…, Python built-ins)"


def profile_by_package(loop: Callable[[int], None], loops: int) -> None:
    profile = cProfile.Profile()
    profile.runcall(lambda: [loop(number) for number in range(loops)])
    own_time = Counter()
    for (filename, _, function), (_, _, tottime, _, _) in pstats.Stats(profile).stats.items():
        own_time[where(filename, function)] += tottime
    total = sum(own_time.values())
    print(f"  cProfile of {loops} service loops, own time by package:")
    for package, seconds in own_time.most_common():
        print(f"    {seconds / total:6.1%}  {package}")


def make_loops(world, raw: RawLoop, collisions: Counter) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """The loop's two versions (loop number → one place, pay, redeem): through the services, and in raw SQL.
    Also bench/loop_instructions.py's."""

    def through_services(number: int) -> None:
        buyer, outlet = world.buyers[number % BUYERS], world.outlets[number % OUTLETS]
        while True:
            try:
                order = place_order(db.session, db.session.get(User, buyer.id), outlet.id,
                                    {world.product_id: 1}, timeout_minutes=15, from_cart=False)
                break
            except IntegrityError:  # an order number met another one (see raw_sql_loop.RawLoop.place)
                db.session.remove()
                collisions["services"] += 1
        order_no = order.order_no
        db.session.remove()
        apply_payment(db.session, DEMO_SETTINGS, out_trade_no=order_no, transaction_id=f"42{order_no[2:]}",
                      total_fee=PRICE_FEN, mch_id=DEMO_SETTINGS.mch_id, appid=DEMO_SETTINGS.app_id, raw={})
        code = db.session.scalar(select(Order.pickup_code).where(Order.order_no == order_no))
        db.session.remove()
        redeem(db.session, outlet.owner_id, code)
        db.session.remove()

    def in_raw_sql(number: int) -> None:
        buyer, outlet = world.buyers[number % BUYERS], world.outlets[number % OUTLETS]
        order_no = raw.place(buyer.id, outlet.id, world.product_id)
        code = raw.pay(order_no, f"42{order_no[2:]}", PRICE_FEN)
        raw.redeem(outlet.owner_id, code)

    return through_services, in_raw_sql


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--postgres", default="")
    parser.add_argument("--profile", action="store_true", help="cProfile the services loop afterwards")
    args = parser.parse_args()
    print(f"one thread, {args.duration:g} s per measurement, services and raw SQL alternating, best of {args.runs}\n")
    for label, url in scratch_databases(args.postgres):
        with scratch_app(url) as app:
            world = build_loop_world(app, buyers=BUYERS, outlets=OUTLETS)
            raw = RawLoop.connect(url)

            collisions = Counter()
            through_services, in_raw_sql = make_loops(world, raw, collisions)

            sent = []
            counting = event.listens_for(db.engine, "before_cursor_execute")(lambda *_: sent.append(1))
            for number in range(WARMUP_LOOPS):
                through_services(number)
                in_raw_sql(number)
            event.remove(db.engine, "before_cursor_execute", counting)
            raw_commands = raw.statements + 3 * WARMUP_LOOPS * (label == "Postgres")  # psycopg's implicit BEGINs
            print(f"{label}: SQL statements per loop: services {len(sent) / WARMUP_LOOPS:.0f}, "
                  f"raw SQL {raw_commands / WARMUP_LOOPS:.0f}")
            rates: dict[str, list[float]] = {"services": [], "raw SQL": []}
            for number in range(args.runs):
                for name, loop in (("services", through_services), ("raw SQL", in_raw_sql)):
                    rates[name].append(loops_per_second(loop, args.duration))
                print(f"{label} run {number + 1}: services {rates['services'][-1]:6.1f} loops/s, "
                      f"raw SQL {rates['raw SQL'][-1]:6.1f} loops/s")
            services, plain = max(rates["services"]), max(rates["raw SQL"])
            share = services / plain
            print(f"{label} best: services {services:.1f} loops/s ({1000 / services:.1f} ms a loop), raw SQL "
                  f"{plain:.1f} loops/s ({1000 / plain:.1f} ms) → services = {share:.1%} of raw SQL "
                  f"(target ≥ {TARGET_SHARE:.0%}: {'met' if share >= TARGET_SHARE else 'MISSED'})")
            if args.profile:
                profile_by_package(through_services, 100)
            collisions["raw SQL"] = raw.collisions
            if any(collisions.values()):
                print(f"  order-number collisions, placed again: {dict(collisions)}")
            raw.close()
            db.session.remove()
            problems = check_money(db.session) + check_stock(db.session)
            chain = verify_audit_chain(db.session)
            print(f"{label} invariants over both versions' rows: "
                  f"{'ok' if not problems and chain is None else f'BROKEN {problems[:3]} {chain}'}\n")
            db.session.remove()


if __name__ == "__main__":
    main()
