"""Whether the database answers: what /healthz reports to load balancers and monitors."""
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class DatabaseState:
    ok: bool
    dialect: str
    error: str = ""  # the error's class name only: a monitor needs no more, and a message could hold a secret


def database_state(session: Session) -> DatabaseState:
    dialect = session.get_bind().dialect.name
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return DatabaseState(False, dialect, type(exc).__name__)
    finally:
        session.rollback()
    return DatabaseState(True, dialect)
