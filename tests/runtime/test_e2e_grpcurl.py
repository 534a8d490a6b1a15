"""End to end: `smartstart serve` on the embedded PostgreSQL, driven by the real grpcurl.

No proto files are given to grpcurl: everything it knows comes from server reflection.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.registry import generated_services
from tests.fixtures_server import MintToken, free_port, wait_all_serving

GRPCURL = Path(sys.executable).parent / "grpcurl"
SMARTSTART = Path(sys.executable).parent / "smartstart"


@pytest.fixture
def server_log(tmp_path: Path) -> Path:
    return tmp_path / "server.log"


@pytest.fixture
async def embedded_server(
    tmp_path_factory: pytest.TempPathFactory, jwt_public_key_file: Path, server_log: Path
) -> AsyncIterator[str]:
    data_dir = tmp_path_factory.mktemp("embedded")
    os.chmod(data_dir, 0o755)  # the embedded PostgreSQL runs as its own system user when root
    addr = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        SMARTSTART_GRPC_ADDR=addr,
        SMARTSTART_DATA_DIR=str(data_dir),
        SMARTSTART_JWT_PUBLIC_KEY_FILE=str(jwt_public_key_file),
        SMARTSTART_JOBS_ENABLED="true",
        SMARTSTART_SHUTDOWN_GRACE_S="2",
        SMARTSTART_LOG_LEVEL="info",
    )
    log = server_log.open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(SMARTSTART),
        "serve",
        env=env,
        stdout=log,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_all_serving(addr, proc)
        yield addr
    finally:
        if proc.returncode is None:
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        from server.db.embedded import stop_embedded

        stop_embedded(data_dir)
        log.close()


async def grpcurl(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(GRPCURL), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.slow
async def test_grpcurl_lists_describes_and_calls_via_reflection(
    embedded_server: str, mint_token: MintToken, server_log: Path
) -> None:
    listed = set((await grpcurl("-plaintext", embedded_server, "list")).split())
    expected = {svc.full_name for svc in generated_services()}
    assert len(expected) == 6
    assert expected <= listed
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} & listed

    described = await grpcurl(
        "-plaintext", embedded_server, "describe", "smartstart.profile.v1.ProfileService"
    )
    assert "rpc RegisterUser" in described and "rpc GetProfile" in described

    system = mint_token(str(uuid.UUID(int=1)), roles=("system",))
    registered = json.loads(
        await grpcurl(
            "-plaintext",
            "-H",
            f"authorization: Bearer {system}",
            "-H",
            "x-request-id: e2e-request-1",
            "-d",
            json.dumps(
                {
                    "request_id": "e2e-1",
                    "external_id": "e2e-user",
                    "email": "e2e@example.com",
                    "display_name": "End To End",
                }
            ),
            embedded_server,
            "smartstart.profile.v1.ProfileService/RegisterUser",
        )
    )
    assert registered["external_id"] == "e2e-user" and registered["wallet_id"]

    profile = json.loads(
        await grpcurl(
            "-plaintext",
            "-d",
            json.dumps({"user_id": registered["user_id"]}),
            embedded_server,
            "smartstart.profile.v1.ProfileService/GetProfile",
        )
    )
    assert profile["user_id"] == registered["user_id"]
    assert profile["display_name"] == "End To End"
    assert profile["level"] == 1

    # One JSON access line per call, with the call's context (server/logging.py _add_call).
    text = await asyncio.to_thread(server_log.read_text)
    lines = [json.loads(line) for line in text.splitlines() if line]
    access = [line for line in lines if line.get("logger") == "smartstart.access"]
    (register,) = [line for line in access if line["method"].endswith("/RegisterUser")]
    assert register["request_id"] == "e2e-request-1"
    assert register["principal"] == str(uuid.UUID(int=1))
    assert register["code"] == "OK" and register["duration_ms"] > 0
    assert register["peer"].startswith("ipv4:127.0.0.1:")
    assert register["level"] == "info" and register["timestamp"].endswith("Z")
    (read,) = [line for line in access if line["method"].endswith("/GetProfile")]
    assert "principal" not in read and read["request_id"] != "e2e-request-1"
