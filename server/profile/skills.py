"""Skills use cases: the admin-kept catalogue, declared skills and their verification."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.core import idempotency
from server.core.access import caller_id
from server.core.context import RequestContext, Role
from server.core.errors import Aborted, NotFound
from server.core.pagination import Page, PageTokens, page_size
from server.core.validation import parse_uuid, request_key
from server.db.session import Database
from server.profile import queries as profile_queries
from server.profile import skills_queries as queries
from server.profile.privacy import require_visible, visible_user
from server.profile.skills_rules import (
    SkillView,
    UserSkillView,
    check_verifier,
    declared_level,
    evidence_url,
    skill_category,
    skill_name,
    slug,
    validate_skill_changes,
)

RPC = "smartstart.profile.v1.ProfileService"


class SkillService:
    def __init__(self, database: Database, page_tokens: PageTokens) -> None:
        self._db = database
        self._tokens = page_tokens

    # --- catalogue ------------------------------------------------------------------------------

    async def create_skill(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        slug_: str,
        name: str,
        category: str,
    ) -> SkillView:
        request_key(request_id)
        values = (slug(slug_), skill_name(name), skill_category(category))
        scope = idempotency.scope_for(f"{RPC}/CreateSkill", ctx.actor_id)

        async def tx(session: AsyncSession) -> SkillView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await self._skill(session, stored["slug"])
            created = await queries.insert_skill(session, *values)
            await append(
                session,
                ctx,
                AuditEvent(
                    action="skill.created",
                    scope="skill",
                    ref_id=created.slug,
                    details={"name": created.name, "category": created.category},
                ),
            )
            await idempotency.complete(session, scope, request_id, {"slug": created.slug})
            return created

        return await self._db.run(tx)

    async def update_skill(
        self, ctx: RequestContext, slug_: str, changes: Mapping[str, Any]
    ) -> SkillView:
        values = validate_skill_changes(changes)

        async def tx(session: AsyncSession) -> SkillView:
            updated = await queries.update_skill(session, slug_, values)
            await append(
                session,
                ctx,
                AuditEvent(action="skill.updated", scope="skill", ref_id=slug_, details=values),
            )
            return updated

        return await self._db.run(tx)

    async def list_skills(
        self, *, category: str, page_size_requested: int, page_token: str
    ) -> Page[SkillView]:
        size = page_size(page_size_requested)
        filters = {"category": category}
        keyset = self._tokens.decode(page_token, filters)
        async with self._db.read() as conn:
            skills = await queries.list_skills(
                conn,
                category=category or None,
                after=str(keyset[0]) if keyset else None,
                limit=size + 1,
            )
        return self._tokens.page(skills, size, filters, lambda s: [s.slug])

    async def _skill(self, session: AsyncSession, slug_: str) -> SkillView:
        found = await queries.skill(session, slug_)
        if found is None:
            raise NotFound("skill not found", metadata={"slug": slug_})
        return found

    # --- declared skills ------------------------------------------------------------------------

    async def declare_skill(
        self, ctx: RequestContext, *, skill_slug: str, level: int, evidence: str
    ) -> UserSkillView:
        me = caller_id(ctx)
        values = (declared_level(level), evidence_url(evidence))

        async def tx(session: AsyncSession) -> UserSkillView:
            await profile_queries.require_user(session, me)
            skill = await self._skill(session, skill_slug)
            if await queries.declare(session, me, skill.skill_id, *values):
                await append(
                    session,
                    ctx,
                    AuditEvent(
                        action="skill.declared",
                        scope="user",
                        ref_id=str(me),
                        details={"skill": skill.slug, "level": values[0], "evidence": values[1]},
                    ),
                )
            return await self._declared(session, me, skill.slug)

        return await self._db.run(tx)

    async def list_user_skills(
        self,
        ctx: RequestContext,
        *,
        user_id: str,
        verified_only: bool,
        page_size_requested: int,
        page_token: str,
    ) -> Page[UserSkillView]:
        size = page_size(page_size_requested)
        async with self._db.read() as conn:
            target = await visible_user(conn, ctx, user_id)
            filters = {"user_id": str(target), "verified_only": verified_only}
            keyset = self._tokens.decode(page_token, filters)
            skills = await queries.list_user_skills(
                conn,
                target,
                verified_only=verified_only,
                after=str(keyset[0]) if keyset else None,
                limit=size + 1,
            )
        return self._tokens.page(skills, size, filters, lambda s: [s.skill_slug])

    async def verify_skill(
        self, ctx: RequestContext, *, user_id: str, skill_slug: str, expected_level: int
    ) -> UserSkillView:
        verifier = caller_id(ctx)
        target = parse_uuid(user_id, "user_id")
        if expected_level:
            declared_level(expected_level, "expected_level")

        async def tx(session: AsyncSession) -> UserSkillView:
            await require_visible(session, ctx, target)
            skill = await queries.skill(session, skill_slug)
            declared = (
                await queries.lock_declared(session, target, skill.skill_id) if skill else None
            )
            if skill is None or declared is None:
                raise NotFound("declared skill not found", metadata={"skill_slug": skill_slug})
            level, verified = declared
            check_verifier(
                verifier_is_owner=verifier == target,
                verifier_is_admin=ctx.has(Role.ADMIN),
                verifier_level=await queries.verified_level(session, verifier, skill.skill_id),
                declared=level,
            )
            if expected_level and expected_level != level:
                raise Aborted(
                    "the declared level changed",
                    metadata={"declared_level": str(level), "expected_level": str(expected_level)},
                )
            if not verified:
                await queries.verify(session, target, skill.skill_id, str(verifier))
                await append(
                    session,
                    ctx,
                    AuditEvent(
                        action="skill.verified",
                        scope="user",
                        ref_id=str(target),
                        details={"skill": skill.slug, "level": level},
                    ),
                )
            return await self._declared(session, target, skill.slug)

        return await self._db.run(tx)

    @staticmethod
    async def _declared(session: AsyncSession, user: uuid.UUID, slug_: str) -> UserSkillView:
        found = await queries.user_skill(session, user, slug_)
        if found is None:  # pragma: no cover - read back in the transaction that wrote it
            raise RuntimeError("declared skill vanished")
        return found
