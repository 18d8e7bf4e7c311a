"""Backups that restore: one archive (tar.gz) holding a consistent copy of the database, the uploaded files and a
manifest with every file's SHA-256, so a restore can refuse a damaged or foreign archive before writing anything.

SQLite is copied with SQLite's online backup API from a live database (never a file copy of a database being
written: a copy taken mid-write may not open, and WAL mode keeps recent commits in a second file). Postgres is
dumped with ``pg_dump`` (plain SQL) — restoring that is a job for ``psql`` against an empty database, which the
restore command says rather than does. Uploads are read after the database copy, so every photo a backed-up row
names is in the archive (a photo added meanwhile is there too, harmlessly).
"""
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from sqlalchemy.engine import make_url

FORMAT = "dingqiao-backup"
VERSION = 1
MANIFEST = "manifest.json"
SQLITE_NAME = "database.sqlite3"
POSTGRES_NAME = "database.sql"
UPLOADS = "uploads"


class BackupError(Exception):
    """A backup that cannot be made, or an archive that must not be restored; the message says why."""


@dataclass(frozen=True)
class Backup:
    path: Path
    database: str  # "sqlite" or "postgresql"
    files: int  # uploads in it
    revision: str  # the schema's migration revision


def database_kind(uri: str) -> str:
    return "sqlite" if make_url(uri).drivername.startswith("sqlite") else "postgresql"


def _sqlite_file(uri: str) -> Path:
    database = make_url(uri).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def create_backup(uri: str, upload_folder: str, target: Path, now: datetime | None = None) -> Backup:
    """Write one archive into the folder ``target`` (or to the file ``target`` when it names a .tar.gz)."""
    now = now or datetime.now(timezone.utc)
    name = f"dingqiao-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}.tar.gz"
    path = target if target.name.endswith(".tar.gz") else target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = database_kind(uri)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".backup-") as scratch:
        scratch = Path(scratch)
        if kind == "sqlite":
            database_name, revision = SQLITE_NAME, _copy_sqlite(_sqlite_file(uri), scratch / SQLITE_NAME)
        else:
            database_name, revision = POSTGRES_NAME, _dump_postgres(uri, scratch / POSTGRES_NAME)
        files = {database_name: scratch / database_name}
        uploads = Path(upload_folder)
        if uploads.is_dir():
            for file in sorted(p for p in uploads.rglob("*") if p.is_file() and not p.is_symlink()):
                files[str(PurePosixPath(UPLOADS, *file.relative_to(uploads).parts))] = file
        manifest = {"format": FORMAT, "version": VERSION, "created_at": now.isoformat(timespec="seconds"),
                    "database": kind, "revision": revision,
                    "files": {arcname: {"sha256": _sha256(file), "size": file.stat().st_size}
                              for arcname, file in files.items()}}
        partial = scratch / "archive.tar.gz"
        with tarfile.open(partial, "w:gz") as archive:
            body = json.dumps(manifest, ensure_ascii=False, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
            archive.addfile(info, io.BytesIO(body))
            for arcname, file in files.items():
                archive.add(file, arcname=arcname, recursive=False)
        os.chmod(partial, 0o600)  # it holds every member's data
        os.replace(partial, path)  # whole or not at all
    return Backup(path, kind, len(files) - 1, revision)


def _copy_sqlite(source: Path, destination: Path) -> str:
    if not source.exists():
        raise BackupError(f"no database at {source}")
    live = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    copy = sqlite3.connect(destination)
    try:
        live.backup(copy)  # one consistent snapshot, however busy the writers
        try:
            row = copy.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:  # a database not made by the migrations (tests' create_all)
            row = None
    finally:
        copy.close()
        live.close()
    return row[0] if row else ""


def _dump_postgres(uri: str, destination: Path) -> str:
    url = make_url(uri).set(drivername="postgresql")
    if shutil.which("pg_dump") is None:
        raise BackupError("pg_dump is not installed (Debian: postgresql-client)")
    env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    dsn = url.set(password=None).render_as_string(hide_password=False)
    done = subprocess.run(["pg_dump", "--no-owner", "--no-privileges", "--file", str(destination), dsn],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()[:500]}")
    with destination.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("COPY public.alembic_version"):
                value = next(handle, "").strip()
                return "" if value == "\\." else value
    return ""


def prune(folder: Path, keep_days: int, now: float | None = None) -> list[Path]:
    """Delete this app's archives in ``folder`` older than ``keep_days`` days; returns what went."""
    if keep_days <= 0 or not folder.is_dir():
        return []
    cutoff = (now or time.time()) - keep_days * 86400
    gone = []
    for archive in folder.glob("dingqiao-*.tar.gz"):
        if archive.stat().st_mtime < cutoff:
            archive.unlink()
            gone.append(archive)
    return gone


def restore_backup(archive_path: Path, uri: str, upload_folder: str) -> dict:
    """Restore into an empty instance: the archive is read and every file checked against the manifest in a
    scratch folder first; only then is anything put in place. Returns the manifest."""
    if database_kind(uri) != "sqlite":
        raise BackupError("restore writes a SQLite instance; a Postgres dump is restored with "
                          "`psql -f database.sql` into an empty database (see docs/deploy.md)")
    database = _sqlite_file(uri)
    uploads = Path(upload_folder)
    if _has_data(database):
        raise BackupError(f"the instance is not empty: {database} already holds data")
    if uploads.is_dir() and any(uploads.iterdir()):
        raise BackupError(f"the instance is not empty: {uploads} already holds files")
    database.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=database.parent, prefix=".restore-") as scratch:
        scratch = Path(scratch)
        manifest = _unpack_checked(archive_path, scratch)
        if manifest["database"] != "sqlite":
            raise BackupError("this archive holds a Postgres dump: restore database.sql with psql into an empty "
                              "Postgres database")
        uploads.mkdir(parents=True, exist_ok=True)
        for arcname in manifest["files"]:
            parts = PurePosixPath(arcname).parts
            if parts[0] == UPLOADS:
                target = uploads.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(scratch / arcname, target)
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        os.replace(scratch / SQLITE_NAME, database)
    return manifest


