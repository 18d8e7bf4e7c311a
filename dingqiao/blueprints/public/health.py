"""Liveness and database state for load balancers and monitors."""
from flask import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ...extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except SQLAlchemyError as exc:
        db.session.rollback()
        return {"status": "error", "database": {"ok": False, "error": type(exc).__name__}}, 503
    return {"status": "ok", "database": {"ok": True, "dialect": db.engine.dialect.name}}
