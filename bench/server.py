"""The server under test: `.venv/bin/smartstart serve` as a subprocess on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.cpu import ProcessTree, TreeMemory

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# Development secret for the run's tokens (HS256 wants at least 32 bytes).
JWT_SECRET = "smartstart-bench-only-not-for-production-0123456789"  # noqa: S105
UNLIMITED = str(10**9)
WORKERS_ENV = "SMARTSTART_WORKERS"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    target: str
    log_path: Path
    _log: IO[bytes]

    workers: int | None = None  # SMARTSTART_WORKERS given to the server (None: unset)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def tree(self) -> ProcessTree:
        """`smartstart serve` and every process under it (workers may start later)."""
        return ProcessTree([self.proc.pid], "server")

    def memory(self) -> TreeMemory:
        return self.tree.memory()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM (graceful), then SIGKILL after STOP_TIMEOUT_S; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def start_server(
    database_url: str, data_dir: Path, log_level: str, workers: int | None = None
) -> ServerProcess:
    """Start the server with jobs off and rate limits out of the way; wait for SERVING.

    `workers` sets SMARTSTART_WORKERS (server processes under one supervisor); None removes
    the variable, so the server's own default applies.
    """
    addr = f"127.0.0.1:{free_port()}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        SMARTSTART_GRPC_ADDR=addr,
        SMARTSTART_DATA_DIR=str(data_dir),
        SMARTSTART_JOBS_ENABLED="false",
        SMARTSTART_JWT_DEV_SECRET=JWT_SECRET,
        SMARTSTART_RATE_LIMIT_ANONYMOUS=UNLIMITED,
        SMARTSTART_RATE_LIMIT_AUTHENTICATED=UNLIMITED,
        SMARTSTART_SHUTDOWN_GRACE_S="2",
        SMARTSTART_LOG_LEVEL=log_level,
        SMARTSTART_METRICS_ADDR="",
    )
    for name in ("SMARTSTART_JWT_PUBLIC_KEY_FILE", "SMARTSTART_JWT_JWKS_FILE", WORKERS_ENV):
        env.pop(name, None)
    if workers is not None:
        env[WORKERS_ENV] = str(workers)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{os.getpid()}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "smartstart"), "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(proc, addr, log_path, log, workers)
    try:
        _wait_serving(server, fresh_connections=4 + 2 * (workers or 1))
    except BaseException:
        server.stop()
        raise
    return server


def _check_fresh(target: str) -> bool:
    """One health Check on a new connection (no subchannel shared with other channels)."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _wait_serving(server: ServerProcess, fresh_connections: int) -> None:
    """Wait until `fresh_connections` new connections in a row answer SERVING.

    With several server processes behind one port a connection lands on any of them, so one
    SERVING answer says little; a run of them on fresh connections says most are up. (A
    worker that has not bound its socket yet gets no connections and cannot be seen.)
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    in_a_row = 0
    while in_a_row < fresh_connections:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log_tail()}")
        if _check_fresh(server.target):
            in_a_row += 1
            continue
        in_a_row = 0
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not SERVING after {STARTUP_TIMEOUT_S:.0f} s")
        time.sleep(0.1)
