"""aiocron scheduling of the registered jobs (UTC), manual runs and job health."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiocron
import structlog
from cronsim import CronSim
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on

from server.deps import Deps
from server.errors import NotFound
from server.jobs.definitions import JOBS
from server.jobs.registry import Job, Outcome, Trigger
from server.jobs.runner import RunResult, run_job
from server.ops.models import JobRun

log = structlog.get_logger("smartstart.jobs")


@dataclass(frozen=True, slots=True)
class LastRun:
    run_id: str
    trigger: str
    outcome: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, Any]
    error: str | None


@dataclass(frozen=True, slots=True)
class JobStatus:
    name: str
    cron: str
    description: str
    scheduler_running: bool
    next_run: datetime | None
    last_run: LastRun | None


def next_fire(cron: str, after: datetime) -> datetime:
    result: datetime = next(CronSim(cron, after))
    return result


class Scheduler:
    """Owns the cron timers and the runs they start. Manual runs work even when stopped."""

    def __init__(self, deps: Deps, jobs: Sequence[Job] = JOBS) -> None:
        self._deps = deps
        self._jobs = {job.name: job for job in jobs}
        self._crons: list[Any] = []
        self._tasks: set[asyncio.Task[RunResult | None]] = set()

    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    @property
    def running(self) -> bool:
        return bool(self._crons)

    def start(self) -> None:
        if self._crons:
            return
        loop = asyncio.get_running_loop()
        for job in self._jobs.values():
            self._crons.append(
                aiocron.crontab(job.cron, func=self._fire, args=(job,), loop=loop, tz=UTC)
            )
        log.info("scheduler started", jobs=list(self._jobs))

    def _fire(self, job: Job) -> None:
        task = asyncio.create_task(self._scheduled(job), name=f"job:{job.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _scheduled(self, job: Job) -> RunResult | None:
        try:
            return await run_job(self._deps, job, Trigger.SCHEDULE)
        except Exception:
            # The run could not even be recorded (database down?); the next tick retries.
            log.exception("scheduled job run failed", job=job.name)
            return None

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the timers, let runs in progress finish (cancel them after `timeout_s`)."""
        for cron in self._crons:
            cron.stop()
        self._crons.clear()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        log.info("scheduler stopped")

    def job(self, name: str) -> Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise NotFound(f"no job named {name!r}", metadata={"job": name}) from None

    async def run_now(
        self, name: str, trigger: Trigger = Trigger.MANUAL, *, triggered_by: str | None = None
    ) -> RunResult:
        """Run a job now, under the same lock and recording as a scheduled run."""
        return await run_job(self._deps, self.job(name), trigger, triggered_by=triggered_by)

    async def status(self) -> list[JobStatus]:
        """Per job: whether the scheduler runs, the next planned run and the last recorded run."""
        async with self._deps.database.transaction() as session:
            rows = (
                await session.scalars(
                    select(JobRun)
                    .where(JobRun.job.in_(list(self._jobs)))
                    .ext(distinct_on(JobRun.job))
                    .order_by(JobRun.job, JobRun.started_at.desc())
                )
            ).all()
        last = {row.job: row for row in rows}
        now = datetime.now(UTC)
        result: list[JobStatus] = []
        for job in self._jobs.values():
            row = last.get(job.name)
            result.append(
                JobStatus(
                    name=job.name,
                    cron=job.cron,
                    description=job.description,
                    scheduler_running=self.running,
                    next_run=next_fire(job.cron, now) if self.running else None,
                    last_run=LastRun(
                        run_id=str(row.id),
                        trigger=row.trigger,
                        outcome=row.outcome,
                        started_at=row.started_at,
                        finished_at=row.finished_at,
                        counts=dict(row.counts or {}),
                        error=row.error,
                    )
                    if row is not None
                    else None,
                )
            )
        return result


__all__ = ["JobStatus", "LastRun", "Outcome", "Scheduler", "Trigger"]
