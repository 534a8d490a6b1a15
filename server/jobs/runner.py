"""One job run: under a PostgreSQL advisory lock, recorded in job_runs.

The lock is transaction-scoped on a dedicated connection whose transaction stays open for
the run, so it is released however the run ends, even if this process dies. A scheduled run
only tries the lock (pg_try_advisory_xact_lock): a replica that does not get it records
nothing (the winner records the run). A manual run (OpsService.RunJob) waits for the lock
(pg_advisory_xact_lock under a lock_timeout) and then runs, so it never overlaps a run in
progress; a keyed job whose key succeeded meanwhile records a SKIPPED run instead, so the
admin sees why nothing ran.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.context import SYSTEM_CONTEXT, RequestContext
from server.core.errors import FailedPrecondition
from server.db.session import Database, sqlstate_of
from server.jobs import queries
from server.jobs.queries import RecordHook
from server.jobs.registry import Counts, Job, JobBody, JobContext, Outcome, Trigger

S = TypeVar("S")

log = structlog.get_logger("smartstart.jobs")

INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
_MAX_ERROR_CHARS = 4000

JOB_RUNS = Counter("smartstart_job_runs_total", "Job runs by job and outcome", ["job", "outcome"])
JOB_SECONDS = Histogram(
    "smartstart_job_duration_seconds",
    "Job run duration in seconds",
    ["job"],
    buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)


@dataclass(frozen=True, slots=True)
class RunResult:
    job: str
    outcome: Outcome
    run_id: uuid.UUID | None  # None: nothing recorded (scheduled run another replica owns)
    run_key: str | None
    counts: Counts
    error: str | None = None


def lock_key(job: str) -> int:
    """A stable signed 64-bit advisory lock id per job name."""
    digest = hashlib.sha256(f"smartstart.job:{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class ManualRun:
    """How a manual run waits and reports: at most `lock_wait_s` for a run in progress;
    `record` runs in the transaction that records the run; `on_start` gets the run's id
    once it is recorded RUNNING, before its body starts."""

    lock_wait_s: float
    record: RecordHook | None = None
    on_start: Callable[[uuid.UUID], None] | None = None


async def _skip(
    database: Database,
    job: Job[S],
    trigger: Trigger,
    run_key: str | None,
    by: str | None,
    why: str,
    record: RecordHook | None,
) -> RunResult:
    if trigger is Trigger.SCHEDULE:
        log.info("job skipped", job=job.name, why=why)
        return RunResult(job.name, Outcome.SKIPPED, None, run_key, {}, why)
    run_id = await queries.record_start(
        database,
        job=job.name,
        run_key=run_key,
        trigger=trigger,
        instance=INSTANCE,
        triggered_by=by,
        outcome=Outcome.SKIPPED,
        error=why,
        then=record,
    )
    JOB_RUNS.labels(job.name, Outcome.SKIPPED.value).inc()
    return RunResult(job.name, Outcome.SKIPPED, run_id, run_key, {}, why)


async def _wait_lock(database: Database, conn: AsyncConnection, job: str, wait_s: float) -> None:
    try:
        await queries.wait_lock(conn, lock_key(job), wait_s)
    except DBAPIError as error:
        if not queries.is_lock_timeout(sqlstate_of(error)):
            raise
        running = await queries.latest_running(database, job)
        raise FailedPrecondition(
            f"job {job!r} is still running after {wait_s:.0f} s",
            metadata={"job": job, **({"run_id": str(running)} if running else {})},
        ) from None


async def run_job(
    database: Database,
    services: S,
    job: Job[S],
    body: JobBody[S],
    trigger: Trigger,
    *,
    now: datetime,
    triggered_by: str | None = None,
    manual: ManualRun | None = None,
) -> RunResult:
    """Run `body` (the job's) once, as of `now`, if its run key is not done yet: a scheduled
    run if this replica gets the job's lock at once, a manual one (`manual`) once the run in
    progress, if any, has ended."""
    record = manual.record if manual else None
    async with database.engine.connect() as lock_conn, lock_conn.begin():
        if manual is not None:
            await _wait_lock(database, lock_conn, job.name, manual.lock_wait_s)
        elif not await queries.try_lock(lock_conn, lock_key(job.name)):
            why = "another instance is running the job"
            return await _skip(database, job, trigger, None, triggered_by, why, None)
        run_key = job.run_key(now) if job.run_key else None
        if run_key is not None and await queries.succeeded(database, job.name, run_key):
            why = f"already succeeded for {run_key}"
            return await _skip(database, job, trigger, run_key, triggered_by, why, record)
        run_id = await queries.record_start(
            database,
            job=job.name,
            run_key=run_key,
            trigger=trigger,
            instance=INSTANCE,
            triggered_by=triggered_by,
            then=record,
        )
        if manual is not None and manual.on_start is not None:
            manual.on_start(run_id)
        ctx = JobContext(
            services=services,
            job=job.name,
            trigger=trigger,
            run_key=run_key,
            now=now,
            request=RequestContext(
                request_id=f"job:{job.name}:{run_id.hex}", principal=SYSTEM_CONTEXT.principal
            ),
        )
        return await _execute(database, ctx, body, run_id)


async def _execute(
    database: Database, ctx: JobContext[S], body: JobBody[S], run_id: uuid.UUID
) -> RunResult:
    started = time.perf_counter()
    counts: Counts = {}
    error: str | None = None
    with structlog.contextvars.bound_contextvars(job=ctx.job, run_id=str(run_id)):
        try:
            counts = dict(await body(ctx))
            outcome = Outcome.SUCCEEDED
        except Exception as exc:
            outcome = Outcome.FAILED
            error = "".join(traceback.format_exception_only(exc)).strip()[:_MAX_ERROR_CHARS]
            log.exception("job failed")
        elapsed = time.perf_counter() - started
        await queries.record_finish(database, run_id, outcome, counts, error)
        JOB_RUNS.labels(ctx.job, outcome.value).inc()
        JOB_SECONDS.labels(ctx.job).observe(elapsed)
        log.info("job finished", outcome=outcome.value, counts=counts, duration_s=elapsed)
    return RunResult(ctx.job, outcome, run_id, ctx.run_key, counts, error)
