"""The Prometheus endpoint after real calls: call counts by method and code, latency, calls
in flight, job runs and durations, integrity, pool use and batch sizes."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from smartstart.ops.v1 import ops_service_pb2 as pb
from smartstart.ops.v1 import ops_service_pb2_grpc as pb_grpc
from smartstart.profile.v1 import profile_service_pb2 as profile_pb
from smartstart.profile.v1 import profile_service_pb2_grpc as profile_grpc
from sqlalchemy import text

from server.app import RunningServer, start_metrics_exporter
from tests.fixtures_server import MintToken, ServerFactory, free_port
from tests.ops.support import Callers, JobBodies, callers, register_user, with_test_jobs

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
OPS = "/smartstart.ops.v1.OpsService"


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our loopback exporter
        body: bytes = response.read()
    return body.decode()


def parse(body: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def exporter() -> Iterator[str]:
    port = free_port()
    httpd = start_metrics_exporter(f"127.0.0.1:{port}")
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        httpd.shutdown()


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch, server_factory: ServerFactory) -> RunningServer:
    return await with_test_jobs(monkeypatch, server_factory, JobBodies())()


@pytest.fixture
async def channel_(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


async def test_pool_use_counts_connections_checked_out(
    exporter: str, server: RunningServer
) -> None:
    checked_out = "smartstart_db_pool_checked_out"
    # The server's first integrity refresh holds a connection just after its start.
    await server.services.ops.gauges_refreshed.wait()
    idle = parse(await asyncio.to_thread(scrape_text, exporter))
    async with server.services.deps.database.transaction() as session:
        await session.execute(text("SELECT 1"))
        busy = parse(await asyncio.to_thread(scrape_text, exporter))
    again = parse(await asyncio.to_thread(scrape_text, exporter))
    assert value(busy, checked_out) == value(idle, checked_out) + 1
    assert value(again, checked_out) == value(idle, checked_out)


async def test_the_endpoint_counts_the_calls_just_made(
    exporter: str, channel_: grpc.aio.Channel, mint_token: MintToken
) -> None:
    who: Callers = callers(mint_token)
    ops = pb_grpc.OpsServiceStub(channel_)
    profiles = profile_grpc.ProfileServiceStub(channel_)
    user_id = await register_user(channel_, who.system, "metered")
    before = parse(await asyncio.to_thread(scrape_text, exporter))

    for _ in range(3):
        await ops.ListJobs(pb.ListJobsRequest(), metadata=who.admin)
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError):
            await ops.GetSetting(pb.GetSettingRequest(key="nope"), metadata=who.admin)
    await ops.RunJob(
        pb.RunJobRequest(request_id="m-1", name="badge_evaluation", wait=True), metadata=who.admin
    )
    await profiles.GetProfile(profile_pb.GetProfileRequest(user_id=user_id))
    await ops.GetSystemStatus(pb.GetSystemStatusRequest(), metadata=who.admin)

    body = await asyncio.to_thread(scrape_text, exporter)
    after = parse(body)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("smartstart_rpc_total", method=f"{OPS}/ListJobs", code="OK") == 3
    assert delta("smartstart_rpc_total", method=f"{OPS}/GetSetting", code="NOT_FOUND") == 2
    assert delta("smartstart_rpc_duration_seconds_count", method=f"{OPS}/ListJobs") == 3
    assert delta("smartstart_rpc_duration_seconds_bucket", method=f"{OPS}/ListJobs", le="+Inf") == 3
    # Nothing in flight once the calls have ended (the gauge went up and down per call).
    assert value(after, "smartstart_rpc_in_flight", method=f"{OPS}/ListJobs") == 0
    assert ("smartstart_rpc_in_flight", (("method", f"{OPS}/ListJobs"),)) in after
    assert delta("smartstart_job_runs_total", job="badge_evaluation", outcome="SUCCEEDED") == 1
    assert delta("smartstart_job_duration_seconds_count", job="badge_evaluation") == 1
    assert delta("smartstart_batch_size_count", use_case="get_profile") == 1
    assert value(after, "smartstart_db_pool_capacity") >= 10  # this server's pool: 5 + 5
    assert value(after, "smartstart_integrity_open_incidents") == 0
    assert value(after, "smartstart_integrity_verification_ok") == -1  # never verified yet
    assert "smartstart_integrity_last_checkpoint_timestamp_seconds" in body
