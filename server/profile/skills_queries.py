"""SQL of the skills catalogue, declared skills and endorsements."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.core.errors import AlreadyExists, NotFound
from server.core.pagination import TimeKey
from server.profile.skills_rules import EndorsementView, SkillView, UserSkillView

Conn = AsyncSession | AsyncConnection

# --- catalogue --------------------------------------------------------------------------------

_SKILL_COLUMNS = "id, slug, name, category, created_at, updated_at"
_INSERT_SKILL = text(
    "INSERT INTO skills (slug, name, category) VALUES (:slug, :name, :category)"  # noqa: S608
    f" ON CONFLICT (slug) DO NOTHING RETURNING {_SKILL_COLUMNS}"
)
_SKILL = text(f"SELECT {_SKILL_COLUMNS} FROM skills WHERE slug = :slug")  # noqa: S608
_LIST_SKILLS = text(
    f"SELECT {_SKILL_COLUMNS} FROM skills"  # noqa: S608
    " WHERE (CAST(:category AS text) IS NULL OR category = :category)"
    " AND (CAST(:after AS text) IS NULL OR slug > :after) ORDER BY slug LIMIT :limit"
)


def _skill(row: Any) -> SkillView:
    return SkillView(
        skill_id=row.id,
        slug=row.slug,
        name=row.name,
        category=row.category,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def insert_skill(session: AsyncSession, slug: str, name: str, category: str) -> SkillView:
    row = (
        await session.execute(_INSERT_SKILL, {"slug": slug, "name": name, "category": category})
    ).first()
    if row is None:
        raise AlreadyExists("a skill with this slug exists", metadata={"slug": slug})
    return _skill(row)


async def update_skill(session: AsyncSession, slug: str, values: Mapping[str, str]) -> SkillView:
    sets = ", ".join(f"{name} = :{name}" for name in values)  # names from SKILL_EDITABLE
    row = (
        await session.execute(
            text(
                f"UPDATE skills SET {sets}, updated_at = now() WHERE slug = :slug"  # noqa: S608
                f" RETURNING {_SKILL_COLUMNS}"
            ),
            {**values, "slug": slug},
        )
    ).first()
    if row is None:
        raise NotFound("skill not found", metadata={"slug": slug})
    return _skill(row)


async def skill(conn: Conn, slug: str) -> SkillView | None:
    row = (await conn.execute(_SKILL, {"slug": slug})).first()
    return _skill(row) if row is not None else None


async def list_skills(
    conn: Conn, *, category: str | None, after: str | None, limit: int
) -> list[SkillView]:
    rows = await conn.execute(_LIST_SKILLS, {"category": category, "after": after, "limit": limit})
    return [_skill(row) for row in rows]


# --- declared skills --------------------------------------------------------------------------

# A changed level or evidence clears the verification; the same values change nothing (no
# row returned).
_DECLARE = text(
    "INSERT INTO user_skills (user_id, skill_id, level, evidence_url)"
    " VALUES (:user_id, :skill_id, :level, :evidence_url)"
    " ON CONFLICT (user_id, skill_id) DO UPDATE SET level = EXCLUDED.level,"
    " evidence_url = EXCLUDED.evidence_url, verified_by = NULL, verified_at = NULL,"
    " updated_at = now()"
    " WHERE user_skills.level <> EXCLUDED.level"
    " OR user_skills.evidence_url IS DISTINCT FROM EXCLUDED.evidence_url"
    " RETURNING level"
)
_USER_SKILL_COLUMNS = (
    "us.user_id, s.slug, s.name, s.category, us.level, us.evidence_url, us.verified_by,"
    " us.verified_at, us.created_at, us.updated_at,"
    " (SELECT count(*) FROM endorsements e WHERE e.endorsee_id = us.user_id"
    "  AND e.skill_id = us.skill_id) AS endorsements"
)
_USER_SKILL = text(
    f"SELECT {_USER_SKILL_COLUMNS} FROM user_skills us JOIN skills s ON s.id = us.skill_id"  # noqa: S608
    " WHERE us.user_id = :user_id AND s.slug = :slug"
)
_LIST_USER_SKILLS = text(
    f"SELECT {_USER_SKILL_COLUMNS} FROM user_skills us JOIN skills s ON s.id = us.skill_id"  # noqa: S608
    " WHERE us.user_id = :user_id AND (NOT :verified_only OR us.verified_at IS NOT NULL)"
    " AND (CAST(:after AS text) IS NULL OR s.slug > :after) ORDER BY s.slug LIMIT :limit"
)
_LOCK_DECLARED = text(
    "SELECT level, verified_at FROM user_skills WHERE user_id = :user_id AND skill_id = :skill_id"
    " FOR UPDATE"
)
_VERIFIED_LEVEL = text(
    "SELECT level FROM user_skills WHERE user_id = :user_id AND skill_id = :skill_id"
    " AND verified_at IS NOT NULL"
)
_VERIFY = text(
    "UPDATE user_skills SET verified_by = :verifier, verified_at = now()"
    " WHERE user_id = :user_id AND skill_id = :skill_id"
)


def _user_skill(row: Any) -> UserSkillView:
    return UserSkillView(
        user_id=row.user_id,
        skill_slug=row.slug,
        skill_name=row.name,
        skill_category=row.category,
        level=row.level,
        evidence_url=row.evidence_url or "",
        verified_by=row.verified_by or "",
        verified_at=row.verified_at,
        endorsement_count=int(row.endorsements),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def declare(
    session: AsyncSession,
    user_id: uuid.UUID,
    skill_id: uuid.UUID,
    level: int,
    evidence: str | None,
) -> bool:
    """Declare or re-declare; whether anything changed."""
    params = {"user_id": user_id, "skill_id": skill_id, "level": level, "evidence_url": evidence}
    return (await session.execute(_DECLARE, params)).first() is not None


async def user_skill(conn: Conn, user_id: uuid.UUID, slug: str) -> UserSkillView | None:
    row = (await conn.execute(_USER_SKILL, {"user_id": user_id, "slug": slug})).first()
    return _user_skill(row) if row is not None else None


async def list_user_skills(
    conn: Conn, user_id: uuid.UUID, *, verified_only: bool, after: str | None, limit: int
) -> list[UserSkillView]:
    rows = await conn.execute(
        _LIST_USER_SKILLS,
        {"user_id": user_id, "verified_only": verified_only, "after": after, "limit": limit},
    )
    return [_user_skill(row) for row in rows]


async def lock_declared(
    session: AsyncSession, user_id: uuid.UUID, skill_id: uuid.UUID
) -> tuple[int, bool] | None:
    """(level, verified) of a declared skill, its row locked; None when not declared."""
    row = (
        await session.execute(_LOCK_DECLARED, {"user_id": user_id, "skill_id": skill_id})
    ).first()
    return (int(row.level), row.verified_at is not None) if row is not None else None


async def verified_level(conn: Conn, user_id: uuid.UUID, skill_id: uuid.UUID) -> int | None:
    found = (
        await conn.execute(_VERIFIED_LEVEL, {"user_id": user_id, "skill_id": skill_id})
    ).scalar()
    return int(found) if found is not None else None


async def verify(
    session: AsyncSession, user_id: uuid.UUID, skill_id: uuid.UUID, verifier: str
) -> None:
    await session.execute(_VERIFY, {"user_id": user_id, "skill_id": skill_id, "verifier": verifier})


# --- endorsements -----------------------------------------------------------------------------

_INSERT_ENDORSEMENT = text(
    "INSERT INTO endorsements (endorser_id, endorsee_id, skill_id, endorsed_on, weight_milli,"
    " xp_awarded) VALUES (:endorser, :endorsee, :skill_id, :day, :weight, :xp)"
    " ON CONFLICT (endorser_id, endorsee_id, skill_id) DO NOTHING RETURNING id"
)
_EXISTING = text(
    "SELECT id FROM endorsements WHERE endorser_id = :endorser AND endorsee_id = :endorsee"
    " AND skill_id = :skill_id"
)
_GIVEN_ON = text(
    "SELECT count(*) FROM endorsements WHERE endorser_id = :endorser AND endorsed_on = :day"
)
_ENDORSEMENT_COLUMNS = (
    "e.id, e.endorser_id, e.endorsee_id, s.slug, e.created_at"
    " FROM endorsements e JOIN skills s ON s.id = e.skill_id"
)
_ENDORSEMENT = text(f"SELECT {_ENDORSEMENT_COLUMNS} WHERE e.id = :id")
_LIST = {
    side: text(
        f"SELECT {_ENDORSEMENT_COLUMNS} WHERE e.{side} = :user_id"
        " AND (CAST(:slug AS text) IS NULL OR s.slug = :slug)"
        " AND (CAST(:before_at AS timestamptz) IS NULL"
        "  OR (e.created_at, e.id) < (:before_at, CAST(:before_id AS uuid)))"
        " ORDER BY e.created_at DESC, e.id DESC LIMIT :limit"
    )
    for side in ("endorsee_id", "endorser_id")
}


def _endorsement(row: Any) -> EndorsementView:
    return EndorsementView(
        endorsement_id=row.id,
        endorser_user_id=row.endorser_id,
        endorsee_user_id=row.endorsee_id,
        skill_slug=row.slug,
        created_at=row.created_at,
    )


async def existing_endorsement(
    session: AsyncSession, endorser: uuid.UUID, endorsee: uuid.UUID, skill_id: uuid.UUID
) -> uuid.UUID | None:
    params = {"endorser": endorser, "endorsee": endorsee, "skill_id": skill_id}
    found: uuid.UUID | None = (await session.execute(_EXISTING, params)).scalar()
    return found


async def given_on(session: AsyncSession, endorser: uuid.UUID, day: date) -> int:
    return int((await session.execute(_GIVEN_ON, {"endorser": endorser, "day": day})).scalar_one())


async def insert_endorsement(
    session: AsyncSession,
    *,
    endorser: uuid.UUID,
    endorsee: uuid.UUID,
    skill_id: uuid.UUID,
    day: date,
    weight_milli: int,
    xp: int,
) -> uuid.UUID:
    found: uuid.UUID = (
        await session.execute(
            _INSERT_ENDORSEMENT,
            {
                "endorser": endorser,
                "endorsee": endorsee,
                "skill_id": skill_id,
                "day": day,
                "weight": weight_milli,
                "xp": xp,
            },
        )
    ).scalar_one()
    return found


async def endorsement(conn: Conn, endorsement_id: uuid.UUID) -> EndorsementView:
    return _endorsement((await conn.execute(_ENDORSEMENT, {"id": endorsement_id})).one())


async def list_endorsements(
    conn: Conn,
    user_id: uuid.UUID,
    *,
    given: bool,
    slug: str | None,
    before: TimeKey | None,
    limit: int,
) -> list[EndorsementView]:
    rows = await conn.execute(
        _LIST["endorser_id" if given else "endorsee_id"],
        {
            "user_id": user_id,
            "slug": slug,
            "before_at": before[0] if before else None,
            "before_id": before[1] if before else None,
            "limit": limit,
        },
    )
    return [_endorsement(row) for row in rows]
