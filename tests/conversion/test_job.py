"""The conversion_windows job with an injected clock: transitions by time and the next
quarter's window, each exactly once across reruns, replicas and racing runs; a failed run is
recorded and the next one completes the work."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from smartstart.conversion.v1 import conversion_service_pb2 as pb
from sqlalchemy import text

from server.app import RunningServer
from server.core.context import SYSTEM_CONTEXT, RequestContext
from server.db.session import Database
from server.jobs.registry import JobContext, Outcome, Trigger
from server.services import CONVERSION_WINDOWS
from tests.conversion.support import Api, Clock, scalar, ts
from tests.fixtures_server import ServerFactory

JOB = "job:conversion_windows"
NOTHING = {"opened": 0, "closed": 0, "scheduled": 0, "failed": 0}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def clock() -> Clock:
    return Clock(utc(2026, 12, 31, 23, 50))


async def _windows(db: Database) -> dict[str, tuple[str, str, int, str]]:
    """label → (status, created_by, rate, opens_at) of every window."""
    async with db.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT label, status, created_by, equity_rate_bps, opens_at"
                " FROM conversion_windows"
            )
        )
        return {
            r.label: (r.status, r.created_by, r.equity_rate_bps, r.opens_at.isoformat())
            for r in rows
        }


async def _history(db: Database) -> dict[str, list[str]]:
    """label → the window's audit actions, in order."""
    async with db.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT w.label, a.action FROM audit_events a"
                " JOIN conversion_windows w ON a.ref_id = w.id::text"
                " WHERE a.scope = 'conversion_window' ORDER BY a.id"
            )
        )
        history: dict[str, list[str]] = {}
        for row in rows:
            history.setdefault(row.label, []).append(row.action.removeprefix("conversion_window."))
        return history


async def _run(running: RunningServer) -> dict[str, int]:
    result = await running.services.scheduler.run_now(CONVERSION_WINDOWS)
    assert result.outcome is Outcome.SUCCEEDED, result.error
    return result.counts


async def test_the_job_across_a_quarter_boundary(
    db: Database, api: Api, clock: Clock, running: RunningServer
) -> None:
    # a board window the job will only see after it ended: straight to CLOSED
    await api.conv.CreateWindow(
        pb.CreateWindowRequest(
            label="short",
            opens_at=ts(utc(2026, 12, 31, 23, 55)),
            closes_at=ts(utc(2027, 1, 1, 0, 2)),
            request_id="short",
        ),
        metadata=api.board,
    )
    assert await _run(running) == {**NOTHING, "scheduled": 1}
    assert await _run(running) == NOTHING
    windows = await _windows(db)
    assert windows["2027-Q1"] == ("SCHEDULED", JOB, 100, "2027-01-01T00:00:00+00:00")

    clock.now = utc(2027, 1, 1, 0, 5)
    assert await _run(running) == {**NOTHING, "opened": 1, "closed": 1, "scheduled": 1}
    assert await _run(running) == NOTHING
    active = await api.conv.GetActiveWindows(pb.GetActiveWindowsRequest(), metadata=api.board)
    assert [w.label for w in active.windows] == ["2027-Q1"]
    q1 = active.windows[0]
    assert (q1.opens_at.ToDatetime(tzinfo=UTC), q1.closes_at.ToDatetime(tzinfo=UTC)) == (
        utc(2027, 1, 1),
        utc(2027, 4, 1),
    )

    clock.now = utc(2027, 3, 31, 23, 59, 59)  # Q1's last second: nothing moves yet
    assert await _run(running) == NOTHING
    clock.now = utc(2027, 4, 1)  # closes_at is exclusive: Q1 closes as Q2 opens
    assert await _run(running) == {**NOTHING, "opened": 1, "closed": 1, "scheduled": 1}
    assert await _run(running) == NOTHING

    windows = await _windows(db)
    assert {label: w[0] for label, w in windows.items()} == {
        "short": "CLOSED",
        "2027-Q1": "CLOSED",
        "2027-Q2": "OPEN",
        "2027-Q3": "SCHEDULED",
    }
    assert await _history(db) == {
        "short": ["created", "closed"],
        "2027-Q1": ["created", "opened", "closed"],
        "2027-Q2": ["created", "opened"],
        "2027-Q3": ["created"],
    }
    runs = await scalar(
        db,
        "SELECT count(*) FROM job_runs WHERE job = 'conversion_windows' AND outcome = 'SUCCEEDED'",
    )
    assert runs == 7


