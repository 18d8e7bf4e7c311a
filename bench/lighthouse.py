"""Lighthouse (mobile) scores of the shop's home page and a product page, served as in production.

    .venv/bin/python bench/lighthouse.py [--runs 3] [--reports DIR]

Seeds the demo data set (with its product pictures and home-page content) into a scratch SQLite file in a
scratch instance folder, serves it with gunicorn and the committed gunicorn.conf.py (tests/gunicorn_server.py,
demo mode, as the other bench/ scripts do), and runs Lighthouse on ``/`` and the first product's page as a
first-time visitor: Lighthouse's default mobile emulation (a mid-range phone, simulated slow 4G and a 4× slower
CPU), headless, in Debian's Chromium (CHROME_PATH, default /usr/bin/chromium; scripts/install-system-deps
installs it). Prints performance / accessibility / best-practices per page (the median of ``--runs``), the
main timings, and every audit that lost points.

Lighthouse comes from the npm registry, pinned (LIGHTHOUSE_VERSION), installed once with npm into a cache
folder outside the repository ($XDG_CACHE_HOME or ~/.cache, dingqiao-bench/lighthouse-<version>); nothing is
added to the repository. Needs node and npm (Lighthouse 12 runs on Node 18.16+).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch import bench_app  # noqa: E402
from sqlalchemy import select  # noqa: E402

from dingqiao.extensions import db  # noqa: E402
from dingqiao.models import Product  # noqa: E402
from dingqiao.services.demo_data import seed_demo  # noqa: E402
from tests.gunicorn_server import running_gunicorn  # noqa: E402

LIGHTHOUSE_VERSION = "12.8.2"  # 13.x needs Node 22; Debian's node is 20
CATEGORIES = ("performance", "accessibility", "best-practices")
TIMINGS = ("first-contentful-paint", "largest-contentful-paint", "total-blocking-time", "cumulative-layout-shift",
           "speed-index")
CHROME_FLAGS = "--headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking " \
               "--disable-component-update --disable-sync"


def lighthouse_binary() -> Path:
    """The pinned Lighthouse in the cache folder, installed there from the npm registry if it is missing."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dingqiao-bench"
    folder = cache / f"lighthouse-{LIGHTHOUSE_VERSION}"
    binary = folder / "node_modules" / ".bin" / "lighthouse"
    if not binary.exists():
        if shutil.which("npm") is None:
            sys.exit("npm is not installed (Debian packages nodejs and npm)")
        folder.mkdir(parents=True, exist_ok=True)
        print(f"installing lighthouse@{LIGHTHOUSE_VERSION} into {folder} …", flush=True)
        subprocess.run(["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--no-save",
                        f"lighthouse@{LIGHTHOUSE_VERSION}"], check=True, stdout=subprocess.DEVNULL)
    return binary


def run_lighthouse(binary: Path, url: str, report: Path) -> dict:
    env = {**os.environ, "CHROME_PATH": os.environ.get("CHROME_PATH", "/usr/bin/chromium")}
    if not Path(env["CHROME_PATH"]).exists():
        sys.exit(f"{env['CHROME_PATH']} is missing: install Debian's chromium (scripts/install-system-deps)")
    subprocess.run([str(binary), url, "--quiet", "--output=json", f"--output-path={report}",
                    f"--only-categories={','.join(CATEGORIES)}", f"--chrome-flags={CHROME_FLAGS}"],
                   check=True, env=env)
    return json.loads(report.read_text())


def lost_points(result: dict) -> list[str]:
    """The audits of our three categories that did not pass, with Lighthouse's own one-line summary."""
    lines = []
    for category in CATEGORIES:
        for ref in result["categories"][category]["auditRefs"]:
            audit = result["audits"][ref["id"]]
            if ref["weight"] and audit["score"] is not None and audit["score"] < 0.9:
                shown = audit.get("displayValue") or ""
                lines.append(f"    {category}: {audit['title']} ({audit['score']:.2f}) {shown}".rstrip())
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="Lighthouse runs per page; the median is printed")
    parser.add_argument("--reports", type=Path, help="keep the JSON reports in this folder")
    args = parser.parse_args()
    binary = lighthouse_binary()
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    chromium = subprocess.run([os.environ.get("CHROME_PATH", "/usr/bin/chromium"), "--version"],
                              capture_output=True, text=True).stdout.strip()
    print(f"Lighthouse {version}, {chromium}, mobile emulation (default throttling), median of {args.runs} runs")
    with tempfile.TemporaryDirectory(prefix="dq-lighthouse-") as home:
        url = f"sqlite:///{home}/shop.sqlite3"
        app = bench_app(url, home)
        with app.app_context():
            db.create_all()
            seed_demo(db.session, upload_folder=app.config["UPLOAD_FOLDER"])
            product_id = db.session.scalar(select(Product.id).order_by(Product.sort_order).limit(1))
            db.session.remove()
        reports = args.reports or Path(home) / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        with running_gunicorn(url, Path(home) / "gunicorn.log", workers=2, threads=8,
                              extra_env={"DINGQIAO_HOME": home}) as server:
            for name, path in (("home", "/"), ("product", f"/products/{product_id}")):
                results = [run_lighthouse(binary, server.url + path, reports / f"{name}-{run + 1}.json")
                           for run in range(args.runs)]
                scores = {category: statistics.median(round(result["categories"][category]["score"] * 100)
                                                      for result in results) for category in CATEGORIES}
                median_run = sorted(results, key=lambda r: r["categories"]["performance"]["score"])[len(results) // 2]
                print(f"\n{name} {path}: " + "  ".join(f"{category} {score:g}" for category, score in scores.items()))
                print("    all runs: " + "; ".join(
                    " / ".join(f"{round(r['categories'][c]['score'] * 100)}" for c in CATEGORIES) for r in results))
                print("    " + ", ".join(f"{key} {median_run['audits'][key]['displayValue']}" for key in TIMINGS))
                for line in lost_points(median_run):
                    print(line)
            assert server.unhandled_errors() == [], server.unhandled_errors()


if __name__ == "__main__":
    main()
