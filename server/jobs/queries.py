"""The job_runs table: a run's record from start to finish, and the last run per job."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.session import Database
from server.jobs.models import JobRun
from server.jobs.registry import Counts, Outcome, Trigger


async def try_lock(conn: AsyncConnection, key: int) -> bool:
    """Take the job's advisory lock for `conn`'s transaction, if no one holds it."""
    locked: bool = await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key})
    return locked


async def succeeded(database: Database, job: str, run_key: str) -> bool:
    async with database.transaction() as session:
        found = await session.scalar(
            select(JobRun.id).where(
                JobRun.job == job,
                JobRun.run_key == run_key,
                JobRun.outcome == Outcome.SUCCEEDED.value,
            )
        )
    return found is not None


async def record_start(
    database: Database,
    *,
    job: str,
    run_key: str | None,
    trigger: Trigger,
    instance: str,
    triggered_by: str | None,
    outcome: Outcome = Outcome.RUNNING,
    error: str | None = None,
) -> uuid.UUID:
    """A new run record (RUNNING, or a SKIPPED run finished at once); its id."""
    async with database.transaction() as session:
        row = JobRun(
            job=job,
            run_key=run_key,
            trigger=trigger.value,
            instance=instance,
            outcome=outcome.value,
            triggered_by=triggered_by,
            error=error,
            finished_at=None if outcome is Outcome.RUNNING else datetime.now(UTC),
        )
        session.add(row)
        await session.flush()
        return row.id


async def record_finish(
    database: Database, run_id: uuid.UUID, outcome: Outcome, counts: Counts, error: str | None
) -> None:
    async with database.transaction() as session:
        await session.execute(
            update(JobRun)
            .where(JobRun.id == run_id)
            .values(
                outcome=outcome.value, counts=counts, error=error, finished_at=datetime.now(UTC)
            )
        )


async def last_runs(database: Database, jobs: Sequence[str]) -> dict[str, JobRun]:
    """The latest run record of each job that has one."""
    async with database.transaction() as session:
        rows = (
            await session.scalars(
                select(JobRun)
                .where(JobRun.job.in_(list(jobs)))
                .ext(distinct_on(JobRun.job))
                .order_by(JobRun.job, JobRun.started_at.desc())
            )
        ).all()
    return {row.job: row for row in rows}
