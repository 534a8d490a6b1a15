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
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import select, text, update

from server.context import SYSTEM_CONTEXT, RequestContext
from server.deps import Deps
from server.jobs.registry import Counts, Job, JobContext, Outcome, Trigger
from server.ops.models import JobRun

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


async def _record_skip(
    deps: Deps, job: Job, trigger: Trigger, run_key: str | None, by: str | None, why: str
) -> RunResult:
    if trigger is Trigger.SCHEDULE:
        log.info("job skipped", job=job.name, why=why)
        return RunResult(job.name, Outcome.SKIPPED, None, run_key, {}, why)
    async with deps.database.transaction() as session:
        row = JobRun(
            job=job.name,
            run_key=run_key,
            trigger=trigger.value,
            instance=INSTANCE,
            outcome=Outcome.SKIPPED.value,
            finished_at=datetime.now(UTC),
            error=why,
            triggered_by=by,
        )
        session.add(row)
        await session.flush()
        run_id = row.id
    JOB_RUNS.labels(job.name, Outcome.SKIPPED.value).inc()
    return RunResult(job.name, Outcome.SKIPPED, run_id, run_key, {}, why)


async def _already_done(deps: Deps, job: str, run_key: str) -> bool:
    async with deps.database.transaction() as session:
        found = await session.scalar(
            select(JobRun.id).where(
                JobRun.job == job,
                JobRun.run_key == run_key,
                JobRun.outcome == Outcome.SUCCEEDED.value,
            )
        )
    return found is not None


async def run_job(
    deps: Deps, job: Job, trigger: Trigger, *, triggered_by: str | None = None
) -> RunResult:
    """Run `job` once if this replica gets its lock (and its run key is not done yet)."""
    now = datetime.now(UTC)
    run_key = job.run_key(now) if job.run_key else None
    async with deps.database.engine.connect() as lock_conn, lock_conn.begin():
        locked = await lock_conn.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": lock_key(job.name)}
        )
        if not locked:
            return await _record_skip(
                deps, job, trigger, run_key, triggered_by, "another instance is running the job"
            )
        if run_key is not None and await _already_done(deps, job.name, run_key):
            return await _record_skip(
                deps, job, trigger, run_key, triggered_by, f"already succeeded for {run_key}"
            )
        return await _execute(deps, job, trigger, run_key, triggered_by, now)


async def _execute(
    deps: Deps,
    job: Job,
    trigger: Trigger,
    run_key: str | None,
    triggered_by: str | None,
    now: datetime,
) -> RunResult:
    async with deps.database.transaction() as session:
        row = JobRun(
            job=job.name,
            run_key=run_key,
            trigger=trigger.value,
            instance=INSTANCE,
            outcome=Outcome.RUNNING.value,
            triggered_by=triggered_by,
        )
        session.add(row)
        await session.flush()
        run_id = row.id
    ctx = JobContext(
        deps=deps,
        job=job.name,
        trigger=trigger,
        run_key=run_key,
        now=now,
        request=RequestContext(
            request_id=f"job:{job.name}:{run_id.hex}", principal=SYSTEM_CONTEXT.principal
        ),
    )
    started = time.perf_counter()
    counts: Counts = {}
    error: str | None = None
    with structlog.contextvars.bound_contextvars(job=job.name, run_id=str(run_id)):
        try:
            counts = dict(await job.body(ctx))
            outcome = Outcome.SUCCEEDED
        except Exception as exc:
            outcome = Outcome.FAILED
            error = "".join(traceback.format_exception_only(exc)).strip()[:_MAX_ERROR_CHARS]
            log.exception("job failed")
        elapsed = time.perf_counter() - started
        async with deps.database.transaction() as session:
            await session.execute(
                update(JobRun)
                .where(JobRun.id == run_id)
                .values(
                    outcome=outcome.value,
                    counts=counts,
                    error=error,
                    finished_at=datetime.now(UTC),
                )
            )
        JOB_RUNS.labels(job.name, outcome.value).inc()
        JOB_SECONDS.labels(job.name).observe(elapsed)
        log.info("job finished", outcome=outcome.value, counts=counts, duration_s=elapsed)
    return RunResult(job.name, outcome, run_id, run_key, counts, error)
