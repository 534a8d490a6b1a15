"""`smartstart serve` with SMARTSTART_WORKERS=2: a supervisor and two worker processes on one
port (server/workers.py), run as real processes against a real database.

Which worker holds a connection is read from the kernel through psutil: each channel uses its
own TCP connection (a local subchannel pool), and the worker whose established connections
include that channel's client port is the one serving it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from smartstart.profile.v1 import profile_service_pb2 as profile_pb
from smartstart.profile.v1 import profile_service_pb2_grpc as profile_grpc
from smartstart.wallet.v1 import wallet_service_pb2 as wallet_pb
from smartstart.wallet.v1 import wallet_service_pb2_grpc as wallet_grpc

from server.app import server_options
from server.config import ConfigError, Settings, cpu_count, load_settings
from tests.fixtures_server import MintToken, ServerFactory, bearer, free_port

SMARTSTART = Path(sys.executable).with_name("smartstart")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Without it, channels to one target share one connection in gRPC's global subchannel pool.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
TIMEOUT_S = 120.0  # a loaded 2-core machine starts three interpreters


@dataclass
class Workers:
    proc: asyncio.subprocess.Process
    port: int
    log_path: Path
    metrics_port: int | None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def by_index(self) -> dict[int, psutil.Process]:
        """The worker processes, by their --index."""
        found = {}
        for child in psutil.Process(self.proc.pid).children():
            cmdline = child.cmdline()
            if "serve-worker" in cmdline:
                found[int(cmdline[cmdline.index("--index") + 1])] = child
        return found

    def client_ports(self) -> dict[int, set[int]]:
        """Per worker index: client ports of the connections it holds on the shared port."""
        return {
            index: {
                c.raddr.port
                for c in proc.net_connections("tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == self.port and c.raddr
            }
            for index, proc in self.by_index().items()
        }


StartWorkers = Callable[..., Awaitable[Workers]]


@pytest.fixture
async def start_workers(
    database_url: str, jwt_public_key_file: Path, tmp_path: Path
) -> AsyncIterator[StartWorkers]:
    """`await start_workers(**env)`: a supervisor of 2 workers, both serving; stopped after
    (SIGTERM, so it removes its metrics folder; SIGKILL if it hangs)."""
    started: list[Workers] = []

    async def start(metrics: bool = False, **overrides: str) -> Workers:
        port = free_port()
        metrics_port = free_port() if metrics else None
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SMARTSTART_WORKERS": "2",
            "SMARTSTART_GRPC_ADDR": f"127.0.0.1:{port}",
            "SMARTSTART_METRICS_ADDR": f"127.0.0.1:{metrics_port}" if metrics_port else "",
            "SMARTSTART_JWT_PUBLIC_KEY_FILE": str(jwt_public_key_file),
            "SMARTSTART_JOBS_ENABLED": "true",
            "SMARTSTART_SHUTDOWN_GRACE_S": "3",
            "SMARTSTART_DATA_DIR": str(tmp_path / "data"),
            "SMARTSTART_LOG_JSON": "true",
            "SMARTSTART_LOG_LEVEL": "info",
            **overrides,
        }
        env.pop("SMARTSTART_SECRET_KEY", None)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log_path = tmp_path / f"serve-{len(started)}.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                str(SMARTSTART), "serve", env=env, stdout=log, stderr=log
            )
        workers = Workers(proc, port, log_path, metrics_port)
        started.append(workers)
        await wait_started(workers)
        return workers

    try:
        yield start
    finally:
        for workers in started:
            if workers.proc.returncode is None:
                children = workers.by_index().values()
                workers.proc.terminate()
                try:
                    await asyncio.wait_for(workers.proc.wait(), TIMEOUT_S)
                except TimeoutError:
                    workers.proc.kill()
                    await workers.proc.wait()
                for child in children:
                    if child.is_running():
                        child.kill()


async def wait_started(workers: Workers) -> None:
    """Until both workers logged "server started" (their port is bound and serving)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if workers.proc.returncode is not None:
            pytest.fail(f"supervisor exited {workers.proc.returncode}:\n{workers.log()}")
        started = {
            e.get("worker") for e in workers.log_events() if e.get("event") == "server started"
        }
        if started >= {0, 1}:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"workers did not start:\n{workers.log()}")