def _has_data(database: Path) -> bool:
    if not database.exists() or database.stat().st_size == 0:
        return False
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0
    except sqlite3.DatabaseError:
        return True  # something that is not an empty database: not ours to overwrite
    finally:
        connection.close()


def _unpack_checked(archive_path: Path, scratch: Path) -> dict:
    """Every member into ``scratch`` and checked; BackupError for anything but our own intact archive."""
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            members = archive.getmembers()
            names = [member.name for member in members]
            if MANIFEST not in names:
                raise BackupError("not a Dingqiao backup: no manifest.json")
            manifest = json.loads(archive.extractfile(MANIFEST).read())
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise BackupError("not a Dingqiao backup: the manifest is someone else's")
            if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
                raise BackupError("this backup was made by a newer Dingqiao; upgrade first")
            files = manifest.get("files")
            if not isinstance(files, dict) or manifest.get("database") not in ("sqlite", "postgresql"):
                raise BackupError("the manifest is damaged")
            if sorted(set(names) - {MANIFEST}) != sorted(files) or len(names) != len(set(names)):
                raise BackupError("the archive's files differ from its manifest")
            for member in members:
                if member.name == MANIFEST:
                    continue
                path = PurePosixPath(member.name)
                if (not member.isfile() or path.is_absolute() or ".." in path.parts
                        or path.parts[0] not in (UPLOADS, SQLITE_NAME, POSTGRES_NAME)):
                    raise BackupError(f"refused: unexpected entry {member.name!r} in the archive")
                target = scratch.joinpath(*path.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.extractfile(member) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
                expected = files[member.name]
                if _sha256(target) != expected.get("sha256") or target.stat().st_size != expected.get("size"):
                    raise BackupError(f"damaged: {member.name} does not match its checksum")
    except (tarfile.TarError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupError(f"the archive cannot be read ({exc.__class__.__name__}): damaged or not a backup") from None
    return manifest