def _job(running: RunningServer, now: datetime) -> JobContext[Any]:
    return JobContext(
        services=running.services,
        job=CONVERSION_WINDOWS,
        trigger=Trigger.MANUAL,
        run_key=None,
        now=now,
        request=RequestContext(
            request_id=f"test-{uuid.uuid4()}", principal=SYSTEM_CONTEXT.principal
        ),
    )


async def test_two_processes_at_once_move_each_window_once(
    db: Database, server_factory: ServerFactory, clock: Clock, running: RunningServer, api: Api
) -> None:
    other = await server_factory(clock=clock)  # a second replica on the same database
    for minutes in (5, 6, 7):
        await api.conv.CreateWindow(
            pb.CreateWindowRequest(
                label=f"w{minutes}",
                opens_at=ts(utc(2027, 1, 1, 0, minutes)),
                closes_at=ts(utc(2027, 1, 2)),
                request_id=f"w{minutes}",
            ),
            metadata=api.board,
        )
    clock.now = utc(2027, 1, 1, 0, 10)
    # through the scheduler: the advisory lock lets one of them run at a time
    results = await asyncio.gather(
        *(
            r.services.scheduler.run_now(CONVERSION_WINDOWS)
            for r in (running, other)
            for _ in range(3)
        )
    )
    assert {r.outcome for r in results} <= {Outcome.SUCCEEDED, Outcome.SKIPPED}
    assert Outcome.SUCCEEDED in {r.outcome for r in results}
    assert sum(r.counts.get("opened", 0) for r in results) == 3
    assert sum(r.counts.get("scheduled", 0) for r in results) == 1

    # and without the lock, straight into the use case: the SQL alone keeps it once
    clock.now = utc(2027, 4, 1)
    counts = await asyncio.gather(
        *(
            r.services.conversion.run_windows_job(_job(r, clock.now))
            for r in (running, other)
            for _ in range(4)
        )
    )
    assert sum(c["closed"] for c in counts) == 3  # the three board windows
    assert sum(c["opened"] for c in counts) == 1  # Q2, scheduled at 2027-01-01T00:10
    assert sum(c["scheduled"] for c in counts) == 1  # Q3
    history = await _history(db)
    assert history["2027-Q2"] == ["created", "opened"]
    assert history["2027-Q3"] == ["created"]
    for label in ("w5", "w6", "w7"):
        assert history[label] == ["created", "opened", "closed"]
    assert (
        await scalar(db, "SELECT count(*) FROM conversion_windows WHERE created_by = :j", j=JOB)
        == 2
    )


async def test_a_failed_run_is_recorded_and_the_next_completes(
    db: Database, api: Api, clock: Clock, running: RunningServer
) -> None:
    made = {}
    for label in ("stuck", "fine"):
        made[label] = await api.conv.CreateWindow(
            pb.CreateWindowRequest(
                label=label,
                opens_at=ts(clock.now + timedelta(minutes=1)),
                closes_at=ts(clock.now + timedelta(days=1)),
                request_id=label,
            ),
            metadata=api.board,
        )
    # the database refuses to move one window (as a lost connection or a full disk would)
    async with db.transaction() as session:
        await session.execute(
            text(
                "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN RAISE EXCEPTION 'injected failure'; END $$"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER test_refuse BEFORE UPDATE ON conversion_windows FOR EACH ROW"
                f" WHEN (OLD.id = '{made['stuck'].id}') EXECUTE FUNCTION test_refuse()"
            )
        )
    clock.move(minutes=10)
    failed = await running.services.scheduler.run_now(CONVERSION_WINDOWS)
    assert failed.outcome is Outcome.FAILED
    assert failed.error is not None and "1 window transitions failed" in failed.error
    stored = await scalar(db, "SELECT outcome FROM job_runs WHERE id = :r", r=failed.run_id)
    assert stored == "FAILED"
    windows = await _windows(db)
    assert (windows["stuck"][0], windows["fine"][0]) == ("SCHEDULED", "OPEN")
    assert windows["2027-Q2"][0] == "SCHEDULED"  # the rest of the work was done

    async with db.transaction() as session:
        await session.execute(text("DROP TRIGGER test_refuse ON conversion_windows"))
    assert await _run(running) == {**NOTHING, "opened": 1}
    assert (await _windows(db))["stuck"][0] == "OPEN"
    assert (await _history(db))["stuck"] == ["created", "opened"]
