"""The one writer of business settings, inside the caller's transaction: the row locked,
the new value checked by type and range (ops/domain.py checked_value, which decodes all
settings with it as the server will read them), written, and the change audited with old
and new value. OpsService.UpdateSetting and the board's ConversionService.UpdateDefaultRate
both change settings through it; each then invalidates its replica's parameters cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.core.context import RequestContext
from server.core.errors import NotFound
from server.core.settings_defaults import SETTINGS_DEFAULTS, SettingDefault
from server.core.validation import text
from server.ops import queries
from server.ops.domain import (
    MAX_KEY_LENGTH,
    SettingView,
    StoredSetting,
    checked_value,
    setting_view,
)


@dataclass(frozen=True, slots=True)
class LockedSetting:
    """A setting whose row this transaction holds FOR UPDATE."""

    key: str
    default: SettingDefault
    row: StoredSetting

    @property
    def view(self) -> SettingView:
        return setting_view(self.key, self.default, self.row)


def setting_default(key: str) -> SettingDefault:
    """The definition of the setting `key`; NOT_FOUND when the server has no such setting."""
    key = text(key, "key", min_length=1, max_length=MAX_KEY_LENGTH)
    default = SETTINGS_DEFAULTS.get(key)
    if default is None:
        raise NotFound(f"no setting {key!r}", metadata={"key": key})
    return default


async def current(session: AsyncSession, key: str) -> SettingView:
    return setting_view(key, setting_default(key), await queries.one_setting(session, key))


async def lock(session: AsyncSession, key: str) -> LockedSetting:
    default = setting_default(key)
    return LockedSetting(key, default, await queries.lock_setting(session, key, default))


# `write(value=UNCHANGED)`: keep the value (a description-only change).
UNCHANGED: Any = object()


async def write(
    session: AsyncSession,
    ctx: RequestContext,
    locked: LockedSetting,
    *,
    reason: str,
    value: Any = UNCHANGED,
    description: str | None = None,
) -> SettingView:
    """Write a new value and/or description of a locked setting and audit the change."""
    row = locked.row
    new_value = row.value
    if value is not UNCHANGED:
        stored = {k: r.value for k, r in (await queries.all_settings(session)).items()}
        new_value = checked_value(locked.key, value, stored)
    written = await queries.write_setting(
        session,
        locked.key,
        value=new_value,
        description=row.description if description is None else description,
        updated_by=ctx.actor_id,
    )
    await append(
        session,
        ctx,
        AuditEvent(
            action="setting.updated",
            scope="setting",
            ref_id=locked.key,
            # As JSON text: chained details take no floats (decimal factors are).
            details={
                "old_value": _json_text(row.value),
                "new_value": _json_text(written.value),
                "old_description": row.description,
                "new_description": written.description,
                "reason": reason,
            },
        ),
    )
    return setting_view(locked.key, locked.default, written)


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
