"""The fuzzed server: `smartstart serve` as its own process on a fresh database, the way
production runs it, so a crash, a hang or a leaked traceback shows as what it is.

SMARTSTART_FUZZ_EXAMPLES sets the cases per RPC and caller (default: a size for CI); a long
campaign sets it high, e.g. SMARTSTART_FUZZ_EXAMPLES=400 (about 100,000 cases over the contract
and the three callers), and draws new random cases on every run instead of CI's fixed ones.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from smartstart.profile.v1 import profile_service_pb2 as profile_pb
from smartstart.profile.v1 import profile_service_pb2_grpc as profile_grpc

from server.core.context import KNOWN_ROLES
from server.interceptors.tokens import HS256, mint_token
from tests.fixtures_db import create_database, drop_database, unique_name
from tests.fixtures_server import free_port, wait_all_serving
from tests.fuzz.strategies import Pools

SMARTSTART = Path(sys.executable).parent / "smartstart"
SECRET = "smartstart-fuzz-only-not-for-production-0123456789"
EXAMPLES = int(os.environ.get("SMARTSTART_FUZZ_EXAMPLES", "8"))
CAMPAIGN = "SMARTSTART_FUZZ_EXAMPLES" in os.environ
MAX_MESSAGE_BYTES = 256 * 1024  # small, so oversized requests are cheap to send


@dataclass
class Tally:
    """Cases run, by kind of case and by status code (printed at the end of the session)."""

    cases: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    rpcs: set[str] = field(default_factory=set)


TALLY = Tally()


@dataclass
class FuzzServer:
    addr: str
    channel: grpc.Channel
    metadata: dict[str, tuple[tuple[str, str], ...]]
    pools: Pools
    log: Path


def _token(sub: str, roles: list[str]) -> tuple[tuple[str, str], ...]:
    token = mint_token(sub=sub, roles=roles, ttl_s=24 * 3600, key=SECRET, algorithm=HS256)
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
async def fuzz_database(pg_admin_url: str, pg_template: str) -> AsyncIterator[str]:
    name = unique_name("smartstart_fuzz")
    url = await create_database(pg_admin_url, name, template=pg_template)
    try:
        yield url
    finally:
        await drop_database(pg_admin_url, name)


@pytest.fixture(scope="module")
async def fuzz_process(
    fuzz_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    addr = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "DATABASE_URL": fuzz_database,
        "SMARTSTART_GRPC_ADDR": addr,
        "SMARTSTART_JWT_DEV_SECRET": SECRET,
        "SMARTSTART_RATE_LIMIT_ANONYMOUS": "100000000",
        "SMARTSTART_RATE_LIMIT_AUTHENTICATED": "100000000",
        "SMARTSTART_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        "SMARTSTART_JOBS_ENABLED": "false",
        "SMARTSTART_WORKERS": "1",
        "SMARTSTART_SHUTDOWN_GRACE_S": "2",
        "SMARTSTART_LOG_LEVEL": "warning",
    }
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(SMARTSTART), "serve", env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
        try:
            await wait_all_serving(addr, proc)
            yield addr, log
        finally:
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 30)
    # Nothing the server logged at error level (an unhandled exception, a task that died
    # quietly, a context reset that failed) may hide behind answers that looked fine.
    errors = [line for line in log.read_text().splitlines() if '"level": "error"' in line]
    assert not errors, "\n".join(errors[:5])
    assert proc.returncode == 0, log.read_text()[-2000:]


@pytest.fixture(scope="module")
def fuzz(fuzz_process: tuple[str, Path]) -> Iterator[FuzzServer]:
    addr, log = fuzz_process
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(addr, options=options) as channel:
        system = _token("00000000-0000-0000-0000-0000000000aa", ["system"])
        stub = profile_grpc.ProfileServiceStub(channel)
        pools = Pools()
        for n in range(2):
            user = stub.RegisterUser(
                profile_pb.RegisterUserRequest(
                    request_id=f"fuzz-{n}",
                    external_id=f"fuzz-{n}",
                    email=f"fuzz-{n}@example.com",
                    display_name=f"Fuzz {n}",
                ),
                metadata=system,
            )
            pools.ids.append(user.user_id)
        metadata = {
            "anonymous": (),
            "user": _token(pools.ids[0], ["user"]),
            "all_roles": _token(pools.ids[1], sorted(KNOWN_ROLES)),
        }
        yield FuzzServer(addr, channel, metadata, pools, log)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY.cases:
        return
    total = sum(TALLY.cases.values())
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(TALLY.cases.items()))
    codes = ", ".join(f"{code} {n:,}" for code, n in TALLY.codes.most_common())
    terminalreporter.write_line(
        f"fuzz: {total:,} cases over {len(TALLY.rpcs)} RPCs ({kinds}); answers: {codes}"
    )
