"""Build, run and stop the grpc.aio server.

`start_server` is the in-process entry (tests use port 0); `serve` is what `smartstart serve`
runs (in each worker process when SMARTSTART_WORKERS > 1, see server/workers.py): it owns the
database (embedded PostgreSQL when DATABASE_URL is unset), the Prometheus exporter and the
signal handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from server.config import Settings
from server.core.clock import Clock, system_clock
from server.db import migrate
from server.db.embedded import start_embedded
from server.db.session import Database
from server.interceptors import AuthInterceptor, build_interceptors, load_policies
from server.interceptors.tokens import TokenVerifier
from server.registry import Registrar, register_all
from server.services import Deps, Services, build_services

log = structlog.get_logger("smartstart.app")

HEALTH_SERVICE = "grpc.health.v1.Health"
# How often a server reads the integrity state (open incidents, last verification and
# checkpoint) into its gauges; GetSystemStatus refreshes them too.
GAUGE_REFRESH_S = 60.0


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    return [
        ("grpc.keepalive_time_ms", settings.keepalive_time_s * 1000),
        ("grpc.keepalive_timeout_ms", settings.keepalive_timeout_s * 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Let clients keep idle connections alive with their own pings (BFFs do).
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        # Close connections after a while so clients re-resolve and spread over replicas.
        ("grpc.max_connection_age_ms", settings.max_connection_age_s * 1000),
        ("grpc.max_connection_age_grace_ms", settings.max_connection_age_grace_s * 1000),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        # Off for a lone server: a second process on the same port would silently share
        # traffic. On in the workers of `serve` with SMARTSTART_WORKERS > 1 (server/workers.py),
        # which share the port on purpose.
        ("grpc.so_reuseport", 0 if settings.worker_index is None else 1),
    ]


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; mutual TLS when a client CA is too."""
    if not settings.tls_cert_file:
        return None
    cert = Path(settings.tls_cert_file).read_bytes()
    key = Path(settings.tls_key_file).read_bytes()
    client_ca = (
        Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    )
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    services: Services
    health: health.aio.HealthServicer
    service_names: list[str]  # SmartStart services (health and reflection not included)
    gauges: asyncio.Task[None] | None = None
    _stopped: bool = field(default=False, repr=False)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING → drain calls for `grace` s → stop jobs.

        The database belongs to the caller of `start_server`; dispose it afterwards.
        """
        if self._stopped:
            return
        self._stopped = True
        grace = self.services.deps.settings.shutdown_grace_s if grace is None else grace
        # Balancers watching health stop sending new calls while in-flight ones finish.
        await self.health.enter_graceful_shutdown()
        if self.gauges is not None:
            self.gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.gauges
        await self.server.stop(grace)
        for finish in self.services.on_stop:
            await finish()
        await self.services.scheduler.stop()
        log.info("server stopped")


async def refresh_gauges(services: Services, every_s: float = GAUGE_REFRESH_S) -> None:
    """Keep the integrity gauges current (until cancelled); a failure is logged and retried
    at the next tick, since the status it reports may be why the database is unreachable."""
    while True:
        try:
            await services.ops.refresh_gauges()
        except Exception:
            log.warning("integrity gauges not refreshed", exc_info=True)
        await asyncio.sleep(every_s)


async def _set_all(running_health: health.aio.HealthServicer, names: Sequence[str]) -> None:
    for name in ["", *names]:
        await running_health.set(name, health_pb2.HealthCheckResponse.SERVING)


async def start_server(
    settings: Settings,
    database: Database,
    *,
    clock: Clock = system_clock,
    extra_registrars: Sequence[Registrar] = (),
) -> RunningServer:
    """Start serving on settings.grpc_addr (port 0 picks a free port); jobs if enabled.
    `clock` is the server's "now" (tests move it)."""
    services = build_services(Deps(settings=settings, database=database, clock=clock))

    verifier = TokenVerifier.from_settings(settings)
    if not verifier.configured:
        log.warning("no JWT key configured: only PUBLIC RPCs can be called")
    auth = AuthInterceptor(verifier)
    server = grpc.aio.server(
        interceptors=build_interceptors(settings, auth),
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    service_names = register_all(server, services, extra_registrars)
    # The policy table is read once, now that every service is registered.
    auth.set_policies(load_policies(service_names))

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await _set_all(health_servicer, [*service_names, HEALTH_SERVICE])
    reflection.enable_server_reflection(
        [*service_names, HEALTH_SERVICE, reflection.SERVICE_NAME], server
    )

    credentials = server_credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(settings.grpc_addr)
    else:
        port = server.add_secure_port(settings.grpc_addr, credentials)
    if port == 0:
        raise RuntimeError(f"could not bind {settings.grpc_addr}")
    await server.start()
    if settings.jobs_enabled:
        services.scheduler.start()
    log.info(
        "server started",
        addr=settings.grpc_addr,
        port=port,
        tls=credentials is not None,
        services=service_names,
        jobs=settings.jobs_enabled,
    )
    gauges = asyncio.create_task(refresh_gauges(services), name="integrity-gauges")
    return RunningServer(server, port, services, health_servicer, service_names, gauges)


def start_metrics_exporter(addr: str, registry: CollectorRegistry = REGISTRY) -> Any:
    """Serve /metrics on "host:port" in a daemon thread; returns the HTTP server."""
    host, _, port = addr.rpartition(":")
    httpd, _thread = start_http_server(
        int(port),
        addr=host or "0.0.0.0",  # noqa: S104
        registry=registry,
    )
    return httpd


def resolve_database(settings: Settings) -> str:
    """The database URL to serve: DATABASE_URL, or the embedded PostgreSQL, started and migrated.

    Synchronous (it may run initdb); call it via asyncio.to_thread from async code.
    """
    if not settings.embedded_db:
        return settings.database_url
    # Embedded PostgreSQL is for running with no set-up, so migrate it on start too.
    url = start_embedded(settings.data_dir)
    migrate.upgrade(url)
    return url


# Young-generation collections every 50,000 net allocations instead of 700: a call allocates
# a few hundred short-lived objects (messages, rows, dicts), so the default collects several
# times per call, each time walking every young object.
GC_THRESHOLD = (50_000, 20, 100)


def tune_gc() -> None:
    """Once the server is up: move everything loaded so far (modules, registries, the ORM's
    mappers) out of the collector's sight, and collect young objects less often. Reference
    counting still frees nearly everything at once; the cycle collector is for cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then shut down gracefully."""
    url = await asyncio.to_thread(resolve_database, settings)
    database = Database.from_url(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        statement_cache=settings.db_statement_cache,
    )
    metrics = start_metrics_exporter(settings.metrics_addr) if settings.metrics_addr else None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        running = await start_server(settings, database)
        tune_gc()
        try:
            await stop.wait()
            log.info("shutting down", grace_s=settings.shutdown_grace_s)
        finally:
            await running.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await database.dispose()
        if metrics is not None:
            metrics.shutdown()
