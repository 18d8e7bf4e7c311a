"""The `dingqiao` command and the single file (issue 20, part 1; docs/deploy.md, "One file").

The fast tests run the command from the virtualenv, as `.venv/bin/dingqiao`: its commands, a first start in an empty
home folder (database created and migrated, a secret key generated 0600, /healthz answering), a second start
keeping the key, an upgrade backed up first. The build test runs scripts/build and then the file it makes in an
empty folder with no Python or virtualenv on PATH."""
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests
from alembic.script import ScriptDirectory

from tests.conftest import wait_for
from tests.gunicorn_server import ROOT, free_port

# The command and the file run the default home (SQLite) whatever database the suite runs on: once is enough.
pytestmark = pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")),
                                reason="runs on SQLite only: the suite's SQLite run covers it")

VENV_COMMAND = Path(sys.executable).parent / "dingqiao"
SINGLE_FILE = ROOT / "dist" / "dingqiao"
HEAD = ScriptDirectory(str(ROOT / "dingqiao" / "migrations")).get_current_head()
# A production shop's minimum (not demo mode): the settings the app refuses to start without.
PRODUCTION = {"WECHAT_APP_ID": "wx1234567890abcdef", "WECHAT_APP_SECRET": "single-file-test-secret",
              "PUBLIC_BASE_URL": "https://shop.example.cn"}
# Every setting of this machine's environment that would make the command under test something else.
NOT_INHERITED = ("SECRET_KEY", "DATABASE_URL", "DINGQIAO_DEMO", "DINGQIAO_HOME", "TEST_DATABASE_URL", "FLASK_APP",
                 "GUNICORN_BIND", "GUNICORN_CMD_ARGS", "WECHAT_MCH_ID", "WECHAT_MCH_KEY", "WECHAT_TOKEN")


def command_env(home: Path, **extra) -> dict:
    env = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
    return {**env, **PRODUCTION, "DINGQIAO_HOME": str(home), "HOME": str(home.parent), "GUNICORN_WORKERS": "1",
            **extra}


class Server:
    """`dingqiao serve` (or the single file's) in its own process group, its output in a file."""

    def __init__(self, argv: list[str], env: dict, cwd: Path, log: Path):
        self.port = free_port()
        self.log = log
        self.started = time.monotonic()
        with log.open("ab") as output:
            self.process = subprocess.Popen([*argv, "serve", "--bind", f"127.0.0.1:{self.port}"], env=env, cwd=cwd,
                                            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def healthz(self):
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.output()[-3000:]}")
        try:
            answer = requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
        except requests.RequestException:
            return None
        return answer if answer.status_code == 200 else None

    def wait_until_healthy(self, timeout: float = 90) -> float:
        answer = wait_for(self.healthz, "serve answering /healthz", timeout)
        assert answer.json()["status"] == "ok" and answer.json()["database"]["dialect"] == "sqlite"
        return time.monotonic() - self.started

    def get(self, path: str) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def schema_revision(database: Path) -> str:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


