"""CPU instructions per request for the shop home, a product page and the bare JSON app: a count that does
not move with the machine's load, for telling whether a change made pages cheaper.

    .venv/bin/python bench/page_instructions.py [--requests 100]

The HTTP benchmark (bench/shop_pages.py) is the measure of record, but on a shared VM its rates drift by a
factor of two from one minute to the next. This one runs each page in-process (Flask's WSGI app through
its test client, no gunicorn, no sockets) under valgrind's callgrind, which counts the instructions
executed: the same code gives the same count whatever else the machine does. The seeded demo data set and a
logged-in demo member are set up with counting off; after 30 warm-up requests (caches filled, as in a
running worker) counting is switched on for --requests requests of one page. Needs valgrind (Debian package
``valgrind``). Prints instructions per request and each page's count as a share of the bare app's. Gunicorn's
own work per request (the same for every app) is not in these counts, so the shares are lower than over HTTP.
"""
import argparse
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from callgrind import count_child, counting, require_valgrind

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("bare JSON", "home /", "product page")


def count_one(page: str, requests: int) -> int:
    """Instructions executed by ``requests`` requests of ``page``, counted by callgrind in a child process."""
    return count_child(__file__, "--child", page, "--requests", str(requests))


def serve_in_child(page: str, requests: int) -> None:
    """Inside valgrind: set up with counting off, warm up, then count ``requests`` requests of ``page``."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from sqlalchemy import select

    import bare_app
    from scratch import bench_app

    from dingqiao.extensions import db
    from dingqiao.models import Identity, Product, User
    from dingqiao.services.demo_data import seed_demo
    from dingqiao.services.logins import LoginClient, open_login_session

    folder = tempfile.mkdtemp(prefix="dq-instructions-")
    # Errors handled as in production; the page caches kept for the whole run, as a busy worker keeps them: with the
    # default few seconds, a run slowed down by valgrind (or a loaded machine) would re-render pages a real
    # worker serves from its cache, and the count would move with the machine's speed.
    app = bench_app(f"sqlite:///{folder}/shop.db", folder, TESTING=False, CATALOG_CACHE_SECONDS=3600,
                    HOME_CONTENT_CACHE_SECONDS=3600)
    with app.app_context():
        db.create_all()
        seed_demo(db.session, upload_folder=folder)
        member_id = db.session.scalar(select(User.id).where(User.identity == Identity.MEMBER).limit(1))
        product_id = db.session.scalar(select(Product.id).order_by(Product.sort_order).limit(1))
        login_id = open_login_session(db.session, db.session.get(User, member_id), timedelta(days=1), LoginClient())
        db.session.remove()
    # No app context stays pushed: each request loads the member and closes its session, as in a worker.
    if page == "bare JSON":
        client, path = bare_app.app.test_client(), "/json"
    else:
        client, path = app.test_client(), "/" if page == "home /" else f"/products/{product_id}"
        with client.session_transaction() as session:
            session["_user_id"] = login_id  # what the demo login leaves in the session
            session["_fresh"] = True
    for _ in range(30):
        answer = client.get(path)
    assert answer.status_code == 200 and "Set-Cookie" not in answer.headers, (answer.status_code, answer.headers)
    if page != "bare JSON":
        assert "ref=" in client.get(f"/products/{product_id}").get_data(as_text=True), "not the member's page"
    with counting():
        for _ in range(requests):
            client.get(path)
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--page", choices=PAGES, action="append",
                        help="count only this page (repeatable; the bare app is always counted)")
    parser.add_argument("--child", choices=PAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        serve_in_child(args.child, args.requests)
        return
    require_valgrind()
    print(f"instructions per request, in-process, SQLite, {args.requests} requests each (callgrind)")
    pages = [page for page in PAGES if page == PAGES[0] or not args.page or page in args.page]
    counts = {page: count_one(page, args.requests) / args.requests for page in pages}
    for page, count in counts.items():
        share = f"   bare = {counts['bare JSON'] / count:5.1%} of it" if page != "bare JSON" else ""
        print(f"  {page:<14} {count:12,.0f}{share}")


if __name__ == "__main__":
    main()
