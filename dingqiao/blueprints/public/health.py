"""Liveness and database state for load balancers and monitors."""
from flask import Blueprint

from ...extensions import db
from ...services.health import database_state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    state = database_state(db.session)
    if not state.ok:
        return {"status": "error", "database": {"ok": False, "error": state.error}}, 503
    return {"status": "ok", "database": {"ok": True, "dialect": state.dialect}}
