"""OpsService.GetSystemStatus through gRPC: what an operator checks first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from smartstart.ops.v1 import ops_service_pb2 as pb
from smartstart.ops.v1 import ops_service_pb2_grpc as pb_grpc
from sqlalchemy import text

from server.app import RunningServer
from server.db.session import Database
from server.services import jobs
from tests.fixtures_server import MintToken, ServerFactory
from tests.ops.support import Callers, JobBodies, callers, expect_error, with_test_jobs

STATUS = pb.GetSystemStatusRequest()


@pytest.fixture
def who(mint_token: MintToken) -> Callers:
    return callers(mint_token)


async def stub_of(server: RunningServer) -> AsyncIterator[pb_grpc.OpsServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.OpsServiceStub(channel)


@pytest.fixture
async def ops(grpc_server: RunningServer) -> AsyncIterator[pb_grpc.OpsServiceStub]:
    async for stub in stub_of(grpc_server):
        yield stub


async def test_the_status_names_the_jobs_without_a_body(
    ops: pb_grpc.OpsServiceStub, who: Callers
) -> None:
    status = await ops.GetSystemStatus(STATUS, metadata=who.admin)
    assert status.database.healthy and status.blob_store.healthy
    assert status.instance and status.version and status.HasField("checked_at")
    assert [j.name for j in status.jobs] == [
        "badge_evaluation",
        "conversion_windows",
        "daily_maintenance",
        "worm_maintenance",
    ]
    assert status.healthy is False
    # Every job without its body is named; the ones with a body have not failed.
    assert sorted(status.problems) == sorted(
        f"job {job.name}: not implemented" for job in jobs() if job.body is None
    )
    assert any(job.body is None for job in jobs())
    integrity = status.integrity
    assert integrity.healthy and integrity.open_incidents == 0
    assert not integrity.HasField("last_verification")
    assert not integrity.HasField("last_checkpoint_at")
    await expect_error(
        ops.GetSystemStatus(STATUS, metadata=who.user),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    await expect_error(
        ops.GetSystemStatus(STATUS), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"
    )


async def test_open_incidents_and_a_failed_job_show(
    monkeypatch: pytest.MonkeyPatch, server_factory: ServerFactory, who: Callers, db: Database
) -> None:
    server = await with_test_jobs(monkeypatch, server_factory, JobBodies())()
    async for ops in stub_of(server):
        await ops.RunJob(
            pb.RunJobRequest(request_id="w", name="conversion_windows"), metadata=who.admin
        )
        # What a verification that found a break records (the WORM job lands later).
        async with db.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO integrity_incidents (chain_kind, chain_id, seq, kind, detail)"
                    " VALUES ('AUDIT', 'audit:03', 7, 'CHANGED', 'hash mismatch')"
                )
            )
        status = await ops.GetSystemStatus(STATUS, metadata=who.system)
    assert status.healthy is False
    assert status.integrity.open_incidents == 1 and not status.integrity.healthy
    assert status.integrity.HasField("oldest_open_incident_at")
    assert "integrity: 1 open incident(s)" in status.problems
    assert any(p.startswith("job conversion_windows: last run failed") for p in status.problems)
    assert "job worm_maintenance: not implemented" in status.problems
    jobs = {j.name: j for j in status.jobs}
    assert jobs["badge_evaluation"].healthy and not jobs["conversion_windows"].healthy


async def test_a_blob_store_that_cannot_be_created_is_unhealthy(
    server_factory: ServerFactory, who: Callers, tmp_path: Path
) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    server = await server_factory(blob_dir=taken)
    async for ops in stub_of(server):
        status = await ops.GetSystemStatus(STATUS, metadata=who.admin)
    assert not status.blob_store.healthy and "is not a folder" in status.blob_store.detail
    assert status.database.healthy
    assert any(p.startswith("blob store: ") for p in status.problems)
