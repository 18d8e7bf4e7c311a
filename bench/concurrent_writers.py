"""Concurrent SQLite writers with and without ``db.WriterQueue`` (docs/performance.md, "The writer queue").

    .venv/bin/python bench/concurrent_writers.py [--processes 2] [--threads 8] [--duration 8] [--runs 3]
                                                 [--inside-ms 2] [--outside-ms 2]

P processes (as gunicorn's workers) of T threads (their request threads). Each thread loops: ``--outside-ms``
of Python work outside any transaction (parsing, rendering: it competes for the GIL), then one write
transaction through ``dingqiao.db.write_transaction`` on its own session: BEGIN IMMEDIATE, update one of four
hot rows, insert one row, ``--inside-ms`` of Python work (the ORM's, while the lock is held), commit. The
shape of the money path's short transactions, without the app around them. Runs alternate queue on / off
(``DINGQIAO_WRITER_QUEUE=0``), each on a fresh database file, so the machine's noise falls on both alike.
Prints committed transactions/s, one transaction's latency (asking to commit) p50/p99/max, and errors
("database is locked" after the busy timeout, which is 5 s here as in production).
"""
import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BUSY_TIMEOUT_MS = 5000


def spin(ms: float) -> None:
    """``ms`` of CPU in Python, holding the GIL as interpreted work does."""
    until = time.perf_counter() + ms / 1000
    while time.perf_counter() < until:
        pass


def worker(path: str, threads: int, inside_ms: float, outside_ms: float, warmup: float, duration: float, ready,
           results) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from dingqiao.db import configure_sqlite, write_transaction

    engine = create_engine(f"sqlite:///{path}", pool_size=threads, max_overflow=0)
    configure_sqlite(engine, BUSY_TIMEOUT_MS)  # the queue, unless DINGQIAO_WRITER_QUEUE=0
    latencies: list[float] = []
    errors: Counter = Counter()
    lock = threading.Lock()
    ready.wait()  # every process imported and set up: all start together, whatever the machine's load
    opens = time.time() + warmup
    closes = opens + duration

    def loop(number: int) -> None:
        mine, failed = [], Counter()
        hot = number % 4 + 1
        while (now := time.time()) < closes:
            spin(outside_ms)
            began = time.perf_counter()
            try:
                with Session(engine) as session, write_transaction(session):
                    session.execute(text("UPDATE hot SET n = n + 1 WHERE id = :id"), {"id": hot})
                    session.execute(text("INSERT INTO events (hot_id, at) VALUES (:id, :at)"), {"id": hot, "at": now})
                    spin(inside_ms)
            except Exception as exc:  # noqa: BLE001  (counted and shown: "database is locked" is the one expected)
                if time.time() >= opens:
                    failed[str(exc).splitlines()[0][:60]] += 1
                continue
            if opens <= time.time() < closes:
                mine.append((time.perf_counter() - began) * 1000)
        with lock:
            latencies.extend(mine)
            errors.update(failed)

    pool = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    cpu = os.times()
    results.put((latencies, errors, cpu.user + cpu.system))
    engine.dispose()


def one_run(args, queue_on: bool) -> tuple[float, list[float], Counter, float]:
    import sqlite3

    with tempfile.TemporaryDirectory(prefix="dq-writers-") as tmp:
        path = str(Path(tmp) / "writers.sqlite3")
        connection = sqlite3.connect(path)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE hot (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        connection.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, hot_id INTEGER NOT NULL, at REAL)")
        connection.executemany("INSERT INTO hot VALUES (?, 0)", [(n,) for n in range(1, 5)])
        connection.commit()
        connection.close()
        os.environ["DINGQIAO_WRITER_QUEUE"] = "1" if queue_on else "0"
        context = mp.get_context("spawn")
        results = context.Queue()
        ready = context.Barrier(args.processes)
        processes = [context.Process(target=worker, args=(path, args.threads, args.inside_ms, args.outside_ms,
                                                          args.warmup, args.duration, ready, results))
                     for _ in range(args.processes)]
        for process in processes:
            process.start()
        latencies, errors, cpu = [], Counter(), 0.0
        for _ in processes:
            got, failed, seconds = results.get()
            latencies += got
            errors.update(failed)
            cpu += seconds
        for process in processes:
            process.join()
        events = sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()[0]
        assert events >= len(latencies), "a transaction counted as committed is not in the database"
        return len(latencies) / args.duration, latencies, errors, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--inside-ms", type=float, default=2.0)
    parser.add_argument("--outside-ms", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.processes} processes × {args.threads} threads, {args.inside_ms:g} ms inside / "
          f"{args.outside_ms:g} ms outside each transaction, {args.warmup:g} s warm-up + {args.duration:g} s, "
          f"{args.runs} runs each way, alternating; load average {os.getloadavg()[0]:.1f}\n")
    for number in range(args.runs):
        for queue_on in (True, False):
            rate, latencies, errors, cpu = one_run(args, queue_on)
            ordered = sorted(latencies) or [0.0]
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            print(f"run {number + 1} queue {'on ' if queue_on else 'off'}: {rate:7.1f} tx/s  "
                  f"p50 {statistics.median(ordered):6.1f} ms  p99 {p99:7.1f} ms  max {ordered[-1]:7.1f} ms  "
                  f"CPU {cpu:5.1f} s  errors {dict(errors) or 0}")


if __name__ == "__main__":
    main()
