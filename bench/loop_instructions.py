"""CPU instructions per whole loop (place an order → its pay notify → redeem it at the outlet), through the services
and in raw SQL: bench/whole_loop_inprocess.py's two versions, counted instead of timed.

    .venv/bin/python bench/loop_instructions.py [--loops 40]

whole_loop_inprocess.py times the loops, and on a shared machine its ratio moves by a third from one minute to the
next. This one runs each version in its own process under valgrind's callgrind (Debian package ``valgrind``): the
world of bench/loop_world.py is built and 30 loops warm up with counting off, then --loops loops are counted. The
same code gives the same count whatever else the machine does, so two commits can be compared (copy this file,
whole_loop_inprocess.py and raw_sql_loop.py into the other checkout). Prints instructions per loop for each
version and the services' share of raw SQL's speed (raw instructions ÷ services instructions). SQLite only.
"""
import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from callgrind import count_child, counting, require_valgrind

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("services", "raw SQL")
WARMUP_LOOPS = 30


def count_one(version: str, loops: int) -> int:
    """Instructions executed by ``loops`` loops of ``version``, counted by callgrind in a child process."""
    return count_child(__file__, "--child", version, "--loops", str(loops))


def loop_in_child(version: str, loops: int) -> None:
    """Inside valgrind: build the world and warm up with counting off, then count ``loops`` loops."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from loop_world import build_loop_world
    from raw_sql_loop import RawLoop
    from scratch import scratch_app
    from whole_loop_inprocess import BUYERS, OUTLETS, make_loops

    folder = tempfile.mkdtemp(prefix="dq-loop-instructions-")
    url = f"sqlite:///{folder}/loop.db"
    with scratch_app(url) as app:
        world = build_loop_world(app, buyers=BUYERS, outlets=OUTLETS)
        raw = RawLoop.connect(url)
        through_services, in_raw_sql = make_loops(world, raw, Counter())
        loop = through_services if version == "services" else in_raw_sql
        for number in range(WARMUP_LOOPS):
            loop(number)
        with counting():
            for number in range(WARMUP_LOOPS, WARMUP_LOOPS + loops):
                loop(number)
        raw.close()
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=40)
    parser.add_argument("--child", choices=VERSIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        loop_in_child(args.child, args.loops)
        return
    require_valgrind()
    print(f"instructions per loop (place → pay → redeem), in-process, SQLite, {args.loops} loops each (callgrind)")
    counts = {version: count_one(version, args.loops) / args.loops for version in VERSIONS}
    for version, count in counts.items():
        print(f"  {version:<9} {count:12,.0f}")
    print(f"  services = {counts['raw SQL'] / counts['services']:.1%} of raw SQL's speed (by instructions)")


if __name__ == "__main__":
    main()
