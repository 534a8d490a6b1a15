"""aiocron scheduling of the jobs (UTC), manual runs and job health."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import aiocron
import structlog
from cronsim import CronSim

from server.core.clock import Clock, system_clock
from server.core.errors import NotFound, Unimplemented
from server.db.session import Database
from server.jobs import queries
from server.jobs.registry import Job, Outcome, Trigger
from server.jobs.runner import RunResult, run_job

S = TypeVar("S")

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
    implemented: bool  # False: no body yet, so never scheduled and not runnable
    scheduler_running: bool
    next_run: datetime | None
    last_run: LastRun | None


def next_fire(cron: str, after: datetime) -> datetime:
    result: datetime = next(CronSim(cron, after))
    return result


class Scheduler(Generic[S]):
    """Owns the cron timers and the runs they start. Manual runs work even when stopped.

    Only jobs with a body get a timer; the others are listed (job health says they have no
    body yet) but never run.
    """

    def __init__(
        self,
        database: Database,
        services: S,
        jobs: Sequence[Job[S]],
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._database = database
        self._services = services
        self._clock = clock
        self._jobs = {job.name: job for job in jobs}
        self._crons: list[Any] = []
        self._tasks: set[asyncio.Task[RunResult | None]] = set()
        self._started = False

    @property
    def jobs(self) -> list[Job[S]]:
        return list(self._jobs.values())

    @property
    def running(self) -> bool:
        return self._started

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        for job in self._jobs.values():
            if job.body is not None:
                self._crons.append(
                    aiocron.crontab(job.cron, func=self._fire, args=(job,), loop=loop, tz=UTC)
                )
        log.info(
            "scheduler started",
            jobs=[j.name for j in self._jobs.values() if j.body is not None],
            without_body=[j.name for j in self._jobs.values() if j.body is None],
        )

    def _fire(self, job: Job[S]) -> None:
        task = asyncio.create_task(self._scheduled(job), name=f"job:{job.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _scheduled(self, job: Job[S]) -> RunResult | None:
        try:
            return await self.run_now(job.name, Trigger.SCHEDULE)
        except Exception:
            # The run could not even be recorded (database down?); the next tick retries.
            log.exception("scheduled job run failed", job=job.name)
            return None

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the timers, let runs in progress finish (cancel them after `timeout_s`)."""
        for cron in self._crons:
            cron.stop()
        self._crons.clear()
        self._started = False
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        log.info("scheduler stopped")

    def job(self, name: str) -> Job[S]:
        try:
            return self._jobs[name]
        except KeyError:
            raise NotFound(f"no job named {name!r}", metadata={"job": name}) from None

    async def run_now(
        self, name: str, trigger: Trigger = Trigger.MANUAL, *, triggered_by: str | None = None
    ) -> RunResult:
        """Run a job now, under the same lock and recording as a scheduled run."""
        job = self.job(name)
        if job.body is None:
            raise Unimplemented(f"job {name!r} has no body yet", metadata={"job": name})
        return await run_job(
            self._database,
            self._services,
            job,
            job.body,
            trigger,
            now=self._clock(),
            triggered_by=triggered_by,
        )

    async def status(self) -> list[JobStatus]:
        """Per job: whether it has a body, whether the scheduler runs, the next planned run
        and the last recorded run."""
        last = await queries.last_runs(self._database, list(self._jobs))
        now = self._clock()
        result: list[JobStatus] = []
        for job in self._jobs.values():
            row = last.get(job.name)
            scheduled = self.running and job.body is not None
            result.append(
                JobStatus(
                    name=job.name,
                    cron=job.cron,
                    description=job.description,
                    implemented=job.body is not None,
                    scheduler_running=self.running,
                    next_run=next_fire(job.cron, now) if scheduled else None,
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
