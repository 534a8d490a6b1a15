"""The job_runs table: one row per run of a job."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, created_at, one_of, uuid_pk
from server.jobs.registry import Outcome, Trigger


class JobRun(Base):
    """One run of a job. A keyed run (e.g. the daily job's date) succeeds at most once."""

    __tablename__ = "job_runs"
    __table_args__ = (
        one_of("trigger", Trigger, "trigger"),
        one_of("outcome", Outcome, "outcome"),
        Index(
            "uq_job_runs_succeeded_key",
            "job",
            "run_key",
            unique=True,
            postgresql_where=text("outcome = 'SUCCEEDED' AND run_key IS NOT NULL"),
        ),
        Index("ix_job_runs_job_started", "job", text("started_at DESC")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    job: Mapped[str]
    run_key: Mapped[str | None]
    trigger: Mapped[str]
    instance: Mapped[str] = mapped_column(server_default="")
    started_at: Mapped[datetime] = created_at()
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(server_default="RUNNING")
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    error: Mapped[str | None]
    triggered_by: Mapped[str | None]  # actor id of a MANUAL run
