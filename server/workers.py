"""Several server processes on one port: `smartstart serve` with SMARTSTART_WORKERS > 1.

Why it exists: one server process is CPU-bound on one core (Python runs gRPC, asyncio and the
interceptors under one GIL; see the README's performance notes) and a host has more. Threads
cannot help and forking once the gRPC runtime runs is unsafe, so `serve` becomes a small
supervisor of fresh interpreters:

- It resolves the database once (DATABASE_URL, or the embedded PostgreSQL, started and
  migrated) and hands the URL to every worker, so no worker starts a PostgreSQL of its own.
- It starts N workers (`python -m server.cli serve-worker --index i`), each the ordinary
  server on the same address with SO_REUSEPORT: the kernel spreads incoming connections (not
  calls) over them. A port of 0 cannot be shared, so it is refused.
- Without SMARTSTART_SECRET_KEY it makes one random secret for all workers, so a page token
  made by one worker reads on another (it still dies with the supervisor).
- Only worker 0 runs the cron scheduler: jobs take advisory locks anyway, but one scheduler
  per host is enough and quieter. Manual runs (OpsService.RunJob) work on every worker.
- With SMARTSTART_METRICS_ADDR, the workers write their metrics through prometheus_client's
  multiprocess mode into a fresh temporary folder, and the supervisor serves their sum on
  that address (workers export nothing). A Gauge added later must pick a `multiprocess_mode`.
- SIGTERM/SIGINT go to every worker, which drain as a lone server does; the supervisor exits
  0 when all exited 0. A worker that dies on its own takes the others down (SIGTERM, SIGKILL
  after the grace) and the supervisor exits 1: fail fast, the orchestrator restarts the
  whole set. A worker whose supervisor vanishes sees its stdin pipe close and drains too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator

import structlog

from server.config import ConfigError, Settings

log = structlog.get_logger("smartstart.workers")

# Past the drain grace, a worker still stops its jobs (the scheduler waits up to 30 s for runs
# in progress) and closes its pool before it exits; SIGKILL only after that.
STOP_MARGIN_S = 35.0


def check_shareable(settings: Settings) -> None:
    """Workers share one fixed port: refuse port 0, which would give each its own."""
    _, _, port = settings.grpc_addr.rpartition(":")
    if port.strip().isdigit() and int(port) == 0:
        raise ConfigError(
            f"SMARTSTART_WORKERS={settings.workers} needs a fixed port to share, but"
            f" SMARTSTART_GRPC_ADDR is {settings.grpc_addr!r} (port 0 picks a different"
            " free port in every worker); set a port or SMARTSTART_WORKERS=1"
        )


@contextlib.contextmanager
def _metrics(settings: Settings) -> Iterator[str | None]:
    """With a metrics address: a fresh multiprocess folder, its sum served on the address."""
    if not settings.metrics_addr:
        yield None
        return
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from server.app import start_metrics_exporter

    folder = tempfile.mkdtemp(prefix="smartstart-metrics-")
    try:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
        exporter = start_metrics_exporter(settings.metrics_addr, registry)
        try:
            yield folder
        finally:
            exporter.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _signal_all(workers: list[asyncio.subprocess.Process], sig: int) -> None:
    for proc in workers:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)


async def _stop_all(workers: list[asyncio.subprocess.Process], kill_after_s: float) -> None:
    """SIGTERM the workers still running; SIGKILL those left after `kill_after_s`."""
    _signal_all(workers, signal.SIGTERM)
    waits = asyncio.gather(*(proc.wait() for proc in workers))
    try:
        await asyncio.wait_for(asyncio.shield(waits), kill_after_s)
    except TimeoutError:
        left = [proc.pid for proc in workers if proc.returncode is None]
        log.error("workers did not stop in time, killing them", pids=left)
        _signal_all(workers, signal.SIGKILL)
        await waits


async def supervise(settings: Settings) -> int:
    """Run `settings.workers` server processes on settings.grpc_addr; the exit status."""
    from server.app import resolve_database

    check_shareable(settings)
    url = await asyncio.to_thread(resolve_database, settings)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SMARTSTART_SECRET_KEY": settings.secret_key or secrets.token_urlsafe(32),
    }
    stop = asyncio.Event()
    workers: list[asyncio.subprocess.Process] = []

    def on_signal(sig: signal.Signals) -> None:
        log.info("stopping workers", signal=sig.name)
        stop.set()
        _signal_all(workers, sig)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    # The workers' stdin: it reaches end of file when this process is gone, however it ended.
    alive_r, alive_w = os.pipe()
    failed = False
    try:
        with _metrics(settings) as metrics_dir:
            if metrics_dir is not None:
                env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            for index in range(settings.workers):
                if stop.is_set():
                    break
                workers.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "server.cli",
                        "serve-worker",
                        "--index",
                        str(index),
                        env=env,
                        stdin=alive_r,
                    )
                )
            log.info(
                "workers started",
                addr=settings.grpc_addr,
                pids=[proc.pid for proc in workers],
                metrics=settings.metrics_addr or None,
            )
            exits = {asyncio.ensure_future(proc.wait()): i for i, proc in enumerate(workers)}
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for task, index in exits.items():
                if task in done and not stop.is_set():
                    failed = True
                    log.error(
                        "worker exited unexpectedly, stopping the others",
                        worker=index,
                        pid=workers[index].pid,
                        exit_code=workers[index].returncode,
                    )
            await _stop_all(workers, settings.shutdown_grace_s + STOP_MARGIN_S)
            await asyncio.gather(*exits)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        _signal_all(workers, signal.SIGKILL)  # only if something above raised
        os.close(alive_r)
        os.close(alive_w)
    codes = [proc.returncode for proc in workers]
    log.info("workers stopped", exit_codes=codes)
    return 1 if failed or any(code != 0 for code in codes) else 0


async def run_worker(settings: Settings, index: int) -> None:
    """One worker: the ordinary server, sharing the port; stops on a signal or orphaning."""
    from server.app import serve

    settings = dataclasses.replace(
        settings,
        worker_index=index,
        jobs_enabled=settings.jobs_enabled and index == 0,
        metrics_addr="",  # the supervisor exports the sum of all workers
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stdin() -> None:
        if not os.read(0, 4096):  # end of file: the supervisor is gone
            loop.remove_reader(0)
            log.warning("supervisor gone, shutting down")
            stop.set()

    watch = stat.S_ISFIFO(os.fstat(0).st_mode)  # the supervisor's pipe (not when run by hand)
    if watch:
        loop.add_reader(0, on_stdin)
    try:
        await serve(settings, stop=stop)
    finally:
        if watch:
            loop.remove_reader(0)
