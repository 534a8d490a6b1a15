"""Job runs: recorded in job_runs, once per key, one replica at a time (advisory lock)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from server.core.errors import Unimplemented
from server.db.session import Database
from server.jobs import Job, JobContext, Outcome, Trigger
from server.jobs.models import JobRun
from server.jobs.registry import Counts
from server.jobs.scheduler import Scheduler, next_fire
from server.services import jobs

# Job bodies get the services from the scheduler; these tests' bodies need none.
NO_SERVICES = None


def _scheduler(db: Database, table: list[Job[None]]) -> Scheduler[None]:
    return Scheduler(db, NO_SERVICES, table)


async def test_spec_jobs_are_registered_with_their_schedules() -> None:
    schedules = {job.name: job.cron for job in jobs()}
    assert schedules == {
        "daily_maintenance": "0 2 * * *",
        "badge_evaluation": "0 * * * *",
        "conversion_windows": "*/15 * * * *",
        "worm_maintenance": "*/5 * * * *",
    }
    at = datetime(2026, 1, 1, 2, 3, tzinfo=UTC)
    assert next_fire("0 2 * * *", at) == datetime(2026, 1, 2, 2, 0, tzinfo=UTC)
    assert next_fire("*/5 * * * *", at) == datetime(2026, 1, 1, 2, 5, tzinfo=UTC)


async def test_runs_are_recorded(db: Database) -> None:
    async def ok(ctx: JobContext[None]) -> Counts:
        assert ctx.request.principal is not None
        assert ctx.request.principal.has("system")
        return {"done": 3}

    async def boom(ctx: JobContext[None]) -> Counts:
        raise ValueError("no luck")

    scheduler = _scheduler(db, [Job("ok", "* * * * *", ok), Job("boom", "* * * * *", boom)])
    good = await scheduler.run_now("ok", triggered_by="admin-1")
    bad = await scheduler.run_now("boom")
    assert (good.outcome, good.counts) == (Outcome.SUCCEEDED, {"done": 3})
    assert bad.outcome is Outcome.FAILED
    assert bad.error is not None
    assert "no luck" in bad.error
    async with db.transaction() as session:
        rows = {r.job: r for r in (await session.scalars(select(JobRun))).all()}
    assert rows["ok"].outcome == "SUCCEEDED"
    assert rows["ok"].counts == {"done": 3}
    assert rows["ok"].trigger == "MANUAL"
    assert rows["ok"].triggered_by == "admin-1"
    assert rows["ok"].finished_at is not None
    assert rows["boom"].outcome == "FAILED"

    status = {s.name: s for s in await scheduler.status()}
    assert status["ok"].last_run is not None
    assert status["ok"].last_run.outcome == "SUCCEEDED"
    assert not status["ok"].scheduler_running
    assert status["ok"].next_run is None


async def test_a_keyed_run_happens_once(db: Database) -> None:
    calls: list[str | None] = []

    async def daily(ctx: JobContext[None]) -> Counts:
        calls.append(ctx.run_key)
        return {}

    job = Job("daily", "0 2 * * *", daily, run_key=lambda now: now.date().isoformat())
    scheduler = _scheduler(db, [job])
    first = await scheduler.run_now("daily", Trigger.SCHEDULE)
    again = await scheduler.run_now("daily", Trigger.SCHEDULE)
    manual = await scheduler.run_now("daily")
    assert first.outcome is Outcome.SUCCEEDED
    assert (again.outcome, again.run_id) == (Outcome.SKIPPED, None)  # scheduled: not recorded
    assert manual.outcome is Outcome.SKIPPED
    assert manual.run_id is not None  # manual: recorded so the admin sees why
    assert len(calls) == 1


async def test_one_replica_runs_at_a_time(db: Database) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(ctx: JobContext[None]) -> Counts:
        started.set()
        await release.wait()
        return {"n": 1}

    job = Job("slow", "* * * * *", slow)
    # Two schedulers on one database stand in for two replicas.
    a = _scheduler(db, [job])
    b = _scheduler(db, [job])
    first = asyncio.create_task(a.run_now("slow", Trigger.SCHEDULE))
    await started.wait()
    second = await b.run_now("slow", Trigger.SCHEDULE)
    release.set()
    assert second.outcome is Outcome.SKIPPED
    assert (await first).outcome is Outcome.SUCCEEDED
    async with db.transaction() as session:
        outcomes = (await session.scalars(select(JobRun.outcome))).all()
    assert outcomes == ["SUCCEEDED"]


async def test_scheduler_starts_and_stops(db: Database) -> None:
    async def tick(ctx: JobContext[None]) -> Counts:
        return {}

    scheduler = _scheduler(db, [Job("tick", "*/5 * * * *", tick)])
    scheduler.start()
    try:
        (status,) = await scheduler.status()
        assert status.implemented and status.scheduler_running and status.next_run is not None
    finally:
        await scheduler.stop()
    assert not scheduler.running


async def test_a_job_without_a_body_is_neither_scheduled_nor_run(db: Database) -> None:
    """Until its issue gives it a body, a job says so in job health instead of recording
    SUCCEEDED runs that did nothing (and the daily one marking its date done)."""
    table = [*jobs(), Job("later", "0 * * * *", None, "no body yet")]
    scheduler = Scheduler(db, NO_SERVICES, table)
    scheduler.start()
    try:
        status = {s.name: s for s in await scheduler.status()}
        assert set(status) == {job.name for job in table}
        for job in table:
            assert status[job.name].implemented is (job.body is not None)
            assert status[job.name].scheduler_running
            assert (status[job.name].next_run is None) is (job.body is None)
        with pytest.raises(Unimplemented, match="no body"):
            await scheduler.run_now("later")
    finally:
        await scheduler.stop()
    async with db.transaction() as session:
        assert (await session.scalars(select(JobRun))).all() == []


async def test_a_run_happens_at_the_injected_clock(db: Database) -> None:
    """Tests move time by giving the scheduler (or the server) a clock: the run's `now` and
    its run key follow it."""
    seen: list[datetime] = []

    async def daily(ctx: JobContext[None]) -> Counts:
        seen.append(ctx.now)
        return {}

    at = datetime(2027, 3, 31, 23, 59, tzinfo=UTC)
    job = Job("daily", "0 2 * * *", daily, run_key=lambda now: now.date().isoformat())
    scheduler = Scheduler(db, NO_SERVICES, [job], clock=lambda: at)
    result = await scheduler.run_now("daily")
    assert (result.outcome, result.run_key, seen) == (Outcome.SUCCEEDED, "2027-03-31", [at])
