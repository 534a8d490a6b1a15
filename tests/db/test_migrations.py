"""Alembic owns the schema: upgrade → downgrade → upgrade works, and models match migrations."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from server.core.settings_defaults import SETTINGS_DEFAULTS
from server.db import migrate
from server.db.session import Database
from server.models import metadata
from server.profile.badge_rules import validate_rule
from server.profile.seeds import SEED_BADGES
from tests.fixtures_db import create_database, drop_database, unique_name


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _with_connection(url: str, fn: Any) -> Any:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade_on_fresh_database(pg_admin_url: str) -> None:
    name = unique_name("smartstart_mig")
    url = await create_database(pg_admin_url, name)
    try:
        await asyncio.to_thread(migrate.upgrade, url, "head")
        assert set(metadata.tables) <= await _with_connection(url, _tables)

        await asyncio.to_thread(migrate.downgrade, url, "base")
        assert await _with_connection(url, _tables) == {"alembic_version"}
        remaining = await _with_connection(
            url,
            lambda c: c.execute(
                text("SELECT proname FROM pg_proc WHERE proname LIKE 'smartstart_%'")
            ).all(),
        )
        assert remaining == []

        await asyncio.to_thread(migrate.upgrade, url, "head")
        assert await _with_connection(url, _diff) == []
    finally:
        await drop_database(pg_admin_url, name)


def test_upgrade_works_without_a_running_loop(pg_admin_url: str) -> None:
    """The CLI path: a plain synchronous call (no event loop in this thread)."""
    name = unique_name("smartstart_mig")
    url = asyncio.run(create_database(pg_admin_url, name))
    try:
        migrate.upgrade(url)
        migrate.downgrade(url, "base")
    finally:
        asyncio.run(drop_database(pg_admin_url, name))


async def test_upgrade_from_inside_a_running_loop(pg_admin_url: str) -> None:
    """Called directly from async code, upgrade moves itself off the loop's thread."""
    name = unique_name("smartstart_mig")
    url = await create_database(pg_admin_url, name)
    try:
        migrate.upgrade(url)
        assert "wallets" in await _with_connection(url, _tables)
    finally:
        await drop_database(pg_admin_url, name)


async def test_models_match_migrations(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_seeded_settings_and_badges(db: Database) -> None:
    async with db.transaction() as session:
        settings: dict[str, Any] = dict(
            (await session.execute(text("SELECT key, value FROM system_settings"))).all()
        )
        badges: dict[str, Any] = dict(
            (await session.execute(text("SELECT code, rule FROM badges"))).all()
        )
    assert settings == {key: d.value for key, d in SETTINGS_DEFAULTS.items()}
    assert settings["buz.daily_cap"] == 2000
    assert settings["buz.tier_base"] == {"S": 400, "A": 150, "B": 80, "C": 50}
    assert badges == {b.code: b.rule for b in SEED_BADGES}
    assert len(badges) == 6
    # the contract's format (revision 0003 rewrote the initial revision's rows)
    assert badges["EARLY_CONTRIBUTOR"]["conditions"][0] == {"metric": "tasksAccepted", "gte": 5}
    for b in SEED_BADGES:
        assert validate_rule(b.rule_type, b.rule) == b.rule


async def test_0003_rewrites_badge_rules_both_ways(pg_admin_url: str) -> None:
    name = unique_name("smartstart_mig")
    url = await create_database(pg_admin_url, name)

    def rules(connection: Connection) -> dict[str, Any]:
        return dict(connection.execute(text("SELECT code, rule FROM badges")).all())

    try:
        await asyncio.to_thread(migrate.upgrade, url, "0001")
        old = await _with_connection(url, rules)
        assert old["BUG_HUNTER_BRONZE"] == {
            "conditions": [{"metric": "criticalBugReports", "op": "gte", "value": 3}]
        }
        await asyncio.to_thread(migrate.upgrade, url, "head")
        assert await _with_connection(url, rules) == {b.code: b.rule for b in SEED_BADGES}
        await asyncio.to_thread(migrate.downgrade, url, "0001")
        assert await _with_connection(url, rules) == old
    finally:
        await drop_database(pg_admin_url, name)
