"""The `smartstart` command: serve, migrate, seed, token."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import structlog

from server.config import Settings, load_settings
from server.logging import configure_logging

log = structlog.get_logger("smartstart.cli")


def _database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from server.db.embedded import start_embedded

    return start_embedded(settings.data_dir)


def cmd_serve(settings: Settings, _: argparse.Namespace) -> int:
    from server.app import serve

    asyncio.run(serve(settings))
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
    from server.tokens import mint_dev_token

    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    try:
        token = mint_dev_token(settings, sub=args.sub, roles=roles, ttl_s=args.ttl)
    except ValueError as exc:
        print(f"smartstart token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartstart", description="SmartStart Core server")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gRPC server (embedded PostgreSQL without DATABASE_URL)")
    m = sub.add_parser("migrate", help="apply migrations to DATABASE_URL (or the embedded DB)")
    m.add_argument("--revision", default="head", help="target revision (default: head)")
    sub.add_parser("seed", help="insert development data (idempotent)")
    t = sub.add_parser("token", help="mint a development JWT with the configured dev key")
    t.add_argument("--sub", required=True, help="user id (the JWT subject)")
    t.add_argument("--roles", default="user", help="comma-separated: user,admin,board,system")
    t.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    return p


COMMANDS = {"serve": cmd_serve, "migrate": cmd_migrate, "seed": cmd_seed, "token": cmd_token}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = load_settings()
    # `token` prints only the token, so scripts can capture it; logs go to stdout otherwise.
    if args.command != "token":
        configure_logging(settings.log_level, json=settings.log_json)
    return COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
