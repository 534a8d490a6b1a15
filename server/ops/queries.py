"""The ops package's SQL: business settings rows, the database probe and the integrity
summary of the audit tables."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.queries import INTEGRITY_SUMMARY
from server.core.settings_defaults import SettingDefault
from server.db.session import Database
from server.ops.domain import SEEDED_BY, StoredSetting

_ALL = text("SELECT key, value, description, updated_at, updated_by FROM system_settings")
_ONE = text(
    "SELECT key, value, description, updated_at, updated_by FROM system_settings WHERE key = :key"
)
# A key added to the defaults after the seeding migration has no row yet: create it with its
# default (as seeded) in the updating transaction, so every update is a locked UPDATE.
_ENSURE = text(
    "INSERT INTO system_settings (key, value, description, updated_by)"
    " VALUES (:key, CAST(:value AS jsonb), :description, :seeded_by)"
    " ON CONFLICT (key) DO NOTHING"
)
_LOCK = text(
    "SELECT key, value, description, updated_at, updated_by FROM system_settings"
    " WHERE key = :key FOR UPDATE"
)
_WRITE = text(
    "UPDATE system_settings SET value = CAST(:value AS jsonb), description = :description,"
    " updated_by = :updated_by, updated_at = clock_timestamp() WHERE key = :key"
    " RETURNING key, value, description, updated_at, updated_by"
)


def _stored(row: Any) -> StoredSetting:
    return StoredSetting(
        value=row.value,
        description=str(row.description),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


async def all_settings(session: AsyncSession) -> dict[str, StoredSetting]:
    rows = (await session.execute(_ALL)).all()
    return {str(row.key): _stored(row) for row in rows}


async def one_setting(session: AsyncSession, key: str) -> StoredSetting | None:
    row = (await session.execute(_ONE, {"key": key})).first()
    return _stored(row) if row is not None else None


async def lock_setting(session: AsyncSession, key: str, default: SettingDefault) -> StoredSetting:
    """The setting's row, locked until the transaction ends (created at its default first
    when it has none)."""
    await session.execute(
        _ENSURE,
        {
            "key": key,
            "value": json.dumps(default.value),
            "description": default.description,
            "seeded_by": SEEDED_BY,
        },
    )
    return _stored((await session.execute(_LOCK, {"key": key})).one())


async def write_setting(
    session: AsyncSession, key: str, *, value: Any, description: str, updated_by: str | None
) -> StoredSetting:
    row = (
        await session.execute(
            _WRITE,
            {
                "key": key,
                "value": json.dumps(value),
                "description": description,
                "updated_by": updated_by,
            },
        )
    ).one()
    return _stored(row)


async def ping(database: Database) -> None:
    """One round trip to the database."""
    async with database.read() as conn:
        await conn.execute(text("SELECT 1"))


async def integrity_summary(
    database: Database,
) -> tuple[datetime | None, int, datetime | None]:
    """(last checkpoint's time, open incidents, oldest open incident's detection time)."""
    async with database.read() as conn:
        row = (await conn.execute(INTEGRITY_SUMMARY)).one()
    return row.last_checkpoint_at, int(row.open_incidents), row.oldest_open_incident_at
