"""The `smartstart` command: serve (and its internal serve-worker), migrate, seed, token, health."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import structlog

from server.config import ConfigError, Settings, load_settings
from server.logging import configure_logging

log = structlog.get_logger("smartstart.cli")

T = TypeVar("T")


def _database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from server.db.embedded import start_embedded

    return start_embedded(settings.data_dir)


EVENT_LOOPS = ("uvloop", "asyncio")


def run_loop(settings: Settings, main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on the configured event loop.

    uvloop is the default: its libuv transports halve the cost of the socket writes and
    wake-ups that dominate a gRPC call spent waiting on PostgreSQL (see the README's
    performance change log); the stdlib loop stays selectable for debugging.
    """
    if settings.event_loop not in EVENT_LOOPS:
        main.close()
        raise SystemExit(
            f"SMARTSTART_EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)},"
            f" not {settings.event_loop!r}"
        )
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def cmd_serve(settings: Settings, _: argparse.Namespace) -> int:
    if settings.workers > 1:
        from server.workers import supervise

        return run_loop(settings, supervise(settings))
    from server.app import serve

    run_loop(settings, serve(settings))
    return 0


def cmd_serve_worker(settings: Settings, args: argparse.Namespace) -> int:
    from server.workers import run_worker

    run_loop(settings, run_worker(settings, args.index))
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from server.db import migrate

    migrate.upgrade(_database_url(settings), args.revision)
    log.info("migrated", revision=args.revision)
    return 0


def cmd_seed(settings: Settings, _: argparse.Namespace) -> int:
    from server import seed
    from server.db.session import Database

    url = _database_url(settings)

    async def go() -> dict[str, int]:
        database = Database.from_url(
            url, pool_size=2, max_overflow=0, statement_cache=settings.db_statement_cache
        )
        try:
            return await seed.run(database)
        finally:
            await database.dispose()

    log.info("seeded", added=asyncio.run(go()))
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from server.interceptors.tokens import mint_dev_token

    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    try:
        token = mint_dev_token(settings, sub=args.sub, roles=roles, ttl_s=args.ttl)
    except ValueError as exc:
        print(f"smartstart token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when the server at SMARTSTART_GRPC_ADDR reports SERVING (container probe)."""
    import grpc
    import grpc.aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    host, _, port = settings.grpc_addr.rpartition(":")
    wildcard = host in ("", "0.0.0.0", "[::]")  # noqa: S104 - mapped to loopback here
    target = args.target or f"{'127.0.0.1' if wildcard else host}:{port}"

    async def check() -> int:
        async with grpc.aio.insecure_channel(target) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
                )
            except grpc.aio.AioRpcError as err:
                print(f"{target}: {err.code().name}", file=sys.stderr)
                return 1
        serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        print(f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
        return 0 if serving else 1

    return asyncio.run(check())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartstart", description="SmartStart Core server")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gRPC server (embedded PostgreSQL without DATABASE_URL)")
    w = sub.add_parser("serve-worker", help="internal: one worker process of `serve` (workers>1)")
    w.add_argument("--index", type=int, required=True, help="worker number, 0 runs the jobs")
    m = sub.add_parser("migrate", help="apply migrations to DATABASE_URL (or the embedded DB)")
    m.add_argument("--revision", default="head", help="target revision (default: head)")
    sub.add_parser("seed", help="insert development data (idempotent)")
    t = sub.add_parser("token", help="mint a development JWT with the configured dev key")
    t.add_argument("--sub", required=True, help="user id (the JWT subject)")
    t.add_argument("--roles", default="user", help="comma-separated: user,admin,board,system")
    t.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    h = sub.add_parser("health", help="exit 0 when the server reports SERVING (for probes)")
    h.add_argument("--target", default="", help="host:port (default: from SMARTSTART_GRPC_ADDR)")
    h.add_argument("--service", default="", help="service name (default: the whole server)")
    h.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    return p


COMMANDS = {
    "serve": cmd_serve,
    "serve-worker": cmd_serve_worker,
    "migrate": cmd_migrate,
    "seed": cmd_seed,
    "token": cmd_token,
    "health": cmd_health,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        # `token` and `health` print only their answer, so scripts can use it.
        if args.command not in ("token", "health"):
            worker = args.index if args.command == "serve-worker" else None
            configure_logging(settings.log_level, json=settings.log_json, worker=worker)
        return COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"smartstart: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
