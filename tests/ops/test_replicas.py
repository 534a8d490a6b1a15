"""A settings change made through one server is seen by another server process on the same
database within its SMARTSTART_SETTINGS_TTL_S; that process (two workers, as production runs
`smartstart serve`) also exports its metrics in multiprocess mode."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from smartstart.ops.v1 import ops_service_pb2 as pb
from smartstart.ops.v1 import ops_service_pb2_grpc as pb_grpc
from smartstart.profile.v1 import profile_service_pb2 as profile_pb
from smartstart.profile.v1 import profile_service_pb2_grpc as profile_grpc

from server.app import RunningServer
from server.interceptors.tokens import HS256, mint_token
from tests.fixtures_server import MintToken, free_port, wait_all_serving
from tests.ops.support import Callers, callers, register_user, update
from tests.ops.test_metrics import parse, scrape_text, value

SMARTSTART = Path(sys.executable).parent / "smartstart"
SECRET = "smartstart-replica-test-only-0123456789abcdef"
TTL_S = 1.0


@pytest.fixture
async def second_process(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """`smartstart serve` with two workers on the test database: (gRPC address, metrics URL)."""
    addr = f"127.0.0.1:{free_port()}"
    metrics = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SMARTSTART_GRPC_ADDR": addr,
        "SMARTSTART_METRICS_ADDR": metrics,
        "SMARTSTART_WORKERS": "2",
        "SMARTSTART_JWT_DEV_SECRET": SECRET,
        "SMARTSTART_SETTINGS_TTL_S": str(TTL_S),
        "SMARTSTART_JOBS_ENABLED": "false",
        "SMARTSTART_SHUTDOWN_GRACE_S": "1",
        "SMARTSTART_LOG_LEVEL": "warning",
        "SMARTSTART_DATA_DIR": str(tmp_path / "data"),
    }
    log = tmp_path / "second.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(SMARTSTART), "serve", env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
        try:
            await wait_all_serving(addr, proc)
            yield addr, f"http://{metrics}/metrics"
        finally:
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 60)
    assert proc.returncode == 0, log.read_text()[-2000:]


def admin_of_second() -> tuple[tuple[str, str], ...]:
    token = mint_token(
        sub="00000000-0000-0000-0000-0000000000ad",
        roles=["admin"],
        ttl_s=3600,
        key=SECRET,
        algorithm=HS256,
    )
    return (("authorization", f"Bearer {token}"),)


async def compliant(stub: profile_grpc.ProfileServiceStub, user_id: str, metadata: object) -> bool:
    posture = await stub.GetDevicePosture(
        profile_pb.GetDevicePostureRequest(user_id=user_id), metadata=metadata
    )
    return bool(posture.device_compliant)


@pytest.mark.slow
async def test_a_second_process_sees_a_settings_update_within_its_ttl(
    grpc_server: RunningServer, second_process: tuple[str, str], mint_token: MintToken
) -> None:
    addr, metrics_url = second_process
    who: Callers = callers(mint_token)
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}") as first,
        grpc.aio.insecure_channel(addr) as second,
    ):
        user_id = await register_user(first, who.system, "replica")
        at = Timestamp()
        at.FromDatetime(datetime.now(UTC) - timedelta(hours=3))
        await profile_grpc.ProfileServiceStub(first).ReportDevicePosture(
            profile_pb.ReportDevicePostureRequest(
                request_id="p-1", user_id=user_id, compliant=True, reported_at=at
            ),
            metadata=who.system,
        )
        other = profile_grpc.ProfileServiceStub(second)
        admin = admin_of_second()
        # The second process has the 72 h window cached.
        for _ in range(4):
            assert await compliant(other, user_id, admin)

        await pb_grpc.OpsServiceStub(first).UpdateSetting(
            update("device.max_report_age_hours", 2), metadata=who.admin
        )
        # The second process reads the row anew within its TTL (1 s here): poll for at most
        # 30 TTLs, then every answer must have the new window.
        seen_after = None
        for attempt in range(300):
            if not await compliant(other, user_id, admin):
                seen_after = attempt
                break
            await asyncio.sleep(TTL_S / 10)
        assert seen_after is not None, "the second process never saw the new value"
        await asyncio.sleep(TTL_S * 1.5)
        for _ in range(4):
            assert not await compliant(other, user_id, admin)
        setting = await pb_grpc.OpsServiceStub(second).GetSetting(
            pb.GetSettingRequest(key="device.max_report_age_hours"), metadata=admin
        )
        assert setting.value.number_value == 2

    # The supervisor exports the workers' sum: the calls above are counted, gauges included.
    body = await asyncio.to_thread(scrape_text, metrics_url)
    samples = parse(body)
    method = "/smartstart.profile.v1.ProfileService/GetDevicePosture"
    assert value(samples, "smartstart_rpc_total", method=method, code="OK") >= 9
    assert ("smartstart_rpc_in_flight", (("method", method),)) in samples
    assert value(samples, "smartstart_db_pool_capacity") == 2 * 30  # two workers, 20 + 10 each
    assert "smartstart_integrity_open_incidents" in body
