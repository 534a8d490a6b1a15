"""The `smartstart` command's probes and tokens, run as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import jwt

from server.app import RunningServer

SMARTSTART = Path(sys.executable).parent / "smartstart"


async def run(*args: str, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SMARTSTART),
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode().strip(), err.decode().strip()


async def test_health_probe_exits_zero_when_serving(grpc_server: RunningServer) -> None:
    code, out, _ = await run("health", "--target", f"127.0.0.1:{grpc_server.port}")
    assert (code, out) == (0, f"127.0.0.1:{grpc_server.port}: SERVING")


async def test_health_probe_fails_without_a_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: nothing answers
        code, _, err = await run("health", "--target", f"127.0.0.1:{port}", "--timeout", "1")
    assert code == 1
    assert "UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err


async def test_token_mints_a_dev_token_or_refuses_without_a_key() -> None:
    secret = "a-test-secret-of-at-least-32-bytes!!"
    code, token, _ = await run(
        "token", "--sub", "u-1", "--roles", "admin,board", SMARTSTART_JWT_DEV_SECRET=secret
    )
    assert code == 0
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["sub"] == "u-1"
    assert claims["roles"] == ["admin", "board"]

    env = {k: "" for k in ("SMARTSTART_JWT_DEV_SECRET", "SMARTSTART_JWT_DEV_PRIVATE_KEY_FILE")}
    code, out, err = await run("token", "--sub", "u-1", **env)
    assert code == 2
    assert out == ""
    assert "smartstart token:" in err


async def test_serve_refuses_an_unknown_event_loop_before_starting() -> None:
    code, _, err = await run(
        "serve", SMARTSTART_EVENT_LOOP="trio", DATABASE_URL="postgresql://nowhere/none"
    )
    assert code == 1
    assert "SMARTSTART_EVENT_LOOP must be one of uvloop, asyncio, not 'trio'" in err
