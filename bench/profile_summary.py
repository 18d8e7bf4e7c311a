"""Where the request threads of gunicorn's workers spent their time, from py-spy's collapsed stacks.

    .venv/bin/python bench/profile_summary.py DIR [--top 15]

DIR holds the worker-<pid>.txt files that ``--py-spy DIR`` of the HTTP benchmarks writes (py-spy record
--format raw: one line per distinct stack, then its sample count). Only samples inside a request (gunicorn's
handle_request) count; a thread waiting for work is not busy. With --idle samples (whole_loop_http.py) the
shares are of the request threads' wall time; with --gil samples (shop_pages.py), of the CPU time the
workers spent on requests. Each sample is put in one bucket:
  waiting for the SQLite write lock   inside BEGIN (dingqiao/db.py). Under WAL a read's plain BEGIN
                                      never waits, so time here is a write's BEGIN IMMEDIATE queued
                                      behind another writer
  waiting for Postgres                psycopg waiting for the server's answer: row locks held by other
                                      transactions, the server's own work, I/O
  in the database driver              executing a statement or committing (the C driver, I/O included)
  rendering templates                 Jinja, below render_page
  Python (SQLAlchemy)                 the rest with SQLAlchemy in the stack: building, compiling, flushing
  Python (other)                      Flask, the limiter, our code, gunicorn's request handling
With --idle, Python samples include time spent waiting for the GIL (py-spy cannot tell the two apart). Then
the same by
view, the line of our code that was waiting when the database made it wait, and the functions most often on
top of the stack.
"""
import argparse
import re
from collections import Counter
from pathlib import Path

VIEW = re.compile(r";(\w+) \(dingqiao/blueprints/[\w/]+\.py:\d+\)")
OURS = re.compile(r"([\w.<>]+) \(dingqiao/([\w/]+\.py:\d+)\)")
WAITING = ("waiting for the SQLite write lock", "waiting for Postgres")


def bucket(stack: str, leaf: str) -> str:
    if "_on_begin (dingqiao/db.py" in stack:
        return "waiting for the SQLite write lock"
    if leaf.startswith("Connection.wait (psycopg"):
        return "waiting for Postgres"
    if leaf.startswith(("DefaultDialect.do_execute", "DefaultExecutionContext", "DefaultDialect.do_commit",
                        "Connection.commit", "Cursor.", "SQLiteDialect", "PGDialect")) or "do_commit" in leaf:
        return "in the database driver"
    if "render_page (dingqiao/web.py" in stack:
        return "rendering templates"
    if "(sqlalchemy/" in stack:
        return "Python (SQLAlchemy)"
    return "Python (other)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    buckets, views, leaves, waits = Counter(), Counter(), Counter(), Counter()
    for path in sorted(args.folder.glob("worker-*.txt")):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if "handle_request" not in stack:
                continue
            samples = int(count)
            leaf = stack.rsplit(";", 1)[-1]
            activity = bucket(stack, leaf)
            buckets[activity] += samples
            if activity in WAITING:
                ours = OURS.findall(stack)
                waits[" ← ".join(f"{name} ({where})" for name, where in ours[::-1][:3])] += samples
            view = VIEW.findall(stack)
            views[view[0] if view else "(outside a view)"] += samples
            leaves[re.sub(r":\d+\)", ")", leaf)] += samples
    total = sum(buckets.values())
    if not total:
        raise SystemExit(f"no request samples in {args.folder}")
    print(f"{total} samples of request threads\n")
    for title, counter, limit in (("by activity", buckets, None), ("by view", views, None),
                                  ("waiting for the database, at", waits, 8),
                                  ("on top of the stack", leaves, args.top)):
        print(title)
        for name, samples in counter.most_common(limit):
            print(f"  {samples / total:6.1%}  {name}")
        print()


if __name__ == "__main__":
    main()
