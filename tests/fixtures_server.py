"""In-process server fixtures (a pytest plugin, listed in tests/conftest.py).

An ES256 key pair per session signs test tokens; `settings` points the server at its public
key. `grpc_server` runs the real server (all interceptors) on 127.0.0.1:0 against a fresh
migrated database; `channel` talks to it; `mint_token` makes valid, expired (ttl < 0) and
wrongly signed (key=foreign_key) tokens; `server_factory` starts extra servers with other
settings or extra servicers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import grpc
import grpc.aio
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.app import RunningServer, start_server
from server.config import Settings
from server.core.clock import Clock, system_clock
from server.db.session import Database
from server.interceptors.tokens import mint_token as _mint
from server.registry import Registrar, generated_services

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class MintToken(Protocol):
    def __call__(
        self,
        sub: str,
        roles: Iterable[str] = ("user",),
        ttl: int = 3600,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> str: ...


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture(scope="session")
def jwt_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def foreign_key() -> ec.EllipticCurvePrivateKey:
    """A key the server does not trust: tokens signed with it have a bad signature."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def jwt_public_key_file(
    jwt_private_key: ec.EllipticCurvePrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("jwt") / "public.pem"
    path.write_bytes(
        jwt_private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def settings(database_url: str, jwt_public_key_file: Path, tmp_path: Path) -> Settings:
    return Settings(
        grpc_addr="127.0.0.1:0",
        database_url=database_url,
        data_dir=tmp_path / "data",
        blob_dir=tmp_path / "blobs",
        db_pool_size=5,
        db_max_overflow=5,
        jwt_public_key_file=str(jwt_public_key_file),
        # Tests call many RPCs from one peer; the rate-limit test lowers these itself.
        rate_limit_anonymous=100_000,
        rate_limit_authenticated=100_000,
        shutdown_grace_s=1.0,
        jobs_enabled=False,
        log_json=True,
    )


@pytest.fixture
def mint_token(jwt_private_key: ec.EllipticCurvePrivateKey) -> MintToken:
    def mint(
        sub: str,
        roles: Iterable[str] = ("user",),
        ttl: int = 3600,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        return _mint(sub=sub, roles=roles, ttl_s=ttl, key=key or jwt_private_key, algorithm="ES256")

    return mint


@pytest.fixture
async def server_factory(settings: Settings) -> AsyncIterator[ServerFactory]:
    """`await server_factory(extra_registrars=[...], clock=..., **settings_overrides)`;
    stopped after. `clock` is the server's "now" (default: the system clock)."""
    started: list[tuple[RunningServer, Database]] = []

    async def start(
        extra_registrars: Sequence[Registrar] = (),
        clock: Clock = system_clock,
        **overrides: Any,
    ) -> RunningServer:
        s = dataclasses.replace(settings, **overrides)
        database = Database.from_url(
            s.database_url, pool_size=s.db_pool_size, max_overflow=s.db_max_overflow
        )
        running = await start_server(s, database, clock=clock, extra_registrars=extra_registrars)
        started.append((running, database))
        return running

    try:
        yield start
    finally:
        for running, database in reversed(started):
            await running.stop(0)
            await database.dispose()


@pytest.fixture
async def grpc_server(server_factory: ServerFactory) -> RunningServer:
    return await server_factory()


@pytest.fixture
async def channel(grpc_server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}") as ch:
        yield ch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `token`."""
    return (("authorization", f"Bearer {token}"),)


def rpc_status_of(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status an error carries in its trailers (empty Status if none)."""
    for key, value in err.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return status_pb2.Status()


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    for detail in rpc_status_of(err).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


STARTUP_TIMEOUT_S = 120  # a first start of the embedded PostgreSQL runs initdb and migrations


async def wait_all_serving(addr: str, proc: Any) -> None:
    """Until `smartstart serve` at `addr` reports SERVING for the server and every service
    (fails the test if the process `proc`, asyncio's or subprocess.Popen, exits first)."""
    names = ["", *(svc.full_name for svc in generated_services())]
    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
    async with grpc.aio.insecure_channel(addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.returncode is not None:
                err = await proc.stderr.read() if proc.stderr else b""
                pytest.fail(f"server exited {proc.returncode}: {err.decode()[-2000:]}")
            try:
                statuses = [
                    (await health.Check(health_pb2.HealthCheckRequest(service=n), timeout=2)).status
                    for n in names
                ]
                if all(s == health_pb2.HealthCheckResponse.SERVING for s in statuses):
                    return
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail("server did not report SERVING in time")
            await asyncio.sleep(0.25)