# --- the command from the virtualenv ----------------------------------------------------------------------------
def test_help_lists_the_own_commands_and_the_apps_without_touching_the_folder(tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED and name not in PRODUCTION}
    shown = subprocess.run([VENV_COMMAND, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    for command in ("serve", "demo", "worker", "backup", "restore", "check-money", "check-stock", "audit-verify",
                    "create-admin", "wechat-check", "reconcile-wechat-pay", "cancel-expired-orders",
                    "settle-commissions", "deliver-messages", "db", "version"):
        assert f"\n  {command} " in shown.stdout, f"{command} missing from dingqiao --help:\n{shown.stdout}"
    assert list(tmp_path.iterdir()) == []  # a folder not yet set up gets nothing written by --help

    refused = subprocess.run([VENV_COMMAND, "check-money"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 1 and "WECHAT_APP_ID" in refused.stderr and "Traceback" not in refused.stderr


def test_serve_in_an_empty_home_creates_and_migrates_the_database_and_keeps_one_secret_key(tmp_path):
    home = tmp_path / "shop"
    env = command_env(home)
    first = Server([str(VENV_COMMAND)], env, tmp_path, tmp_path / "first.log")
    try:
        first.wait_until_healthy()
    finally:
        first.stop()
    output = first.output()
    assert schema_revision(home / "dingqiao.sqlite3") == HEAD
    assert "(created)" in output and "Backup before upgrading" not in output
    assert "/setup/" in output  # no admin yet: the first-run link is on the console
    key_file = home / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(key) == 64

    second = Server([str(VENV_COMMAND)], env, tmp_path, tmp_path / "second.log")
    try:
        second.wait_until_healthy()
    finally:
        second.stop()
    assert key_file.read_text().strip() == key
    assert "Database at schema" not in second.output()  # nothing to migrate, nothing backed up
    assert "Backup before upgrading" not in second.output()


def test_an_upgrade_of_an_existing_database_is_backed_up_first(tmp_path):
    home = tmp_path / "shop"
    env = command_env(home)
    previous = ScriptDirectory(str(ROOT / "dingqiao" / "migrations")).get_revision(HEAD).down_revision
    older = subprocess.run([VENV_COMMAND, "db", "upgrade", previous], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert older.returncode == 0, older.stderr
    assert schema_revision(home / "dingqiao.sqlite3") == previous

    server = Server([str(VENV_COMMAND)], env, tmp_path, tmp_path / "serve.log")
    try:
        server.wait_until_healthy()
    finally:
        server.stop()
    (announced,) = [line for line in server.output().splitlines() if "Backup before upgrading" in line]
    archive = Path(announced.split(": ", 1)[1])
    assert archive.parent == home / "backups"
    with tarfile.open(archive) as backup:
        assert "database.sqlite3" in backup.getnames()
    assert f"(was {previous})" in server.output()
    assert schema_revision(home / "dingqiao.sqlite3") == HEAD


def test_worker_runs_the_jobs_alone_and_stops_on_sigterm(tmp_path):
    home = tmp_path / "shop"
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen([VENV_COMMAND, "worker"], cwd=tmp_path, env=command_env(home), stdout=output,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "Scheduled jobs running" in log.read_text() or worker.poll() is not None,
                 "the worker starting its jobs", 90)
        assert worker.poll() is None, log.read_text()
        assert schema_revision(home / "dingqiao.sqlite3") == HEAD
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)


# --- the single file --------------------------------------------------------------------------------------------
SOURCES = [ROOT / "dingqiao", ROOT / "packaging", ROOT / "pyproject.toml", ROOT / "requirements" / "build.txt",
           ROOT / "scripts" / "build"]


def newest_source_change() -> float:
    times = []
    for source in SOURCES:
        files = source.rglob("*") if source.is_dir() else [source]
        times += [path.stat().st_mtime for path in files if path.is_file() and "__pycache__" not in path.parts]
    return max(times)


@pytest.fixture(scope="module")
def single_file() -> Path:
    """dist/dingqiao as scripts/build makes it; a file newer than every source it is built from is reused."""
    if not (SINGLE_FILE.exists() and SINGLE_FILE.stat().st_mtime > newest_source_change()):
        built = subprocess.run([ROOT / "scripts" / "build"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-5000:]
    return SINGLE_FILE


@pytest.mark.single_file
def test_the_single_file_runs_the_shop_from_an_empty_folder_without_python(single_file, tmp_path):
    size_mb = single_file.stat().st_size / 2**20
    assert size_mb < 80, f"dist/dingqiao is {size_mb:.0f} MB"
    folder = tmp_path / "server"
    folder.mkdir()
    shutil.copy2(single_file, folder / "dingqiao")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "GUNICORN_WORKERS": "2", **PRODUCTION}
    found = subprocess.run(["sh", "-c", "command -v python python3 pip flask gunicorn dingqiao; true"], env=env,
                           capture_output=True, text=True).stdout
    assert sys.prefix not in found and ".venv" not in found and "dingqiao" not in found, found

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["./dingqiao", *argv], cwd=folder, env=env, capture_output=True, text=True, timeout=300)

    shown = run("version")
    assert shown.returncode == 0, shown.stderr
    assert f"schema {HEAD}" in shown.stdout and "single file" in shown.stdout
    # Every compiled dependency loads from inside the file.
    for part in ("Pillow", "JPEG", "WebP", "FreeType", "cryptography", "(binary)", "(compiled)", "nh3"):
        assert part in shown.stdout, shown.stdout

    server = Server(["./dingqiao"], env, folder, tmp_path / "serve.log")
    try:
        started_in = server.wait_until_healthy(timeout=120)
        assert "/setup/" in server.output()
        login = server.get("/admin/login")  # templates
        assert login.status_code == 200 and "csrf" in login.text
        assert server.get("/static/vendor/htmx/htmx.min.js").status_code == 200  # the app's static files
        admin_css = server.get("/admin/data/static/bootstrap/bootstrap4/css/bootstrap.min.css")  # Flask-Admin's
        assert admin_css.status_code == 200

        money = run("check-money")
        assert money.returncode == 0 and "Money invariants hold" in money.stdout, money.stdout + money.stderr
        backup = run("backup")
        assert backup.returncode == 0, backup.stdout + backup.stderr
    finally:
        server.stop()
    home = folder / "instance"
    assert schema_revision(home / "dingqiao.sqlite3") == HEAD
    assert stat.S_IMODE((home / "secret_key").stat().st_mode) == 0o600
    archives = list((home / "backups").glob("dingqiao-*.tar.gz"))
    assert archives and all(stat.S_IMODE(archive.stat().st_mode) == 0o600 for archive in archives)
    print(f"\ndist/dingqiao: {size_mb:.1f} MB, first /healthz {started_in:.1f} s after start (empty folder)")
