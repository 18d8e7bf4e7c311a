"""The first-run setup link on the console, as PocketBase prints its installer link: a production start that finds
no admin issues a one-time ``/setup/<token>`` and prints it; nothing else on the web can create the first admin."""
from collections.abc import Callable

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .extensions import db
from .services.setup import SETUP_LINK_TTL, issue_setup_token


def setup_url(app: Flask, token: str) -> str:
    base = (app.config.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
    return f"{base}/setup/{token}"


def announce_setup_link(app: Flask, echo: Callable[[str], None] = print) -> str | None:
    """Print a fresh setup link when the shop has no admin (demo mode has its seeded one); returns the URL."""
    if app.config["DINGQIAO_DEMO"]:
        return None
    with app.app_context():
        token = issue_setup_token(db.session)
        db.session.remove()
    if token is None:
        return None
    url = setup_url(app, token)
    hours = int(SETUP_LINK_TTL.total_seconds() // 3600)
    rule = "=" * 72
    echo(f"{rule}\n开店向导 / First-run setup: this shop has no admin yet. Open this link once, within {hours} hours,\n"
         f"to create the superadmin and set the shop up (a restart prints a new link; the old one stops working):\n\n"
         f"    {url}\n{rule}")
    return url


@click.command("setup-link")
@with_appcontext
def setup_link_command():
    """Print a new 开店向导 link (the shop has no admin yet); the previous link stops working."""
    app = current_app._get_current_object()
    if app.config["DINGQIAO_DEMO"]:
        raise click.ClickException("demo mode has its seeded admin (admin / dingqiao-demo): no setup link.")
    if announce_setup_link(app, click.echo) is None:
        raise click.ClickException("this shop already has an admin: log in at /admin/login "
                                   "(or add one with `create-admin`).")
