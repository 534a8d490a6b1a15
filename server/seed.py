"""Development data for `smartstart seed`. Idempotent: running it twice changes nothing.

It makes sure every business setting and every seeded badge exists (the migrations seed
them too; this restores any that were deleted in a development database), and adds a small
skills catalogue (server/profile/seeds.py SEED_SKILLS) beside them.
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert

from server.core.settings_defaults import SETTINGS_DEFAULTS
from server.db.session import Database
from server.ops.models import SystemSetting
from server.profile.models import Badge, Skill
from server.profile.seeds import SEED_BADGES, SEED_SKILLS


async def run(database: Database) -> dict[str, int]:
    """Insert what is missing; the number of rows added per table."""
    async with database.transaction() as session:
        settings = await session.execute(
            insert(SystemSetting)
            .values(
                [
                    {"key": key, "value": d.value, "description": d.description}
                    for key, d in SETTINGS_DEFAULTS.items()
                ]
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(SystemSetting.key)
        )
        badges = await session.execute(
            insert(Badge)
            .values(
                [
                    {
                        "code": b.code,
                        "title": b.title,
                        "description": b.description,
                        "icon": b.icon,
                        "rule_type": b.rule_type,
                        "rule": b.rule,
                    }
                    for b in SEED_BADGES
                ]
            )
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(Badge.code)
        )
        skills = await session.execute(
            insert(Skill)
            .values([s._asdict() for s in SEED_SKILLS])
            .on_conflict_do_nothing(index_elements=["slug"])
            .returning(Skill.slug)
        )
        return {
            "system_settings": len(settings.all()),
            "badges": len(badges.all()),
            "skills": len(skills.all()),
        }
