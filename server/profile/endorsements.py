"""Endorsement use cases: a user endorses another for a skill the endorsee declared.

One transaction locks both profiles (ascending wallet id, server/profile/gains.py), which
serialises each endorser's daily limit and each endorsee's daily endorsement XP cap, then
checks, in order: the endorsee may be seen (NOT_FOUND), declared the skill
(FAILED_PRECONDITION), was not endorsed for it by the caller yet (ALREADY_EXISTS), and the
caller gave fewer than the daily limit today (RESOURCE_EXHAUSTED with RetryInfo to the next
UTC midnight). The endorsee earns round_half_up(2 × the endorser's trust weight) XP, cut to
what is left of the day's endorsement XP cap, and the weight counts for their reputation.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.core import idempotency
from server.core.access import caller_id
from server.core.clock import Clock, system_clock
from server.core.context import RequestContext
from server.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from server.core.pagination import Page, PageTokens, page_size, time_key
from server.core.params_cache import Parameters
from server.core.validation import parse_uuid, request_key
from server.db.session import Database
from server.profile import gains
from server.profile import skills_queries as queries
from server.profile.gamification import endorsement_xp, trust_weight_milli
from server.profile.privacy import require_visible, visible_user
from server.profile.skills_rules import EndorsementView, check_daily_limit, endorsement_day

RPC = "smartstart.profile.v1.ProfileService"


class EndorsementService:
    def __init__(
        self,
        database: Database,
        params: Parameters,
        page_tokens: PageTokens,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._db = database
        self._params = params
        self._tokens = page_tokens
        self._clock = clock

    async def endorse(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        endorsee_user_id: str,
        skill_slug: str,
    ) -> EndorsementView:
        request_key(request_id)
        endorser = caller_id(ctx)
        endorsee = parse_uuid(endorsee_user_id, "endorsee_user_id")
        if endorsee == endorser:
            raise InvalidArgument.field("endorsee_user_id", "must not be the caller")
        params = await self._params.current()
        now = self._clock()
        scope = idempotency.scope_for(f"{RPC}/EndorseUser", ctx.actor_id)

        async def tx(session: AsyncSession) -> EndorsementView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await queries.endorsement(session, uuid.UUID(stored["endorsement_id"]))
            await require_visible(session, ctx, endorsee)
            standings = await gains.lock_profiles(session, [endorser, endorsee])
            declared = await queries.user_skill(session, endorsee, skill_slug)
            skill = await queries.skill(session, skill_slug) if declared else None
            if declared is None or skill is None:
                raise FailedPrecondition(
                    "the endorsee has not declared this skill", metadata={"skill_slug": skill_slug}
                )
            taken = await queries.existing_endorsement(session, endorser, endorsee, skill.skill_id)
            if taken is not None:
                raise AlreadyExists(
                    "you already endorsed this user for this skill",
                    metadata={"endorsement_id": str(taken)},
                )
            day = endorsement_day(now)
            given = await queries.given_on(session, endorser, day)
            check_daily_limit(given, params.endorsements.daily_limit, now)
            weight = trust_weight_milli(standings[endorser].rep_milli, params.trust)
            already = await gains.endorsement_xp_on(session, standings[endorsee], now)
            xp = endorsement_xp(weight, already, params.xp)
            endorsement_id = await queries.insert_endorsement(
                session,
                endorser=endorser,
                endorsee=endorsee,
                skill_id=skill.skill_id,
                day=day,
                weight_milli=weight,
                xp=xp,
            )
            await gains.apply(
                session,
                now=now,
                levels=params.levels,
                standings=standings,
                gains={
                    endorsee: gains.Gain(xp=xp, endorsement_weight_milli=weight, endorsement_xp=xp)
                },
                counters={endorsee: {"endorsements_received": 1}},
            )
            await append(
                session,
                ctx,
                AuditEvent(
                    action="endorsement.created",
                    scope="user",
                    ref_id=str(endorsee),
                    details={
                        "endorsement_id": str(endorsement_id),
                        "endorser": str(endorser),
                        "skill": skill.slug,
                        "weight_milli": weight,
                        "xp": xp,
                    },
                ),
            )
            await idempotency.complete(
                session, scope, request_id, {"endorsement_id": str(endorsement_id)}
            )
            return await queries.endorsement(session, endorsement_id)

        return await self._db.run(tx)

    async def list_endorsements(
        self,
        ctx: RequestContext,
        *,
        user_id: str,
        given: bool,
        skill_slug: str,
        page_size_requested: int,
        page_token: str,
    ) -> Page[EndorsementView]:
        size = page_size(page_size_requested)
        async with self._db.read() as conn:
            target = await visible_user(conn, ctx, user_id)
            filters = {"user_id": str(target), "given": given, "skill": skill_slug}
            before = self._tokens.time_keyset(page_token, filters)
            rows = await queries.list_endorsements(
                conn, target, given=given, slug=skill_slug or None, before=before, limit=size + 1
            )
        return self._tokens.page(
            rows, size, filters, lambda e: time_key(e.created_at, e.endorsement_id)
        )
