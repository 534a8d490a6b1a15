"""`python -m tests.profile.fold_process DATABASE_URL NOW_ISO`: one daily maintenance body
in its own process, straight on the service (no job lock, no run key), printing its
counts as JSON. tests/profile/test_reputation.py starts two at once."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime

from server.core.context import SYSTEM_CONTEXT
from server.core.params_cache import Parameters
from server.db.session import Database
from server.profile.reputation import MaintenanceService


async def main(url: str, now: datetime) -> dict[str, int]:
    database = Database.from_url(url, pool_size=2, max_overflow=0)
    try:
        return await MaintenanceService(database, Parameters(database)).daily_maintenance(
            SYSTEM_CONTEXT, now
        )
    finally:
        await database.dispose()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], datetime.fromisoformat(sys.argv[2])))))
