"""The business parameters of one process: `system_settings` rows decoded over their defaults
(server/core/params.py), cached.

Reads are served from memory and refreshed at most every `ttl_s` seconds (one query for all
rows), so a change made through OpsService.UpdateSetting reaches every replica within
`ttl_s`; the replica that made it invalidates its cache at once.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text

from server.core.params import DEFAULTS, BusinessParams
from server.db.session import Database

DEFAULT_TTL_S = 30.0


class Parameters:
    """The current BusinessParams of one process, cached for ttl_s."""

    def __init__(self, database: Database, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._database = database
        self._ttl_s = ttl_s
        self._current = DEFAULTS
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def current(self) -> BusinessParams:
        """All parameters, fresh within ttl_s. Take one per use case to keep it consistent."""
        if time.monotonic() - self._loaded_at > self._ttl_s:
            async with self._lock:
                if time.monotonic() - self._loaded_at > self._ttl_s:
                    await self._load()
        return self._current

    async def _load(self) -> None:
        async with self._database.transaction() as session:
            rows = (await session.execute(text("SELECT key, value FROM system_settings"))).all()
        self._current = BusinessParams.decode({str(row.key): row.value for row in rows})
        self._loaded_at = time.monotonic()
