"""OpsService jobs through gRPC: job health, manual runs (waiting for the job's lock, never
twice for a day), the run history, and every refusal with its status and reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from smartstart.ops.v1 import ops_service_pb2 as pb
from smartstart.ops.v1 import ops_service_pb2_grpc as pb_grpc
from sqlalchemy import text

from server.app import RunningServer
from server.db.session import Database
from server.jobs import Trigger
from server.jobs.registry import Outcome
from tests.fixtures_server import MintToken, ServerFactory, error_info
from tests.ops.support import ADMIN, Callers, JobBodies, callers, expect_error, with_test_jobs


@pytest.fixture
def bodies() -> JobBodies:
    return JobBodies()


@pytest.fixture
async def server(
    monkeypatch: pytest.MonkeyPatch, server_factory: ServerFactory, bodies: JobBodies
) -> RunningServer:
    return await with_test_jobs(monkeypatch, server_factory, bodies)()


@pytest.fixture
async def ops(server: RunningServer) -> AsyncIterator[pb_grpc.OpsServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.OpsServiceStub(channel)


@pytest.fixture
def who(mint_token: MintToken) -> Callers:
    return callers(mint_token)


def run(name: str, key: str, wait: bool = True) -> pb.RunJobRequest:
    return pb.RunJobRequest(request_id=key, name=name, wait=wait)


async def runs_of(db: Database, job: str) -> list[tuple[str, str]]:
    async with db.transaction() as session:
        rows = await session.execute(
            text("SELECT trigger, outcome FROM job_runs WHERE job = :job ORDER BY started_at"),
            {"job": job},
        )
        return [(r.trigger, r.outcome) for r in rows]


async def test_list_jobs_shows_each_job_with_its_health(
    ops: pb_grpc.OpsServiceStub, who: Callers, bodies: JobBodies
) -> None:
    listed = await ops.ListJobs(pb.ListJobsRequest(), metadata=who.system)
    assert [j.name for j in listed.jobs] == [
        "badge_evaluation",
        "conversion_windows",
        "daily_maintenance",
        "worm_maintenance",
    ]
    jobs = {j.name: j for j in listed.jobs}
    assert jobs["daily_maintenance"].schedule == "0 2 * * *"
    assert jobs["worm_maintenance"].implemented is False
    assert jobs["worm_maintenance"].healthy is False
    assert jobs["badge_evaluation"].implemented and jobs["badge_evaluation"].healthy
    # The test server runs no scheduler (SMARTSTART_JOBS_ENABLED=false): no next run.
    assert not jobs["badge_evaluation"].scheduler_running
    assert not jobs["badge_evaluation"].HasField("next_run_at")
    assert not jobs["badge_evaluation"].HasField("last_run")

    first = await ops.ListJobs(pb.ListJobsRequest(page_size=3), metadata=who.admin)
    assert len(first.jobs) == 3 and first.next_page_token
    rest = await ops.ListJobs(
        pb.ListJobsRequest(page_size=3, page_token=first.next_page_token), metadata=who.admin
    )
    assert [j.name for j in rest.jobs] == ["worm_maintenance"] and not rest.next_page_token


async def test_a_failed_run_makes_the_job_unhealthy_and_a_success_healthy(
    ops: pb_grpc.OpsServiceStub, who: Callers
) -> None:
    failed = await ops.RunJob(run("conversion_windows", "r-fail"), metadata=who.admin)
    assert failed.outcome == pb.JOB_RUN_OUTCOME_FAILED
    assert "window table unreachable" in failed.error
    assert failed.trigger == pb.JOB_TRIGGER_MANUAL and failed.triggered_by == ADMIN
    health = await ops.GetJobHealth(
        pb.GetJobHealthRequest(name="conversion_windows"), metadata=who.admin
    )
    assert health.healthy is False
    assert health.last_run.run_id == failed.run_id
    assert not health.HasField("last_success_at")

    ok = await ops.RunJob(run("badge_evaluation", "r-ok"), metadata=who.system)
    assert ok.outcome == pb.JOB_RUN_OUTCOME_SUCCEEDED and ok.counts == {"badges_awarded": 1}
    assert ok.HasField("finished_at") and ok.instance
    health = await ops.GetJobHealth(
        pb.GetJobHealthRequest(name="badge_evaluation"), metadata=who.admin
    )
    assert health.healthy and health.last_success_at == ok.finished_at
    assert health.running is False


async def test_run_job_without_wait_answers_running_and_the_run_goes_on(
    ops: pb_grpc.OpsServiceStub, who: Callers, bodies: JobBodies, db: Database
) -> None:
    started = await ops.RunJob(run("daily_maintenance", "r-bg", wait=False), metadata=who.admin)
    assert started.outcome == pb.JOB_RUN_OUTCOME_RUNNING
    assert not started.HasField("finished_at") and started.run_key
    await bodies.started.wait()
    health = await ops.GetJobHealth(
        pb.GetJobHealthRequest(name="daily_maintenance"), metadata=who.admin
    )
    assert health.running is True and health.last_run.run_id == started.run_id

    # A retry with the same request id answers the same run, as it is now, without waiting.
    again = await ops.RunJob(run("daily_maintenance", "r-bg", wait=False), metadata=who.admin)
    assert (again.run_id, again.outcome) == (started.run_id, pb.JOB_RUN_OUTCOME_RUNNING)

    bodies.release.set()
    for _ in range(200):
        listed = await ops.ListJobRuns(
            pb.ListJobRunsRequest(job_name="daily_maintenance"), metadata=who.admin
        )
        if listed.runs[0].outcome != pb.JOB_RUN_OUTCOME_RUNNING:
            break
        await asyncio.sleep(0.05)
    assert listed.runs[0].outcome == pb.JOB_RUN_OUTCOME_SUCCEEDED
    assert await runs_of(db, "daily_maintenance") == [("MANUAL", "SUCCEEDED")]
    # The request is audited with the run it started.
    async with db.transaction() as session:
        events = (
            await session.execute(
                text(
                    "SELECT actor_id, details FROM audit_events"
                    " WHERE action = 'job.run_started' AND ref_id = 'daily_maintenance'"
                )
            )
        ).all()
    assert [(e.actor_id, e.details["run_id"]) for e in events] == [(ADMIN, started.run_id)]


async def test_a_manual_run_racing_the_scheduled_run_waits_and_the_day_runs_once(
    server: RunningServer,
    ops: pb_grpc.OpsServiceStub,
    who: Callers,
    bodies: JobBodies,
    db: Database,
) -> None:
    scheduler = server.services.scheduler
    scheduled = asyncio.create_task(scheduler.run_now("daily_maintenance", Trigger.SCHEDULE))
    await bodies.started.wait()

    manual = asyncio.ensure_future(
        ops.RunJob(run("daily_maintenance", "r-race"), metadata=who.admin)
    )
    # It waits for the job's lock while the scheduled run holds it.
    health = await ops.GetJobHealth(
        pb.GetJobHealthRequest(name="daily_maintenance"), metadata=who.admin
    )
    assert health.running and not manual.done()

    bodies.release.set()
    assert (await scheduled).outcome is Outcome.SUCCEEDED
    answer = await manual
    assert answer.outcome == pb.JOB_RUN_OUTCOME_SKIPPED
    assert answer.error.startswith("already succeeded for ") and answer.run_key
    assert len(bodies.daily_calls) == 1
    assert await runs_of(db, "daily_maintenance") == [
        ("SCHEDULE", "SUCCEEDED"),
        ("MANUAL", "SKIPPED"),
    ]


async def test_a_scheduled_tick_during_a_manual_run_records_nothing(
    server: RunningServer,
    ops: pb_grpc.OpsServiceStub,
    who: Callers,
    bodies: JobBodies,
    db: Database,
) -> None:
    manual = await ops.RunJob(run("daily_maintenance", "r-first", wait=False), metadata=who.admin)
    await bodies.started.wait()
    tick = await server.services.scheduler.run_now("daily_maintenance", Trigger.SCHEDULE)
    assert (tick.outcome, tick.run_id) == (Outcome.SKIPPED, None)
    bodies.release.set()
    await server.services.scheduler.stop()  # lets the manual run finish
    assert len(bodies.daily_calls) == 1
    assert await runs_of(db, "daily_maintenance") == [("MANUAL", "SUCCEEDED")]
    assert manual.trigger == pb.JOB_TRIGGER_MANUAL


async def test_concurrent_manual_runs_never_overlap(
    ops: pb_grpc.OpsServiceStub, who: Callers, bodies: JobBodies, db: Database
) -> None:
    answers = await asyncio.gather(
        *(ops.RunJob(run("badge_evaluation", f"r-{n}"), metadata=who.admin) for n in range(6))
    )
    assert {a.outcome for a in answers} == {pb.JOB_RUN_OUTCOME_SUCCEEDED}
    assert len({a.run_id for a in answers}) == 6
    assert bodies.most_active == 1 and bodies.badge_calls == 6
    assert sorted(a.counts["badges_awarded"] for a in answers) == [1, 2, 3, 4, 5, 6]
    assert await runs_of(db, "badge_evaluation") == [("MANUAL", "SUCCEEDED")] * 6


async def test_a_run_still_in_progress_at_the_deadline_is_failed_precondition(
    ops: pb_grpc.OpsServiceStub, who: Callers, bodies: JobBodies, db: Database
) -> None:
    first = await ops.RunJob(run("daily_maintenance", "r-long", wait=False), metadata=who.admin)
    await bodies.started.wait()
    err = await expect_error(
        ops.RunJob(run("daily_maintenance", "r-impatient"), metadata=who.admin, timeout=1.5),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVALID_STATE",
    )
    info = error_info(err)
    assert info is not None and info.metadata["run_id"] == first.run_id
    bodies.release.set()
    # Nothing was recorded for the refused call, so its retry runs (and finds the day done).
    retry = await ops.RunJob(run("daily_maintenance", "r-impatient"), metadata=who.admin)
    assert retry.outcome == pb.JOB_RUN_OUTCOME_SKIPPED
    assert await runs_of(db, "daily_maintenance") == [
        ("MANUAL", "SUCCEEDED"),
        ("MANUAL", "SKIPPED"),
    ]


async def test_run_job_refusals(ops: pb_grpc.OpsServiceStub, who: Callers) -> None:
    await expect_error(
        ops.RunJob(run("nope", "r-1"), metadata=who.admin), grpc.StatusCode.NOT_FOUND, "NOT_FOUND"
    )
    err = await expect_error(
        ops.RunJob(run("worm_maintenance", "r-2"), metadata=who.admin),
        grpc.StatusCode.UNIMPLEMENTED,
        "NOT_IMPLEMENTED",
    )
    info = error_info(err)
    assert info is not None and info.metadata["job"] == "worm_maintenance"
    await expect_error(
        ops.RunJob(run("badge_evaluation", ""), metadata=who.admin),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    await expect_error(
        ops.RunJob(run("badge_evaluation", "r-3"), metadata=who.user),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    await expect_error(
        ops.RunJob(run("badge_evaluation", "r-4")),
        grpc.StatusCode.UNAUTHENTICATED,
        "UNAUTHENTICATED",
    )
    await ops.RunJob(run("badge_evaluation", "r-5"), metadata=who.admin)
    await expect_error(
        ops.RunJob(run("badge_evaluation", "r-5", wait=False), metadata=who.admin),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )
    await expect_error(
        ops.GetJobHealth(pb.GetJobHealthRequest(name="nope"), metadata=who.admin),
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
    )


async def test_list_job_runs_filters_and_pages(ops: pb_grpc.OpsServiceStub, who: Callers) -> None:
    for n in range(3):
        await ops.RunJob(run("badge_evaluation", f"b-{n}"), metadata=who.admin)
    await ops.RunJob(run("conversion_windows", "w-1"), metadata=who.admin)

    everything = await ops.ListJobRuns(pb.ListJobRunsRequest(), metadata=who.system)
    assert [r.job_name for r in everything.runs][:1] == ["conversion_windows"]  # newest first
    assert len(everything.runs) == 4
    starts = [r.started_at.ToDatetime() for r in everything.runs]
    assert starts == sorted(starts, reverse=True)

    failed = await ops.ListJobRuns(
        pb.ListJobRunsRequest(outcome=pb.JOB_RUN_OUTCOME_FAILED), metadata=who.admin
    )
    assert [r.job_name for r in failed.runs] == ["conversion_windows"]

    pages: list[str] = []
    token = ""
    while True:
        page = await ops.ListJobRuns(
            pb.ListJobRunsRequest(job_name="badge_evaluation", page_size=2, page_token=token),
            metadata=who.admin,
        )
        pages.extend(r.run_id for r in page.runs)
        token = page.next_page_token
        if not token:
            break
    assert len(pages) == 3 and len(set(pages)) == 3

    later = Timestamp()
    later.FromDatetime(starts[0])
    after = await ops.ListJobRuns(pb.ListJobRunsRequest(start_time=later), metadata=who.admin)
    assert [r.run_id for r in after.runs] == [everything.runs[0].run_id]

    first = await ops.ListJobRuns(pb.ListJobRunsRequest(page_size=1), metadata=who.admin)
    await expect_error(
        ops.ListJobRuns(
            pb.ListJobRunsRequest(page_size=1, page_token=first.next_page_token, job_name="x"),
            metadata=who.admin,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    earlier = Timestamp(seconds=later.seconds - 60)
    await expect_error(
        ops.ListJobRuns(
            pb.ListJobRunsRequest(start_time=later, end_time=earlier), metadata=who.admin
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    await expect_error(
        ops.ListJobRuns(pb.ListJobRunsRequest(outcome=99), metadata=who.admin),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    await expect_error(
        ops.ListJobRuns(pb.ListJobRunsRequest(), metadata=who.user),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
