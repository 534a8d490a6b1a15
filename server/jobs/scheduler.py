"""aiocron scheduling of the jobs (UTC), manual runs and job health."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import aiocron
import structlog
from cronsim import CronSim

from server.core.clock import Clock, system_clock
from server.core.errors import NotFound, Unimplemented
from server.db.session import Database
from server.jobs import queries
from server.jobs.registry import Job, JobStatus, Outcome, Trigger
from server.jobs.runner import ManualRun, RunResult, lock_key, run_job

S = TypeVar("S")

log = structlog.get_logger("smartstart.jobs")


def next_fire(cron: str, after: datetime) -> datetime:
    result: datetime = next(CronSim(cron, after))
    return result


def interval(cron: str, at: datetime) -> timedelta:
    """The time between the schedule's next two starts after `at`."""
    first = next_fire(cron, at)
    return next_fire(cron, first) - first


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
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._since = clock()

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

    def runnable(self, name: str) -> Job[S]:
        """The job, if it has a body (else UNIMPLEMENTED: it is listed, not runnable)."""
        job = self.job(name)
        if job.body is None:
            raise Unimplemented(f"job {name!r} has no body yet", metadata={"job": name})
        return job

    async def run_now(
        self,
        name: str,
        trigger: Trigger = Trigger.MANUAL,
        *,
        triggered_by: str | None = None,
        manual: ManualRun | None = None,
    ) -> RunResult:
        """Run a job now under the job's lock, recorded like a scheduled run. A MANUAL run
        waits for a run in progress (`manual.lock_wait_s`, DEFAULT_LOCK_WAIT_S by default)."""
        job = self.runnable(name)
        if trigger is Trigger.MANUAL and manual is None:
            manual = ManualRun(lock_wait_s=DEFAULT_LOCK_WAIT_S)
        assert job.body is not None  # runnable() checked it
        return await run_job(
            self._database,
            self._services,
            job,
            job.body,
            trigger,
            now=self._clock(),
            triggered_by=triggered_by,
            manual=manual if trigger is Trigger.MANUAL else None,
        )

    def start_manual(
        self, name: str, *, triggered_by: str | None, manual: ManualRun
    ) -> asyncio.Task[RunResult]:
        """A manual run as a task of this scheduler: it outlives the call that started it
        (RunJob without `wait`), and stop() lets it finish like a scheduled run."""
        self.runnable(name)
        task = asyncio.create_task(
            self.run_now(name, Trigger.MANUAL, triggered_by=triggered_by, manual=manual),
            name=f"job:{name}:manual",
        )
        self._tasks.add(task)
        task.add_done_callback(self._manual_done)
        return task

    def _manual_done(self, task: asyncio.Task[RunResult]) -> None:
        self._tasks.discard(task)
        # The caller may have gone (no `wait`, or its deadline passed): log what it missed.
        if not task.cancelled() and (error := task.exception()) is not None:
            log.info("manual job run ended without running", error=str(error))

    async def status(self) -> list[JobStatus]:
        """Per job: whether it has a body, whether the scheduler runs, the next planned run,
        the last recorded run and success, and whether a replica runs it now."""
        names = list(self._jobs)
        last = await queries.last_runs(self._database, names)
        successes = await queries.last_successes(self._database, names)
        held = await queries.held_locks(self._database, [lock_key(n) for n in names])
        now = self._clock()
        result: list[JobStatus] = []
        for job in self._jobs.values():
            scheduled = self.running and job.body is not None
            result.append(
                JobStatus(
                    name=job.name,
                    cron=job.cron,
                    description=job.description,
                    implemented=job.body is not None,
                    scheduler_running=self.running,
                    next_run=next_fire(job.cron, now) if scheduled else None,
                    last_run=last.get(job.name),
                    last_success=successes.get(job.name),
                    running=lock_key(job.name) in held,
                    interval=interval(job.cron, now),
                    since=self._since,
                    now=now,
                )
            )
        return result


# A manual run waits this long for a run in progress when its call has no deadline.
DEFAULT_LOCK_WAIT_S = 300.0

__all__ = ["DEFAULT_LOCK_WAIT_S", "JobStatus", "Outcome", "Scheduler", "Trigger"]
