"""Database fixtures (a pytest plugin, listed in tests/conftest.py).

- `pg_admin_url` (session): a PostgreSQL server to create test databases on: DATABASE_URL
  when set, else an embedded PostgreSQL under .data/test-pg (kept running between runs so
  the next run starts fast; SMARTSTART_TEST_PG_DIR moves it).
- `pg_template` (session): the name of a database migrated to head once per session.
- `database_url` (function): a fresh database cloned from the template
  (CREATE DATABASE … TEMPLATE …, tens of milliseconds), dropped WITH (FORCE) afterwards
  while the next test runs (`Dropper`).
- `db` (function): a `Database` on `database_url`, disposed afterwards.
- `create_database` / `drop_database`: helpers for tests that need an empty database.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from server.db import migrate
from server.db.embedded import admin_url, with_database
from server.db.session import Database, normalize_url

REPO_ROOT = Path(__file__).resolve().parents[1]


def _quote(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")
    return f'"{name}"'


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


async def _admin_execute(admin: str, *statements: str) -> None:
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def create_database(admin: str, name: str, template: str | None = None) -> str:
    """CREATE DATABASE `name` (optionally from `template`); returns its URL."""
    clause = f" TEMPLATE {_quote(template)}" if template else ""
    await _admin_execute(admin, f"CREATE DATABASE {_quote(name)}{clause}")
    return with_database(admin, name)


async def drop_database(admin: str, name: str) -> None:
    await _admin_execute(admin, f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return normalize_url(url)
    data_dir = Path(os.environ.get("SMARTSTART_TEST_PG_DIR", REPO_ROOT / ".data" / "test-pg"))
    return admin_url(data_dir)


@pytest.fixture(scope="session")
async def pg_template(pg_admin_url: str) -> AsyncIterator[str]:
    name = unique_name("smartstart_tpl")
    url = await create_database(pg_admin_url, name)
    try:
        await asyncio.to_thread(migrate.upgrade, url, "head")
        # No one may connect to a template while it is being cloned.
        await _admin_execute(
            pg_admin_url, f"ALTER DATABASE {_quote(name)} WITH ALLOW_CONNECTIONS false"
        )
        yield name
    finally:
        await drop_database(pg_admin_url, name)


class Dropper:
    """Drops the tests' databases behind them: a DROP DATABASE costs about twice the clone
    (80-120 ms on PostgreSQL 15 here), so it overlaps the next test instead of delaying it.
    At most one is in flight."""

    def __init__(self, admin: str) -> None:
        self._admin = admin
        self._pending: asyncio.Task[None] | None = None

    async def drop(self, name: str) -> None:
        await self.wait()
        self._pending = asyncio.create_task(drop_database(self._admin, name))

    async def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending


@pytest.fixture(scope="session")
async def dropper(pg_admin_url: str) -> AsyncIterator[Dropper]:
    dropper = Dropper(pg_admin_url)
    try:
        yield dropper
    finally:
        await dropper.wait()


@pytest.fixture
async def database_url(pg_admin_url: str, pg_template: str, dropper: Dropper) -> AsyncIterator[str]:
    name = unique_name("smartstart_test")
    url = await create_database(pg_admin_url, name, template=pg_template)
    try:
        yield url
    finally:
        await dropper.drop(name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(database_url, pool_size=5, max_overflow=10)
    try:
        yield database
    finally:
        await database.dispose()
