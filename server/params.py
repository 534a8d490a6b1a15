"""Business parameters: `system_settings` rows over the SPEC defaults, cached per process.

Reads are served from memory and refreshed at most every `ttl_s` seconds (one query for all
rows), so a change made through OpsService.UpdateSetting reaches every replica within
`ttl_s`; the replica that made it invalidates its cache at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from server.db.session import Database
from server.settings_defaults import SETTINGS_DEFAULTS

DEFAULT_TTL_S = 30.0


class Parameters:
    def __init__(self, database: Database, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._database = database
        self._ttl_s = ttl_s
        self._values: dict[str, Any] = {k: d.value for k, d in SETTINGS_DEFAULTS.items()}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def snapshot(self) -> Mapping[str, Any]:
        """All parameters, fresh within ttl_s. One snapshot per use case keeps it consistent."""
        if time.monotonic() - self._loaded_at > self._ttl_s:
            async with self._lock:
                if time.monotonic() - self._loaded_at > self._ttl_s:
                    await self._load()
        return self._values

    async def _load(self) -> None:
        async with self._database.transaction() as session:
            rows = (await session.execute(text("SELECT key, value FROM system_settings"))).all()
        values = {k: d.value for k, d in SETTINGS_DEFAULTS.items()}
        values.update({str(row.key): row.value for row in rows})
        self._values = values
        self._loaded_at = time.monotonic()

    async def get(self, key: str) -> Any:
        return (await self.snapshot())[key]

    async def get_int(self, key: str) -> int:
        return int(await self.get(key))

    async def get_decimal(self, key: str) -> Decimal:
        return Decimal(str(await self.get(key)))
