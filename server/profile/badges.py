"""Badge use cases: the directory (public), admin create/update with rule validation,
manual award and revocation, a user's awards, and the hourly badge evaluation job.

An award is once per (user, badge) (the unique key; a revoked award stays and blocks a new
one), keeps the metric snapshot that earned it, credits badge_xp (50) and one badge to the
day's reputation gain (server/profile/gains.py), and is audited.

The job evaluates the users whose metrics changed since its last run (every metric writer
touches user_metrics.updated_at; a margin covers writers that committed late). Every user
is evaluated in a full pass on its first run of each UTC day (daysSinceJoin and
deviceCompliantDays move with time, not events) and on its first run after the daily
maintenance, which moves every repScore and may repair levels. Users are read and awarded
in chunks, one transaction per chunk.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append, append_many
from server.core import idempotency
from server.core.clock import Clock, system_clock
from server.core.context import RequestContext
from server.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from server.core.pagination import Page, PageTokens, page_size, time_key
from server.core.params import BusinessParams
from server.core.params_cache import Parameters
from server.core.validation import parse_uuid, request_key, text
from server.db.session import Database
from server.profile import badge_queries as queries
from server.profile import gains
from server.profile import queries as profile_queries
from server.profile.badge_rules import (
    MAX_NOTE_LENGTH,
    AwardView,
    BadgeView,
    badge_code,
    badge_text,
    compile_rule,
    metric_values,
    rule_metrics,
    snapshot,
    validate_badge_changes,
    validate_rule,
)
from server.profile.domain import BadgeRuleType, utc_day
from server.profile.gamification import badge_xp
from server.profile.privacy import sees_everything, visible_user

RPC = "smartstart.profile.v1.ProfileService"
CHUNK = 1000
# Writers stamp user_metrics.updated_at with their transaction's start; one that commits
# after the job read the changes is caught by the next run within this margin.
CHANGE_MARGIN = timedelta(minutes=10)
_RULE_TYPES = frozenset(BadgeRuleType)

Award = tuple[uuid.UUID, uuid.UUID, Mapping[str, Any], str | None]  # user, badge, snapshot, by


def _audit(values: Mapping[str, Any]) -> dict[str, Any]:
    """Audit details hold no floats (the chain hashes integers only): rules and snapshots
    are recorded as their JSON text."""
    return {k: json.dumps(v, sort_keys=True) if k == "rule" else v for k, v in values.items()}


class BadgeService:
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

    # --- directory ------------------------------------------------------------------------------

    async def list_badges(
        self, *, rule_type: str, page_size_requested: int, page_token: str
    ) -> Page[BadgeView]:
        size = page_size(page_size_requested)
        filters = {"rule_type": rule_type}
        keyset = self._tokens.decode(page_token, filters)
        async with self._db.read() as conn:
            rows = await queries.list_badges(
                conn,
                rule_type=rule_type or None,
                after=str(keyset[0]) if keyset else None,
                limit=size + 1,
            )
        return self._tokens.page(rows, size, filters, lambda b: [b.code])

    async def get_badge(self, code: str) -> BadgeView:
        async with self._db.read() as conn:
            return await queries.badge(conn, code)

    async def create_badge(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        code: str,
        title: str,
        description: str,
        icon: str,
        rule_type: str,
        rule: Mapping[str, Any] | None,
    ) -> BadgeView:
        request_key(request_id)
        if rule_type not in _RULE_TYPES:
            raise InvalidArgument.field("rule_type", "must be THRESHOLD, COMPOSITE or MANUAL")
        values = {
            "code": badge_code(code),
            "title": badge_text("title", title),
            "description": badge_text("description", description),
            "icon": badge_text("icon", icon),
            "rule_type": rule_type,
            "rule": validate_rule(rule_type, rule),
        }
        scope = idempotency.scope_for(f"{RPC}/CreateBadge", ctx.actor_id)

        async def tx(session: AsyncSession) -> BadgeView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is None:
                await queries.insert_badge(session, values)
                await append(
                    session,
                    ctx,
                    AuditEvent(
                        action="badge.created", scope="badge", ref_id=code, details=_audit(values)
                    ),
                )
                await idempotency.complete(session, scope, request_id, {"code": code})
            return await queries.badge(session, code)

        return await self._db.run(tx)

    async def update_badge(
        self, ctx: RequestContext, code: str, changes: Mapping[str, Any]
    ) -> BadgeView:
        if not changes:
            raise InvalidArgument.field("update_mask", "must name at least one field")

        async def tx(session: AsyncSession) -> BadgeView:
            current = await queries.badge(session, code, lock=True)
            values = validate_badge_changes(current.rule_type, changes)
            await queries.update_badge(session, code, values)
            await append(
                session,
                ctx,
                AuditEvent(
                    action="badge.updated", scope="badge", ref_id=code, details=_audit(values)
                ),
            )
            return await queries.badge(session, code)

        return await self._db.run(tx)

    # --- awards ---------------------------------------------------------------------------------

    async def award_badge(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        code: str,
        user_id: str,
        note: str,
    ) -> AwardView:
        request_key(request_id)
        target = parse_uuid(user_id, "user_id")
        note = text(note, "note", max_length=MAX_NOTE_LENGTH)
        params, now = await self._params.current(), self._clock()
        scope = idempotency.scope_for(f"{RPC}/AwardBadge", ctx.actor_id)

        async def tx(session: AsyncSession) -> AwardView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is None:
                badge = await queries.badge(session, code)
                await profile_queries.require_user(session, target)
                if badge.rule_type != BadgeRuleType.MANUAL:
                    raise FailedPrecondition(
                        "only MANUAL badges are awarded by hand", metadata={"code": code}
                    )
                award = (target, badge.badge_id, {"note": note}, ctx.actor_id)
                if not await self._award(
                    session, ctx, params, now, [award], {badge.badge_id: code}
                ):
                    raise AlreadyExists(
                        "the user has, or had, this badge: an award is once per user and badge",
                        metadata={"code": code, "user_id": str(target)},
                    )
                await idempotency.complete(session, scope, request_id, {"code": code})
            return await self._held(session, target, code)

        return await self._db.run(tx)

    async def revoke_award(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        code: str,
        user_id: str,
        reason: str,
    ) -> AwardView:
        request_key(request_id)
        target = parse_uuid(user_id, "user_id")
        reason = text(reason, "reason", min_length=1, max_length=MAX_NOTE_LENGTH)
        scope = idempotency.scope_for(f"{RPC}/RevokeBadgeAward", ctx.actor_id)

        async def tx(session: AsyncSession) -> AwardView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is None:
                if not await queries.revoke(
                    session, user_id=target, code=code, by=ctx.actor_id or "", reason=reason
                ):
                    held = await queries.award(session, target, code)
                    if held is None:
                        raise NotFound("no award of this badge to this user")
                    raise FailedPrecondition(
                        "the award is already revoked", metadata={"status": held.status}
                    )
                await append(
                    session,
                    ctx,
                    AuditEvent(
                        action="badge.revoked",
                        scope="user",
                        ref_id=str(target),
                        details={"badge": code, "reason": reason},
                    ),
                )
                await idempotency.complete(session, scope, request_id, {"code": code})
            return await self._held(session, target, code)

        return await self._db.run(tx)

    async def list_user_badges(
        self,
        ctx: RequestContext,
        *,
        user_id: str,
        include_revoked: bool,
        page_size_requested: int,
        page_token: str,
    ) -> Page[AwardView]:
        size = page_size(page_size_requested)
        async with self._db.read() as conn:
            target = await visible_user(conn, ctx, user_id)
            privileged = sees_everything(ctx, target)
            revoked = include_revoked and privileged  # ignored for others
            filters = {"user_id": str(target), "include_revoked": revoked}
            before = self._tokens.time_keyset(page_token, filters)
            rows = await queries.list_awards(
                conn, target, include_revoked=revoked, before=before, limit=size + 1
            )
        if not privileged:
            rows = [replace(a, metric_snapshot={}, revoke_reason="") for a in rows]
        return self._tokens.page(rows, size, filters, lambda a: time_key(a.awarded_at, a.award_id))

    @staticmethod
    async def _held(session: AsyncSession, user: uuid.UUID, code: str) -> AwardView:
        found = await queries.award(session, user, code)
        if found is None:  # pragma: no cover - awards are never deleted
            raise RuntimeError("award vanished")
        return found

    @staticmethod
    async def _award(
        session: AsyncSession,
        ctx: RequestContext,
        params: BusinessParams,
        now: datetime,
        awards: Sequence[Award],
        codes: Mapping[uuid.UUID, str],
    ) -> int:
        """Insert awards (skipping pairs awarded before), credit their XP and badge count,
        audit each; how many were made. Profiles are locked first (the global order)."""
        standings = await gains.lock_profiles(session, {a[0] for a in awards})
        xp = badge_xp(params.xp)
        made = await queries.insert_awards(session, awards, xp)
        per_user: dict[uuid.UUID, int] = {}
        for user, _ in made:
            per_user[user] = per_user.get(user, 0) + 1
        await gains.apply(
            session,
            now=now,
            levels=params.levels,
            standings=standings,
            gains={u: gains.Gain(xp=xp * n, badges=n) for u, n in per_user.items()},
        )
        await append_many(
            session,
            ctx,
            [
                AuditEvent(
                    action="badge.awarded",
                    scope="user",
                    ref_id=str(user),
                    details={
                        "badge": codes[badge_id],
                        "source": "MANUAL" if by else "RULE",
                        "snapshot": json.dumps(snap, sort_keys=True),
                        "xp": xp,
                    },
                )
                for user, badge_id, snap, by in awards
                if (user, badge_id) in made
            ],
        )
        return len(made)

    # --- the hourly job -------------------------------------------------------------------------

    async def evaluate(self, ctx: RequestContext, now: datetime) -> dict[str, int]:
        """Award every rule badge whose rule holds for a user who lacks it (the module
        docstring says which users); the counts the job run records."""
        params = await self._params.current()
        today = utc_day(now)
        async with self._db.transaction() as session:
            state = await queries.lock_state(session)
            badges = await queries.rule_badges(session)
        daily_done = state.last_full_day is not None and state.last_full_day >= today
        since = state.changed_since if daily_done and not state.full_pass_requested else None
        full = since is None
        async with self._db.read() as conn:
            if since is None:
                users = await queries.all_users(conn)
            else:
                users = await queries.changed_users(conn, since - CHANGE_MARGIN)
        awarded = await self.evaluate_users(ctx, now, users, badges, params)
        async with self._db.transaction() as session:
            await queries.save_state(session, since=state.started, full_day=today if full else None)
        return {"users_evaluated": len(users), "awards": awarded, "full_pass": int(full)}

    async def evaluate_users(
        self,
        ctx: RequestContext,
        now: datetime,
        users: Sequence[uuid.UUID],
        badges: Sequence[tuple[uuid.UUID, str, str, Mapping[str, Any]]] | None = None,
        params: BusinessParams | None = None,
    ) -> int:
        """Evaluate every rule badge for `users`, chunk by chunk; the awards made."""
        if badges is None:
            async with self._db.read() as conn:
                badges = await queries.rule_badges(conn)
        current = params if params is not None else await self._params.current()
        codes = {badge_id: code for badge_id, code, _, _ in badges}
        awarded = 0
        for start in range(0, len(users), CHUNK):
            async with self._db.read() as conn:
                chunk = await queries.facts(conn, users[start : start + CHUNK], now)
            due = self.due(chunk, badges, now)
            if due:

                async def tx(session: AsyncSession, due: list[Award] = due) -> int:
                    return await self._award(session, ctx, current, now, due, codes)

                awarded += await self._db.run(tx)
        return awarded

    @staticmethod
    def due(
        chunk: Sequence[tuple[uuid.UUID, Any, frozenset[uuid.UUID]]],
        badges: Sequence[tuple[uuid.UUID, str, str, Mapping[str, Any]]],
        now: datetime,
    ) -> list[Award]:
        """The awards the rules give to these users: each rule badge a user never had and
        whose rule holds, with the snapshot of the metrics the rule names."""
        out: list[Award] = []
        compiled = [
            (badge_id, compile_rule(rule_type, rule), rule_metrics(rule))
            for badge_id, _, rule_type, rule in badges
        ]
        for user, facts, held in chunk:
            open_badges = [b for b in compiled if b[0] not in held]
            if not open_badges:
                continue
            metrics = metric_values(facts, now)
            for badge_id, holds, names in open_badges:
                if holds(metrics):
                    out.append((user, badge_id, snapshot(metrics, names), None))
        return out
