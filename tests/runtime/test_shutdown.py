"""`smartstart serve` as a real process: SIGTERM drains in-flight calls and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import asyncpg
import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from smartstart.profile.v1 import profile_service_pb2 as profile_pb
from smartstart.profile.v1 import profile_service_pb2_grpc as profile_grpc

from server.core import idempotency
from server.db.embedded import plain_dsn
from tests.fixtures_server import MintToken, free_port

SMARTSTART = Path(sys.executable).with_name("smartstart")
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


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


@pytest.mark.slow
async def test_sigterm_lets_a_blocked_unary_call_finish_and_refuses_new_ones(
    database_url: str, jwt_public_key_file: Path, tmp_path: Path, mint_token: MintToken
) -> None:
    """A RegisterUser call is held in flight by a row lock the test owns (a concurrent claim
    of the same idempotency key), SIGTERM arrives, the lock is released inside the grace
    period: the call completes OK, its user exists, and the process exits 0."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SMARTSTART_GRPC_ADDR": f"127.0.0.1:{port}",
        "SMARTSTART_JWT_PUBLIC_KEY_FILE": str(jwt_public_key_file),
        "SMARTSTART_JOBS_ENABLED": "false",
        "SMARTSTART_SHUTDOWN_GRACE_S": "10",
        "SMARTSTART_DATA_DIR": str(tmp_path),
    }
    system_id = "00000000-0000-0000-0000-000000000001"
    scope = idempotency.scope_for("smartstart.profile.v1.ProfileService/RegisterUser", system_id)
    metadata = (("authorization", f"Bearer {mint_token(system_id, roles=('system',))}"),)
    request = profile_pb.RegisterUserRequest(
        request_id="held", external_id="held-user", email="held@example.com", display_name="H"
    )
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            str(SMARTSTART), "serve", env=env, stdout=log, stderr=log
        )
    blocker = await asyncpg.connect(plain_dsn(database_url))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving(channel, proc)
            stub = profile_grpc.ProfileServiceStub(channel)
            holding = blocker.transaction()
            await holding.start()
            await blocker.execute(
                "INSERT INTO idempotency_records (scope, key, fingerprint) VALUES ($1, $2, 'x')",
                scope,
                "held",
            )
            call = asyncio.ensure_future(stub.RegisterUser(request, metadata=metadata))
            await wait_for_lock_waiter(blocker)

            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)  # the server is draining now
            assert not call.done()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as late:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await profile_grpc.ProfileServiceStub(late).GetProfile(
                        profile_pb.GetProfileRequest(user_id="me"), timeout=3
                    )
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            await holding.rollback()  # the held call may proceed

            user = await asyncio.wait_for(call, timeout=10)
            assert user.external_id == "held-user"
        exit_code = await asyncio.wait_for(proc.wait(), timeout=30)
        found = await blocker.fetchval("SELECT count(*) FROM users WHERE external_id = 'held-user'")
    finally:
        await blocker.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert exit_code == 0, log_path.read_text()
    assert found == 1


async def wait_for_lock_waiter(conn: asyncpg.Connection) -> None:
    """Until some other backend waits on a lock (the RPC's claim behind our row)."""
    for _ in range(100):
        # Statistics views are a snapshot per transaction, and `conn` is in one.
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND pid <> pg_backend_pid()"
        )
        if waiting:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the RPC never blocked on the held key")
