"""Command-line entry points: ``flask --app wsgi <command>``."""
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from . import jobs
from .extensions import db
from .models import AdminRole
from .models.base import utcnow
from .services import DomainError
from .services.accounts import create_admin
from .setup_link import setup_link_command
from .services.demo_data import DEMO_ADMIN_PASSWORD, DEMO_ADMIN_USERNAME, seed_demo, seed_demo_history
from .worker import worker_name


def register_cli(app: Flask) -> None:
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(create_admin_command)
    app.cli.add_command(audit_verify_command)
    app.cli.add_command(cancel_expired_orders_command)
    app.cli.add_command(reconcile_wechat_pay_command)
    app.cli.add_command(check_money_command)
    app.cli.add_command(check_stock_command)
    app.cli.add_command(settle_commissions_command)
    app.cli.add_command(push_menu_command)
    app.cli.add_command(deliver_messages_command)
    app.cli.add_command(wechat_check_command)
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
    app.cli.add_command(run_jobs_command)
    app.cli.add_command(setup_link_command)


@click.command("seed-demo")
@with_appcontext
@click.option("--force", is_flag=True, help="Seed even outside demo mode (creates a known admin password).")
def seed_demo_command(force: bool):
    """Fill an empty database with the demo data set (does nothing when users exist). Demo mode only: it
    creates the admin account admin / dingqiao-demo, which must never exist on a real shop."""
    if not (current_app.config["DINGQIAO_DEMO"] or force):
        raise click.ClickException("seed-demo runs only with DINGQIAO_DEMO=1 (it creates a known admin password).")
    summary = seed_demo(db.session, current_app.config["UPLOAD_FOLDER"], current_app.config["CJK_FONT_PATH"] or None)
    if not summary.created:
        click.echo("The database already has users; demo data not added.")
        return
    history = seed_demo_history(db.session)
    click.echo(
        f"Demo data: {summary.users} users, {summary.products} products, {summary.outlets} outlets, "
        f"{history} orders over the last weeks. "
        f"Admin login: {DEMO_ADMIN_USERNAME} / {DEMO_ADMIN_PASSWORD}"
    )
    if not summary.images_with_text:
        click.echo("No CJK font found: product pictures were drawn without their names (see README).", err=True)


@click.command("create-admin")
@with_appcontext
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in AdminRole]), default=AdminRole.SUPERADMIN.value,
              show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
def create_admin_command(username: str, role: str, password_stdin: bool):
    """Create an admin account with a hashed password."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        admin = create_admin(db.session, username, password, role)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Admin {admin.username} ({admin.role}) created.")


def run_job(body: jobs.Body) -> None:
    """A scheduled job run now, by hand: its summary on the console; a failure on stderr, with exit status 1.
    The app runs these by itself too (``dingqiao.jobs``); this is the same code."""
    outcome = body(current_app._get_current_object(), utcnow())
    click.echo(outcome.summary, err=not outcome.ok)
    if not outcome.ok:
        sys.exit(1)


@click.command("audit-verify")
@with_appcontext
def audit_verify_command():
    """Verify the audit log's hash chain; name the first broken row (nightly by itself too)."""
    run_job(jobs.audit_check)


@click.command("cancel-expired-orders")
@with_appcontext
def cancel_expired_orders_command():
    """Cancel unpaid orders past their deadline and release their stock (the app does it every minute).
    Orders that reached WeChat are asked about first, and closed there before they are cancelled."""
    run_job(jobs.cancel_expired_orders)


@click.command("reconcile-wechat-pay")
@with_appcontext
def reconcile_wechat_pay_command():
    """Ask WeChat Pay about refunds and payouts still without a result RECONCILE_AFTER_MINUTES after they were
    sent (a lost notify, a lost answer) and finish those it is certain about (the app does it every 10 minutes)."""
    run_job(jobs.reconcile_wechat_pay)


@click.command("backup")
@with_appcontext
@click.argument("target", required=False, type=click.Path(path_type=Path))
@click.option("--keep-days", type=int, default=None, help="Delete this folder's archives older than N days "
              "(default BACKUP_KEEP_DAYS; 0 keeps all).")
def backup_command(target: Path | None, keep_days: int | None):
    """One archive of the live database (SQLite's online backup, or pg_dump on Postgres) and the uploads, with a
    manifest of checksums. TARGET: a folder (default instance/backups) or a .tar.gz file name. The app takes one
    nightly by itself."""
    from .backup import BackupError

    try:
        click.echo(jobs.backup(current_app._get_current_object(), utcnow(), target, keep_days).summary)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("restore")
