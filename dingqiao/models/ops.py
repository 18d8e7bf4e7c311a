"""The shop itself and the work it does by itself: the one row of shop settings (its name, the first-run setup
link) and the scheduled jobs with their lease and history."""
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import utcnow


class ShopSettings(db.Model):
    """One row (id 1). ``setup_token_hash`` is the SHA-256 of the first-run setup link's token, printed to the
    console when a production start finds no admin; it works once and until ``setup_token_expires_at``."""

    __tablename__ = "shop_settings"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    name: Mapped[str] = mapped_column(String(32), default="顶俏")
    setup_token_hash: Mapped[str | None] = mapped_column(String(64))
    setup_token_expires_at: Mapped[datetime | None]
    setup_finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ScheduledJob(db.Model):
    """A job the app runs by itself. A process runs it only after taking its lease with one conditional UPDATE
    (due, and no live lease), so each due run happens once however many workers, processes or hosts try."""

    __tablename__ = "scheduled_jobs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_run_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    last_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_summary: Mapped[str] = mapped_column(Text, default="")
    runs: Mapped[int] = mapped_column(default=0)
    failures: Mapped[int] = mapped_column(default=0)


class JobRun(db.Model):
    """One finished run of a scheduled job, kept for the dashboard and the record (nightly checks' results)."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_started", "job_name", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_name: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    ok: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[str] = mapped_column(Text, default="")


class SubmissionKey(db.Model):
    """A form's one-time submission key, stored in the same transaction as the write it made. A repeat of the
    key (a double tap, a retried request) finds this row and answers with the first result (``result_id``)
    instead of writing again. ``actor`` and ``action`` stop one person's key from being used by another or on
    another form. Old keys are swept by a scheduled job."""

    __tablename__ = "submission_keys"
    __table_args__ = (Index("ix_submission_keys_created_at", "created_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    result_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
