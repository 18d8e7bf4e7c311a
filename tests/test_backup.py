"""`flask backup` and `flask restore`: a consistent copy of a live database taken while purchases run, restored into
an empty instance with every acknowledged order in it and the money, stock and audit checks passing; damaged,
foreign, hostile and misplaced archives refused with nothing written."""
import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import select

from dingqiao import create_app
from dingqiao.backup import MANIFEST, prune
from dingqiao.extensions import db
from dingqiao.models import Order, OrderStatus
from tests.conftest import make_config, on_postgres
from tests.money_world import build_world, buy, pay


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


@pytest.fixture
def shop(database_url, tmp_path, fake_wechat):
    """A shop whose schema was made by its migrations, as in production (the restore brings old ones up to date)."""
    app = create_app(make_config(database_url, tmp_path, fake_wechat, UPLOAD_FOLDER=str(tmp_path / "uploads")),
                     instance_path=str(tmp_path / "instance"))
    with app.app_context():
        if on_postgres():
            db.create_all()
        else:
            upgrade()
    photo = Path(app.config["UPLOAD_FOLDER"]) / "service" / "case-1.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"\xff\xd8 a member's photo \xff\xd9")
    yield app
    from tests.conftest import empty_database

    empty_database(app)


def fresh_instance(tmp_path, name: str = "restored"):
    folder = tmp_path / name
    config = make_config(f"sqlite:///{folder / 'dingqiao.sqlite3'}", tmp_path, UPLOAD_FOLDER=str(folder / "uploads"))
    return create_app(config, instance_path=str(folder)), folder


def take_backup(app, target: Path) -> Path:
    result = cli(app, "backup", str(target))
    assert result.exit_code == 0, result.output
    [archive] = target.glob("dingqiao-*.tar.gz")
    return archive


@pytest.mark.skipif(on_postgres(), reason="restore writes a SQLite instance (Postgres: pg_dump, tested below)")
def test_a_backup_taken_while_members_buy_restores_every_acknowledged_order(shop, tmp_path):
    app = shop
    world = build_world(app, units=500)
    acknowledged: list[str] = []
    lock, stop, enough = threading.Lock(), threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def shopper():
        try:
            while not stop.is_set():
                order_no = buy(app, world)
                pay(app, order_no)
                with lock:
                    acknowledged.append(order_no)
                    if len(acknowledged) >= 6:
                        enough.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)
            enough.set()

    threads = [threading.Thread(target=shopper) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(timeout=300), "no purchases went through"
        with lock:
            before = list(acknowledged)  # paid and answered before the backup started
        archive = take_backup(app, tmp_path / "backups")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
    assert not failures, failures
    assert os.stat(archive).st_mode & 0o077 == 0  # every member's data: the owner's alone

    restored, folder = fresh_instance(tmp_path)
    result = cli(restored, "restore", str(archive))
    assert result.exit_code == 0, result.output
    assert "money, stock and audit checks pass" in result.output
    with restored.app_context():
        paid = set(db.session.scalars(select(Order.order_no).where(Order.status == OrderStatus.PAID)))
    assert set(before) <= paid
    assert (folder / "uploads" / "service" / "case-1.jpg").read_bytes() == b"\xff\xd8 a member's photo \xff\xd9"
    for check in ("check-money", "check-stock", "audit-verify"):
        assert cli(restored, check).exit_code == 0


def _rewrite(archive: Path, destination: Path, change) -> Path:
    """A copy of ``archive`` with ``change(name, data) -> data | None`` applied to each member (None drops it)."""
    with tarfile.open(archive, "r:gz") as source, tarfile.open(destination, "w:gz") as sink:
        for member in source.getmembers():
            data = change(member.name, source.extractfile(member).read())
            if data is None:
                continue
            member.size = len(data)
            sink.addfile(member, io.BytesIO(data))
    return destination


def _flip_a_byte(name: str, data: bytes) -> bytes:
    if name.endswith(".jpg"):
        return data[:3] + bytes([data[3] ^ 1]) + data[4:]
    return data


@pytest.mark.skipif(on_postgres(), reason="restore writes a SQLite instance")
@pytest.mark.parametrize("spoil", ["damaged", "foreign", "extra", "traversal", "newer"])
def test_a_spoiled_archive_is_refused_and_nothing_is_written(shop, tmp_path, spoil):
    good = take_backup(shop, tmp_path / "backups")
    bad = tmp_path / "bad.tar.gz"
    if spoil == "damaged":
        _rewrite(good, bad, _flip_a_byte)
    elif spoil == "foreign":
        _rewrite(good, bad, lambda name, data: None if name == MANIFEST else data)
    elif spoil == "newer":
        _rewrite(good, bad, lambda name, data: json.dumps({**json.loads(data), "version": 99}).encode()
                 if name == MANIFEST else data)
    else:
        with tarfile.open(good, "r:gz") as source, tarfile.open(bad, "w:gz") as sink:
            for member in source.getmembers():
                sink.addfile(member, source.extractfile(member))
            intruder = tarfile.TarInfo("uploads/extra.txt" if spoil == "extra" else "../../outside.txt")
            intruder.size = 4
            sink.addfile(intruder, io.BytesIO(b"evil"))
    restored, folder = fresh_instance(tmp_path)
    result = cli(restored, "restore", str(bad))
    assert result.exit_code != 0 and "nothing written" in result.output, result.output
    assert not (folder / "dingqiao.sqlite3").exists() or (folder / "dingqiao.sqlite3").stat().st_size == 0
    assert not (folder / "uploads").exists() or not any((folder / "uploads").iterdir())
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path.parent / "outside.txt").exists()


@pytest.mark.skipif(on_postgres(), reason="restore writes a SQLite instance")
def test_a_restore_never_overwrites_an_instance_with_data(shop, tmp_path):
    archive = take_backup(shop, tmp_path / "backups")
    result = cli(shop, "restore", str(archive))  # the live shop itself
    assert result.exit_code != 0 and "not empty" in result.output


@pytest.mark.skipif(not on_postgres(), reason="the Postgres backup runs pg_dump; this run is on SQLite")
def test_on_postgres_the_backup_is_a_pg_dump_and_restore_says_how(shop, tmp_path):
    result = cli(shop, "backup", str(tmp_path / "backups"))
    assert result.exit_code == 0 and "pg_dump" in result.output, result.output
    [archive] = (tmp_path / "backups").glob("dingqiao-*.tar.gz")
    with tarfile.open(archive, "r:gz") as opened:
        manifest = json.loads(opened.extractfile(MANIFEST).read())
        dump = opened.extractfile("database.sql").read().decode()
    assert manifest["database"] == "postgresql" and "CREATE TABLE public.orders" in dump
    restored, _folder = fresh_instance(tmp_path)
    refused = cli(restored, "restore", str(archive))
    assert refused.exit_code != 0 and "psql" in refused.output


def test_old_archives_are_pruned_after_the_kept_days(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    old, new, other = folder / "dingqiao-old.tar.gz", folder / "dingqiao-new.tar.gz", folder / "notes.txt"
    for path in (old, new, other):
        path.write_text("x")
    now = time.time()
    os.utime(old, (now - 15 * 86400, now - 15 * 86400))
    os.utime(other, (now - 99 * 86400, now - 99 * 86400))
    assert prune(folder, 14, now) == [old]
    assert new.exists() and other.exists() and not old.exists()
    assert prune(folder, 0, now) == []  # 0 keeps everything
