"""The job_runs table and the jobs' advisory locks: a run's record from start to finish,
the last run and success per job, which jobs are running, and the run history."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.db.session import Database
from server.jobs.models import JobRun
from server.jobs.registry import Counts, Outcome, RunRecord, Trigger

# Called in the transaction that records a run, with the new run's id and outcome: a manual
# run's idempotency key and audit event commit with its record.
RecordHook = Callable[[AsyncSession, uuid.UUID, Outcome], Awaitable[None]]

_LOCK_NOT_AVAILABLE = "55P03"


async def try_lock(conn: AsyncConnection, key: int) -> bool:
    """Take the job's advisory lock for `conn`'s transaction, if no one holds it."""
    locked: bool = await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key})
    return locked


async def wait_lock(conn: AsyncConnection, key: int, wait_s: float) -> None:
    """Take the job's advisory lock for `conn`'s transaction, waiting at most `wait_s` for
    its holder to finish (PostgreSQL's lock_timeout: the wait ends in the database even if
    this process stalls). Raises the driver's error, SQLSTATE 55P03, on time-out."""
    # lock_timeout 0 would mean "forever": wait at least a millisecond.
    timeout_ms = max(1, int(wait_s * 1000))
    await conn.execute(text(f"SET LOCAL lock_timeout = {timeout_ms}"))
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    await conn.execute(text("SET LOCAL lock_timeout = 0"))


def is_lock_timeout(sqlstate: str | None) -> bool:
    return sqlstate == _LOCK_NOT_AVAILABLE


async def held_locks(database: Database, keys: Sequence[int]) -> set[int]:
    """Which of the advisory lock `keys` some session holds now (any replica). A bigint
    advisory lock shows in pg_locks as classid (high 32 bits), objid (low 32), objsubid 1;
    the shift below wraps, as bigint arithmetic does, back to the signed key."""
    async with database.read() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT (classid::bigint << 32) | objid::bigint AS key FROM pg_locks"
                    " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                )
            )
        ).all()
    held = {int(row.key) for row in rows}
    return {key for key in keys if key in held}


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
    then: RecordHook | None = None,
) -> uuid.UUID:
    """A new run record (RUNNING, or a SKIPPED run finished at once); its id. `then` runs
    in the same transaction."""
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
        if then is not None:
            await then(session, row.id, outcome)
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


def _record(row: JobRun) -> RunRecord:
    return RunRecord(
        run_id=row.id,
        job=row.job,
        trigger=Trigger(row.trigger),
        triggered_by=row.triggered_by,
        run_key=row.run_key,
        started_at=row.started_at,
        finished_at=row.finished_at,
        outcome=Outcome(row.outcome),
        counts={str(k): int(v) for k, v in (row.counts or {}).items()},
        error=row.error,
        instance=row.instance,
    )


async def last_runs(database: Database, jobs: Sequence[str]) -> dict[str, RunRecord]:
    """The latest run record of each job that has one."""
    async with database.transaction() as session:
        rows = (
            await session.scalars(
                select(JobRun)
                .where(JobRun.job.in_(list(jobs)))
                .ext(distinct_on(JobRun.job))
                .order_by(JobRun.job, JobRun.started_at.desc(), JobRun.id.desc())
            )
        ).all()
    return {row.job: _record(row) for row in rows}


async def last_successes(database: Database, jobs: Sequence[str]) -> dict[str, datetime]:
    """When each job's latest SUCCEEDED run ended."""
    async with database.transaction() as session:
        rows = (
            await session.execute(
                select(JobRun.job, func.max(JobRun.finished_at).label("at"))
                .where(JobRun.job.in_(list(jobs)), JobRun.outcome == Outcome.SUCCEEDED.value)
                .group_by(JobRun.job)
            )
        ).all()
    return {str(row.job): row.at for row in rows if row.at is not None}


async def latest_running(database: Database, job: str) -> uuid.UUID | None:
    """The newest run of `job` still recorded as RUNNING."""
    async with database.transaction() as session:
        found: uuid.UUID | None = await session.scalar(
            select(JobRun.id)
            .where(JobRun.job == job, JobRun.outcome == Outcome.RUNNING.value)
            .order_by(JobRun.started_at.desc())
            .limit(1)
        )
    return found


async def load_run(database: Database, run_id: uuid.UUID) -> RunRecord | None:
    async with database.transaction() as session:
        row = await session.get(JobRun, run_id)
    return _record(row) if row is not None else None


async def list_runs(
    database: Database,
    *,
    job: str | None,
    outcome: Outcome | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[RunRecord]:
    """Runs newest first (started_at, then id, both descending), after the keyset `after`."""
    conditions: list[Any] = []
    if job is not None:
        conditions.append(JobRun.job == job)
    if outcome is not None:
        conditions.append(JobRun.outcome == outcome.value)
    if start is not None:
        conditions.append(JobRun.started_at >= start)
    if end is not None:
        conditions.append(JobRun.started_at < end)
    if after is not None:
        at, run_id = after
        conditions.append(
            or_(JobRun.started_at < at, and_(JobRun.started_at == at, JobRun.id < run_id))
        )
    async with database.transaction() as session:
        rows = (
            await session.scalars(
                select(JobRun)
                .where(*conditions)
                .order_by(JobRun.started_at.desc(), JobRun.id.desc())
                .limit(limit)
            )
        ).all()
    return [_record(row) for row in rows]
