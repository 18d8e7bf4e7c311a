"""What tells every worker's page cache that an admin saved something: a version number per kind of data, kept
in the database, bumped in the transaction of the save and part of every cache key of that data.

A request reads the versions once (``current``: one small query, kept in the session's ``info`` for the rest of
the request) and looks its cached parts up under them. After a save commits, the next request of any worker
reads the new version, finds nothing under it and loads afresh: no TTL to wait for, nothing to broadcast. A part
loaded while a save commits is kept under the version read before it, which later requests no longer ask for.

Kinds: ``catalog`` (products, their prices and pictures, categories: the product list, product pages and the
banners that point at them) and ``content`` (banners, articles, announcements).
"""
from sqlalchemy import update
from sqlalchemy.orm import Session

from ..models import CacheVersion

CATALOG = "catalog"
CONTENT = "content"
KINDS = (CATALOG, CONTENT)
_READ = "dingqiao.cache_versions"  # the key in Session.info
_SELECT = f"SELECT name, version FROM {CacheVersion.__tablename__}"


def current(session: Session) -> dict[str, int]:
    """Every kind's version, read once per session (a request's session ends with the request)."""
    versions = session.info.get(_READ)
    if versions is None:
        # Straight through the driver, in the session's transaction: every cached page asks, and the ORM's
        # way costs such a page several percent of its CPU (bench/page_instructions.py).
        cursor = session.connection().connection.dbapi_connection.cursor()
        try:
            cursor.execute(_SELECT)
            versions = session.info[_READ] = dict(cursor.fetchall())
        finally:
            cursor.close()
    return versions


def version(session: Session, kind: str) -> int:
    return current(session).get(kind, 0)


def bump(session: Session, kind: str) -> None:
    """Call inside the transaction that saves data of ``kind``: its cached copies are left behind when it commits,
    in every worker; if it rolls back nothing changed. This session reads the versions anew afterwards."""
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}")
    session.info.pop(_READ, None)
    bumped = session.execute(
        update(CacheVersion).where(CacheVersion.name == kind).values(version=CacheVersion.version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not bumped:  # a database made by create_all (tests) has no rows until the first save
        session.add(CacheVersion(name=kind, version=1))
        session.flush()
