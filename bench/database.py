"""The run's PostgreSQL: embedded under .data/bench, or the server DATABASE_URL names.

Either way the run gets its own databases, `smartstart_bench_<pid>` (migrated) for the
service and `pgbench_<pid>` for the baseline, and drops both at the end. An embedded server
this run started is stopped again; one that was already running is left running.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg  # type: ignore[import-untyped]

from server.db import migrate
from server.db.embedded import (
    admin_url,
    ensure_database,
    plain_dsn,
    stop_embedded,
    with_database,
)
from server.db.session import normalize_url

EMBEDDED_DIR = Path(".data/bench")


@dataclass(slots=True)
class BenchDatabase:
    admin: str  # SQLAlchemy URL of an existing database used for CREATE/DROP DATABASE
    url: str  # the service database (SQLAlchemy asyncpg URL)
    name: str
    pgbench_name: str
    embedded: bool
    started_embedded: bool
    data_dir: Path

    @property
    def dsn(self) -> str:
        return plain_dsn(self.url)

    def pg_env(self) -> dict[str, str]:
        """libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD) for pgbench."""
        parts = urlsplit(plain_dsn(self.admin))
        query = parse_qs(parts.query)
        env: dict[str, str] = {}
        host = query.get("host", [parts.hostname or ""])[0]
        if host:
            env["PGHOST"] = host
        port = query.get("port", [str(parts.port or "")])[0]
        if port:
            env["PGPORT"] = port
        if parts.username:
            env["PGUSER"] = parts.username
        if parts.password:
            env["PGPASSWORD"] = parts.password
        if "sslmode" in query:
            env["PGSSLMODE"] = query["sslmode"][0]
        return env


def provision(database_url: str) -> BenchDatabase:
    """Create (and migrate) the run's databases; start the embedded server when needed."""
    pid = os.getpid()
    name = f"smartstart_bench_{pid}"
    pgbench_name = f"pgbench_{pid}"
    if database_url:
        admin = normalize_url(database_url)
        embedded = started = False
        data_dir = EMBEDDED_DIR
    else:
        data_dir = EMBEDDED_DIR.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        # postgres runs as its own system user when we are root: it must traverse this folder
        os.chmod(data_dir, 0o755)  # noqa: S103
        started = not (data_dir / "pg" / "postmaster.pid").exists()
        admin = admin_url(data_dir)
        embedded = True
    db = BenchDatabase(
        admin=admin,
        url=with_database(admin, name),
        name=name,
        pgbench_name=pgbench_name,
        embedded=embedded,
        started_embedded=started,
        data_dir=data_dir,
    )
    try:
        asyncio.run(_create(admin, [name, pgbench_name]))
        migrate.upgrade(db.url)
    except BaseException:
        teardown(db)
        raise
    return db


async def _create(admin: str, names: Sequence[str]) -> None:
    for n in names:
        await ensure_database(admin, n)


async def _drop(admin: str, names: Sequence[str]) -> None:
    conn = await asyncpg.connect(plain_dsn(admin))
    try:
        for n in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
    finally:
        await conn.close()


def teardown(db: BenchDatabase, *, keep: bool = False) -> None:
    """Drop the run's databases (unless keep) and stop an embedded server we started."""
    try:
        if not keep:
            asyncio.run(_drop(db.admin, [db.name, db.pgbench_name]))
    finally:
        if db.embedded and db.started_embedded:
            stop_embedded(db.data_dir)


async def fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def fetch_sync(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(fetch(dsn, query, *args))


def server_version(db: BenchDatabase) -> str:
    rows = fetch_sync(db.dsn, "SELECT current_setting('server_version') AS v")
    return str(rows[0]["v"])


def raise_reputation(db: BenchDatabase, user_ids: Sequence[str], rep_milli: int) -> int:
    """The reputation gate has no API setter (the daily job moves it): set it in SQL."""
    rows = fetch_sync(
        db.dsn,
        "WITH u AS (UPDATE profiles SET rep_milli = $2 WHERE user_id = ANY($1::uuid[])"
        " RETURNING 1) SELECT count(*) AS n FROM u",
        list(user_ids),
        rep_milli,
    )
    return int(rows[0]["n"])


def issue_counts(db: BenchDatabase) -> dict[str, int]:
    """ISSUE ledger entries and task rewards written (a check that issuance really wrote)."""
    rows = fetch_sync(
        db.dsn,
        "SELECT (SELECT count(*) FROM ledger_entries WHERE type = 'ISSUE') AS issue_entries,"
        " (SELECT count(*) FROM task_rewards) AS task_rewards,"
        " (SELECT count(*) FROM task_rewards WHERE buz_awarded > 0) AS rewards_awarded",
    )
    return {k: int(v) for k, v in rows[0].items()}