def own_ports(port: int) -> set[int]:
    """Client ports of this test process's established connections to `port`."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections("tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == port
    }


async def channels_by_worker(
    workers: Workers, stack: AsyncExitStack, count: int = 20
) -> dict[int, list[grpc.aio.Channel]]:
    """Open `count` channels, each on its own connection (one health Check each), grouped by
    the worker the kernel gave the connection to."""
    grouped: dict[int, list[grpc.aio.Channel]] = {0: [], 1: []}
    for _ in range(count):
        before = own_ports(workers.port)
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(workers.addr, options=OWN_CONNECTION)
        )
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=30
        )
        assert reply.status == SERVING
        new = own_ports(workers.port) - before
        assert len(new) == 1, f"expected one new connection, got {new}"
        owners = [i for i, ports in workers.client_ports().items() if new & ports]
        assert len(owners) == 1, f"connection {new} held by workers {owners}"
        grouped[owners[0]].append(channel)
    return grouped


async def wait_exit(proc: asyncio.subprocess.Process, log: Callable[[], str]) -> int:
    try:
        return await asyncio.wait_for(proc.wait(), TIMEOUT_S)
    except TimeoutError:
        pytest.fail(f"supervisor did not exit:\n{log()}")


@pytest.mark.slow
async def test_two_workers_serve_one_port_and_one_database(
    start_workers: StartWorkers, mint_token: MintToken, server_factory: ServerFactory
) -> None:
    workers = await start_workers()
    async with AsyncExitStack() as stack:
        grouped = await channels_by_worker(workers, stack)
        # 20 connections, spread by the kernel: each worker holds some (all 20 on one
        # worker would happen with probability 2 / 2**20).
        assert len(grouped[0]) + len(grouped[1]) == 20
        assert grouped[0], "worker 0 got no connection"
        assert grouped[1], "worker 1 got no connection"
        on_0, on_1 = grouped[0][0], grouped[1][0]

        # A user registered through one worker is read through the other.
        system = bearer(mint_token("00000000-0000-0000-0000-000000000001", roles=("system",)))
        user = await profile_grpc.ProfileServiceStub(on_0).RegisterUser(
            profile_pb.RegisterUserRequest(
                request_id="w-1", external_id="ada", email="ada@example.com", display_name="Ada"
            ),
            metadata=system,
            timeout=30,
        )
        profile = await profile_grpc.ProfileServiceStub(on_1).GetProfile(
            profile_pb.GetProfileRequest(user_id=user.user_id), timeout=30
        )
        assert profile.display_name == "Ada"

        # A page token made by worker 0 reads on worker 1: the supervisor gave both one
        # secret (SMARTSTART_SECRET_KEY is unset here).
        admin = bearer(mint_token("00000000-0000-0000-0000-0000000000ad", roles=("admin",)))
        for n in (1, 2):
            await wallet_grpc.WalletServiceStub(on_0).AdjustBalance(
                wallet_pb.AdjustBalanceRequest(
                    user_id=user.user_id, delta=10, reason="test", request_id=f"adj-{n}"
                ),
                metadata=admin,
                timeout=30,
            )
        listing = wallet_pb.ListLedgerEntriesRequest(user_id=user.user_id, page_size=1)
        first = await wallet_grpc.WalletServiceStub(on_0).ListLedgerEntries(
            listing, metadata=admin, timeout=30
        )
        assert first.next_page_token
        listing.page_token = first.next_page_token
        second = await wallet_grpc.WalletServiceStub(on_1).ListLedgerEntries(
            listing, metadata=admin, timeout=30
        )
        assert [e.seq for e in (*first.entries, *second.entries)] == [2, 1]

    # A lone server (so_reuseport off) cannot slip onto the port the workers share.
    with pytest.raises(RuntimeError):
        await server_factory(grpc_addr=workers.addr)

    events = workers.log_events()
    # Only worker 0 runs the cron scheduler.
    assert [e.get("worker") for e in events if e.get("event") == "scheduler started"] == [0]
    # Every worker line says which worker wrote it; both served calls.
    assert {e.get("worker") for e in events if e.get("event") == "rpc"} == {0, 1}
    assert all("worker" in e for e in events if e.get("logger") != "smartstart.workers")


def scrape(port: int) -> dict[tuple[str, str], float]:
    """smartstart_rpc_total by (method, code) from the exporter on `port`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (s.labels["method"], s.labels["code"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "smartstart_rpc"
        for s in family.samples
        if s.name == "smartstart_rpc_total"
    }


@pytest.mark.slow
async def test_metrics_address_serves_the_sum_over_workers(start_workers: StartWorkers) -> None:
    workers = await start_workers(metrics=True)
    assert workers.metrics_port is not None
    check = ("/grpc.health.v1.Health/Check", "OK")
    async with AsyncExitStack() as stack:
        grouped = await channels_by_worker(workers, stack)  # one Check per channel
        assert grouped[0] and grouped[1]
        for channel in [*grouped[0], *grouped[1]]:
            for _ in range(2):
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=30
                )
    # 60 Checks answered by two processes: one number only if the exporter sums them.
    # (A worker counts a call just after answering it, so poll briefly.)
    deadline = time.monotonic() + 30
    while (seen := (await asyncio.to_thread(scrape, workers.metrics_port)).get(check)) != 60:
        assert seen is None or seen < 60, seen
        assert time.monotonic() < deadline, f"Check count {seen}, expected 60"
        await asyncio.sleep(0.2)
    # The supervisor serves the metrics; the workers listen on the gRPC port only.
    listeners = {
        c.laddr.port
        for c in psutil.Process(workers.proc.pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    }
    assert workers.metrics_port in listeners
    for proc in workers.by_index().values():
        assert {
            c.laddr.port for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN
        } == {workers.port}


@pytest.mark.slow
async def test_sigterm_drains_every_worker_and_exits_zero(start_workers: StartWorkers) -> None:
    workers = await start_workers(metrics=True)
    children = workers.by_index()
    metrics_dir = Path(children[0].environ()["PROMETHEUS_MULTIPROC_DIR"])
    assert await asyncio.to_thread(metrics_dir.is_dir)
    async with AsyncExitStack() as stack:
        grouped = await channels_by_worker(workers, stack)
        assert grouped[0] and grouped[1]
        # A health watch in flight on each worker: the forwarded signal reaches both.
        watches = [
            health_pb2_grpc.HealthStub(grouped[i][0]).Watch(health_pb2.HealthCheckRequest())
            for i in (0, 1)
        ]
        for watch in watches:
            assert (await asyncio.wait_for(watch.read(), 30)).status == SERVING

        workers.proc.send_signal(signal.SIGTERM)

        for watch in watches:
            assert (await asyncio.wait_for(watch.read(), 30)).status == NOT_SERVING
    exit_code = await wait_exit(workers.proc, workers.log)
    assert exit_code == 0, workers.log()
    assert not any(psutil.pid_exists(child.pid) for child in children.values())
    assert not await asyncio.to_thread(metrics_dir.exists)
    events = workers.log_events()
    assert {e.get("worker") for e in events if e.get("event") == "server stopped"} == {0, 1}
    assert any(e.get("event") == "workers stopped" for e in events)


@pytest.mark.slow
async def test_a_worker_that_dies_takes_the_others_down(start_workers: StartWorkers) -> None:
    workers = await start_workers(SMARTSTART_SHUTDOWN_GRACE_S="2")
    children = workers.by_index()
    children[1].kill()  # SIGKILL: no goodbye

    exit_code = await wait_exit(workers.proc, workers.log)
    assert exit_code != 0
    assert not psutil.pid_exists(children[0].pid)
    died = [e for e in workers.log_events() if e.get("event", "").startswith("worker exited")]
    assert [(e["worker"], e["exit_code"]) for e in died] == [(1, -signal.SIGKILL)]


async def run_serve(**env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SMARTSTART),
        "serve",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_port_zero_and_bad_worker_counts_are_refused_before_starting() -> None:
    nowhere = "postgresql://nobody@127.0.0.1:1/none"  # never reached: refused before
    code, err = await run_serve(
        SMARTSTART_WORKERS="2", SMARTSTART_GRPC_ADDR="127.0.0.1:0", DATABASE_URL=nowhere
    )
    assert code == 2
    assert "SMARTSTART_WORKERS=2 needs a fixed port to share" in err
    for bad in ("-1", "two", "1.5"):
        code, err = await run_serve(SMARTSTART_WORKERS=bad, DATABASE_URL=nowhere)
        assert code == 2
        assert "SMARTSTART_WORKERS must be a whole number >= 0" in err
        assert repr(bad) in err


@pytest.mark.parametrize(
    ("raw", "expected"), [("", 1), ("1", 1), ("3", 3), (" 2 ", 2), ("0", cpu_count())]
)
def test_workers_setting(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int) -> None:
    monkeypatch.setenv("SMARTSTART_WORKERS", raw)
    assert load_settings().workers == expected


@pytest.mark.parametrize("raw", ["-1", "-0.5", "many", "2x"])
def test_workers_setting_refuses_garbage(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SMARTSTART_WORKERS", raw)
    with pytest.raises(ConfigError, match="SMARTSTART_WORKERS must be a whole number"):
        load_settings()


def test_only_workers_share_their_port() -> None:
    assert ("grpc.so_reuseport", 0) in server_options(Settings())
    assert ("grpc.so_reuseport", 1) in server_options(Settings(worker_index=0))