@with_appcontext
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore_command(archive: Path):
    """Restore ARCHIVE into this empty instance (SQLite): every file is checked against the archive's manifest
    before anything is written; then the schema is brought up to date and the money, stock and audit checks run."""
    from flask_migrate import upgrade

    from .backup import BackupError, restore_backup

    config = current_app.config
    db.session.remove()
    db.engine.dispose()  # nothing of this process holds the database file being replaced
    try:
        manifest = restore_backup(archive, config["SQLALCHEMY_DATABASE_URI"], config["UPLOAD_FOLDER"])
    except BackupError as exc:
        raise click.ClickException(f"Not restored, nothing written: {exc}") from None
    db.engine.dispose()
    if manifest["revision"]:
        upgrade()  # a backup from an older release is brought to this release's schema
    app = current_app._get_current_object()
    outcomes = [check(app, utcnow()) for check in (jobs.money_check, jobs.stock_check, jobs.audit_check)]
    failed = [outcome for outcome in outcomes if not outcome.ok]
    for outcome in failed:
        click.echo(outcome.summary, err=True)
    if failed:
        sys.exit(1)
    click.echo(f"Restored the backup of {manifest['created_at']} ({len(manifest['files']) - 1} uploaded file(s)); "
               "money, stock and audit checks pass.")


@click.command("wechat-check")
@with_appcontext
def wechat_check_command():
    """Before going live: call the configured WeChat accounts' harmless endpoints (access token, JS-SDK ticket, a
    WeChat Pay query of a made-up order) and list each setting that is missing or wrong; exit 1 if any."""
    from .wechat.golive import check

    if current_app.config["DINGQIAO_DEMO"]:
        raise click.ClickException("wechat-check checks a real shop's settings; demo mode has none.")
    findings = check(current_app)
    for finding in findings:
        click.echo(finding.line(), err=not finding.ok)
    if not all(finding.ok for finding in findings):
        sys.exit(1)
    click.echo("WeChat settings look right. / All checks passed.")


@click.command("check-money")
@with_appcontext
def check_money_command():
    """Check the money invariants over the whole database; print every problem, exit 1 if any (nightly by
    itself too)."""
    run_job(jobs.money_check)


@click.command("check-stock")
@with_appcontext
def check_stock_command():
    """Check the stock invariants (levels = movements, reservations = open orders, restocks = movements);
    print every problem, exit 1 if any (nightly by itself too)."""
    run_job(jobs.stock_check)


@click.command("settle-commissions")
@with_appcontext
def settle_commissions_command():
    """Make commissions available whose after-sales cooling period has ended (the app does it hourly)."""
    run_job(jobs.settle_commissions)


@click.command("run-jobs")
@with_appcontext
@click.option("--once", is_flag=True, help="One pass over the jobs due now, then exit (1 if one failed).")
@click.option("--poll", default=jobs.POLL_SECONDS, show_default=True, help="Seconds between passes.")
def run_jobs_command(once: bool, poll: float):
    """Run the scheduled jobs in the foreground, as each gunicorn worker does in the background (docs/jobs.md):
    each due job runs once however many processes run them. SIGTERM or Ctrl-C stops after the job at hand."""
    app = current_app._get_current_object()
    if not once:
        click.echo("Scheduled jobs running (SIGTERM or Ctrl-C stops).")
        jobs.run_forever(app, jobs.stop_on_signals(), poll)
        return
    runs = jobs.run_due(app, worker_name())
    for run in runs:
        click.echo(f"{run.name}: {'ok' if run.ok else 'FAILED'} — {run.summary}", err=not run.ok)
    if not runs:
        click.echo("No job due.")
    if not all(run.ok for run in runs):
        sys.exit(1)


@click.command("deliver-messages")
@with_appcontext
@click.option("--once", is_flag=True, help="One pass, then exit (for cron); default: run until SIGTERM.")
@click.option("--poll", default=5.0, show_default=True, help="Seconds to wait when nothing is due.")
def deliver_messages_command(once: bool, poll: float):
    """Send the outbox as WeChat template messages: claim, send, retry with backoff, mark failures (the app's
    scheduled jobs do it too, every few seconds)."""
    from .worker import run

    totals = run(current_app._get_current_object(), once=once, poll_seconds=poll, echo=click.echo)
    click.echo(f"Done: {totals.sent} sent, {totals.skipped} in-app only, {totals.retried} to retry, "
               f"{totals.failed} failed.")


@click.command("push-menu")
@with_appcontext
@click.option("--dry-run", is_flag=True, help="Print the menu JSON instead of sending it to WeChat.")
def push_menu_command(dry_run: bool):
    """Create the Official Account's custom menu (自定义菜单) with links into the H5 at PUBLIC_BASE_URL.
    It replaces the current menu for every follower."""
    import json

    from .wechat import WeChatError
    from .wechat.menu import official_account_menu, push_menu

    config = current_app.config
    if not config["PUBLIC_BASE_URL"].startswith(("https://", "http://")):
        raise click.ClickException("push-menu needs PUBLIC_BASE_URL (e.g. https://shop.example.com): "
                                   "every menu button links into the H5 there.")
    menu = official_account_menu(config["PUBLIC_BASE_URL"])
    if dry_run:
        click.echo(json.dumps(menu, ensure_ascii=False, indent=2))
        return
    missing = [name for name in ("WECHAT_APP_ID", "WECHAT_APP_SECRET") if not config[name]]
    if missing:
        raise click.ClickException("push-menu needs the Official Account's credentials: " + ", ".join(missing))
    try:
        push_menu(current_app, menu)
    except WeChatError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Menu pushed: {len(menu['button'])} buttons into {config['PUBLIC_BASE_URL']}.")
