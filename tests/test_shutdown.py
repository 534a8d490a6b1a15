"""`smartstart serve` as a real process: SIGTERM drains in-flight calls and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

SMARTSTART = Path(sys.executable).with_name("smartstart")
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_serving(channel: grpc.aio.Channel, proc: asyncio.subprocess.Process) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.returncode is None, "server exited during start-up"
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("server did not start")


@pytest.mark.slow
async def test_sigterm_drains_in_flight_calls_and_exits_zero(
    database_url: str, jwt_public_key_file: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SMARTSTART_GRPC_ADDR": f"127.0.0.1:{port}",
        "SMARTSTART_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        "SMARTSTART_JWT_PUBLIC_KEY_FILE": str(jwt_public_key_file),
        "SMARTSTART_JOBS_ENABLED": "true",
        "SMARTSTART_SHUTDOWN_GRACE_S": "3",
        "SMARTSTART_DATA_DIR": str(tmp_path),
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            str(SMARTSTART), "serve", env=env, stdout=log, stderr=log
        )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving(channel, proc)

            # Two calls in flight when the signal arrives: a health watch and a reflection
            # conversation that keeps going during the grace period.
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            assert (await watch.read()).status == SERVING
            talk = channel.stream_stream(
                REFLECTION,
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )()
            await talk.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            assert (await talk.read()).list_services_response.service

            proc.send_signal(signal.SIGTERM)

            # Health flips first, so balancers stop routing here ...
            update = await asyncio.wait_for(watch.read(), timeout=10)
            assert update.status == NOT_SERVING
            # ... while the call in flight is still served to its end.
            await talk.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            reply = await asyncio.wait_for(talk.read(), timeout=10)
            assert reply.list_services_response.service
            await talk.done_writing()
            assert await talk.read() is grpc.aio.EOF
            assert await talk.code() == grpc.StatusCode.OK

        exit_code = await asyncio.wait_for(proc.wait(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = log_path.read_text()
    assert exit_code == 0, output
    assert '"event": "server stopped"' in output
    assert '"event": "scheduler stopped"' in output
