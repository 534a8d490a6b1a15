"""One job run: under a PostgreSQL advisory lock, recorded in job_runs.

The lock is transaction-scoped (pg_try_advisory_xact_lock) on a dedicated connection whose
transaction stays open for the run, so it is released however the run ends, even if this
process dies. A replica that does not get the lock records nothing for a scheduled run (the
winner records it) and a SKIPPED row for a manual one, so the admin sees why nothing ran.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import structlog
from prometheus_client import Counter, Histogram

from server.core.context import SYSTEM_CONTEXT, RequestContext
from server.db.session import Database
from server.jobs import queries
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


async def _skip(
    database: Database,
    job: Job[S],
    trigger: Trigger,
    run_key: str | None,
    by: str | None,
    why: str,
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
    )
    JOB_RUNS.labels(job.name, Outcome.SKIPPED.value).inc()
    return RunResult(job.name, Outcome.SKIPPED, run_id, run_key, {}, why)


async def run_job(
    database: Database,
    services: S,
    job: Job[S],
    body: JobBody[S],
    trigger: Trigger,
    *,
    now: datetime,
    triggered_by: str | None = None,
) -> RunResult:
    """Run `body` (the job's) once, as of `now`, if this replica gets the job's lock and its
    run key is not done yet."""
    run_key = job.run_key(now) if job.run_key else None
    async with database.engine.connect() as lock_conn, lock_conn.begin():
        if not await queries.try_lock(lock_conn, lock_key(job.name)):
            why = "another instance is running the job"
            return await _skip(database, job, trigger, run_key, triggered_by, why)
        if run_key is not None and await queries.succeeded(database, job.name, run_key):
            why = f"already succeeded for {run_key}"
            return await _skip(database, job, trigger, run_key, triggered_by, why)
        run_id = await queries.record_start(
            database,
            job=job.name,
            run_key=run_key,
            trigger=trigger,
            instance=INSTANCE,
            triggered_by=triggered_by,
        )
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
