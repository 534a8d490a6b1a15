"""Database: transactions commit or roll back as a unit; run() retries 40001 / 40P01 only."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.session import Database, normalize_url, sqlstate_of

RAISE = "DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '{code}'; END $$"


def test_normalize_url() -> None:
    assert normalize_url("postgres://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert normalize_url("postgresql://u@h:5/d?x=1") == "postgresql+asyncpg://u@h:5/d?x=1"
    assert normalize_url("postgresql+asyncpg://u@h/d") == "postgresql+asyncpg://u@h/d"
    with pytest.raises(ValueError, match="postgresql"):
        normalize_url("sqlite:///x.db")


async def test_transaction_commits_and_rolls_back(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO system_settings (key, value) VALUES ('t.a', '1')"))

    async def insert_then_fail() -> None:
        async with db.transaction() as session:
            await session.execute(
                text("INSERT INTO system_settings (key, value) VALUES ('t.b', '1')")
            )
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await insert_then_fail()
    async with db.transaction() as session:
        keys = await session.execute(text("SELECT key FROM system_settings WHERE key LIKE 't.%'"))
        assert keys.scalars().all() == ["t.a"]


@pytest.mark.parametrize("code", ["40001", "40P01"])
async def test_run_retries_serialization_failures_and_deadlocks(db: Database, code: str) -> None:
    calls = 0

    async def flaky(session: AsyncSession) -> int:
        nonlocal calls
        calls += 1
        await session.execute(
            text("INSERT INTO system_settings (key, value) VALUES (:k, '1')"), {"k": f"r.{calls}"}
        )
        if calls < 3:
            await session.execute(text(RAISE.format(code=code)))
        return calls

    assert await db.run(flaky) == 3
    async with db.transaction() as session:
        keys = await session.execute(text("SELECT key FROM system_settings WHERE key LIKE 'r.%'"))
        assert keys.scalars().all() == ["r.3"]  # the failed attempts left nothing behind


async def test_run_gives_up_after_attempts_and_skips_other_errors(db: Database) -> None:
    calls = 0

    async def always(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        await session.execute(text(RAISE.format(code="40001")))

    with pytest.raises(DBAPIError) as caught:
        await db.run(always, attempts=2)
    assert calls == 2
    assert sqlstate_of(caught.value) == "40001"

    calls = 0

    async def broken(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        await session.execute(text(RAISE.format(code="23505")))

    with pytest.raises(DBAPIError):
        await db.run(broken)
    assert calls == 1


async def test_statement_cache_off_works(database_url: str) -> None:
    database = Database.from_url(database_url, statement_cache=False, pool_size=2)
    try:
        for _ in range(3):
            assert await database.run(lambda s: s.scalar(text("SELECT count(*) FROM badges"))) == 6
    finally:
        await database.dispose()


async def test_run_survives_a_connection_killed_under_the_pool(database_url: str) -> None:
    """No pre-ping: a dead pooled connection fails one attempt, `run` retries on a new one."""
    db = Database.from_url(database_url, pool_size=1, max_overflow=0)
    try:

        async def backend_pid(session: AsyncSession) -> int:
            return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())

        first = await db.run(backend_pid)
        killer = Database.from_url(database_url, pool_size=1, max_overflow=0)
        try:
            async with killer.read() as conn:
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        finally:
            await killer.dispose()
        second = await db.run(backend_pid)
        assert second != first
    finally:
        await db.dispose()


async def test_read_runs_each_statement_in_its_own_transaction(db: Database) -> None:
    txid = text("SELECT txid_current()")
    async with db.read() as conn:
        first, second = (await conn.execute(txid)).scalar(), (await conn.execute(txid)).scalar()
    assert first != second  # autocommit: no BEGIN, no COMMIT round trips
    async with db.transaction() as session:
        first, second = (
            (await session.execute(txid)).scalar(),
            (await session.execute(txid)).scalar(),
        )
    assert first == second


async def test_read_rows_returns_records_and_maps_errors(db: Database) -> None:
    rows = await db.read_rows("SELECT n, 'x' AS s FROM unnest($1::int[]) AS n", [7, 8])
    assert [(row["n"], row["s"]) for row in rows] == [(7, "x"), (8, "x")]
    assert await db.read_rows("SELECT 1 WHERE false") == []
    with pytest.raises(DBAPIError) as err:
        await db.read_rows("SELECT 1 / $1::int", 0)
    assert sqlstate_of(err.value) == "22012"  # division_by_zero, as SQLAlchemy would raise it


async def test_connections_plan_each_constant_statement_once(db: Database) -> None:
    async with db.read() as conn:
        mode = (await conn.exec_driver_sql("SHOW plan_cache_mode")).scalar()
        zone = (await conn.exec_driver_sql("SHOW timezone")).scalar()
    assert (mode, zone) == ("force_generic_plan", "UTC")
