"""`smartstart seed` data: idempotent, restores deleted defaults."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from server import seed
from server.core.settings_defaults import SETTINGS_DEFAULTS
from server.db.session import Database
from server.ops.models import SystemSetting
from server.profile.seeds import SEED_SKILLS


async def test_seed_is_idempotent_and_restores(db: Database) -> None:
    # the migrations seeded settings and badges; the skills catalogue comes with the seed
    assert await seed.run(db) == {"system_settings": 0, "badges": 0, "skills": len(SEED_SKILLS)}
    assert await seed.run(db) == {"system_settings": 0, "badges": 0, "skills": 0}
    async with db.transaction() as session:
        await session.execute(delete(SystemSetting).where(SystemSetting.key == "buz.daily_cap"))
    assert await seed.run(db) == {"system_settings": 1, "badges": 0, "skills": 0}
    async with db.transaction() as session:
        count = await session.scalar(select(func.count()).select_from(SystemSetting))
    assert count == len(SETTINGS_DEFAULTS)
