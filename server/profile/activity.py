"""Activity event use cases (system): review submitted, bug report, policy violation.

Each call is idempotent on its event id within its kind, like a task id: the first call
stores the event and its effects in one transaction; a retry with the same payload answers
the stored event and changes nothing; another payload under the same id is
IDEMPOTENCY_CONFLICT. Effects: the badge metric counters of the event's user (the
reviewer, the reporter, the violator), and for a positive review of a user's work, XP to
that user (review_xp of the reviewer's trust weight now), counted in the reputation of the
day it is recorded (server/profile/gains.py), whatever `occurred_at` says.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.core.clock import Clock, system_clock
from server.core.context import RequestContext
from server.core.errors import IdempotencyConflict
from server.core.params_cache import Parameters
from server.db.session import Database
from server.profile import activity_queries as queries
from server.profile import gains
from server.profile.activity_rules import (
    ActivityView,
    BugReport,
    PolicyViolation,
    ReviewSubmitted,
    ValidEvent,
    validate_bug_report,
    validate_policy_violation,
    validate_review,
)
from server.profile.domain import ActivityKind
from server.profile.gamification import review_xp, trust_weight_milli

_ACTIONS = {
    ActivityKind.REVIEW_SUBMITTED: "activity.review_submitted",
    ActivityKind.BUG_REPORT: "activity.bug_reported",
    ActivityKind.POLICY_VIOLATION: "activity.policy_violated",
}


class ActivityService:
    def __init__(self, database: Database, params: Parameters, *, clock: Clock = system_clock):
        self._db = database
        self._params = params
        self._clock = clock

    async def record_review(
        self,
        ctx: RequestContext,
        event_id: str,
        occurred_at: datetime | None,
        review: ReviewSubmitted,
    ) -> ActivityView:
        return await self._record(
            ctx, validate_review(event_id, occurred_at, review, self._clock())
        )

    async def record_bug_report(
        self, ctx: RequestContext, event_id: str, occurred_at: datetime | None, report: BugReport
    ) -> ActivityView:
        event = validate_bug_report(event_id, occurred_at, report, self._clock())
        return await self._record(ctx, event)

    async def record_policy_violation(
        self,
        ctx: RequestContext,
        event_id: str,
        occurred_at: datetime | None,
        violation: PolicyViolation,
    ) -> ActivityView:
        event = validate_policy_violation(event_id, occurred_at, violation, self._clock())
        return await self._record(ctx, event)

    async def _record(self, ctx: RequestContext, event: ValidEvent) -> ActivityView:
        params = await self._params.current()
        now = self._clock()

        async def tx(session: AsyncSession) -> ActivityView:
            named = [event.user_id] + ([event.subject_id] if event.subject_id else [])
            await queries.require_users(session, named)
            recorded_at = await queries.claim(session, event)
            if recorded_at is None:
                stored_hash, view = await queries.stored(session, event.kind, event.event_id)
                if stored_hash != event.payload_hash:
                    raise IdempotencyConflict(
                        "event_id was already recorded with a different payload",
                        metadata={"event_id": event.event_id, "kind": str(event.kind)},
                    )
                return view
            details: dict[str, object] = {"event_id": event.event_id, **event.metric_deltas}
            xp_gains: dict[uuid.UUID, gains.Gain] = {}
            standings: dict[uuid.UUID, gains.Standing] = {}
            if event.earns_review_xp and event.subject_id is not None:
                standings = await gains.lock_profiles(session, [event.subject_id])
                weight = trust_weight_milli(
                    await queries.rep_milli_of(session, event.user_id), params.trust
                )
                xp = review_xp(weight, params.xp)
                xp_gains[event.subject_id] = gains.Gain(xp=xp)
                details.update(subject_user_id=str(event.subject_id), subject_xp=xp)
            await gains.apply(
                session,
                now=now,
                levels=params.levels,
                standings=standings,
                gains=xp_gains,
                counters={event.user_id: event.metric_deltas},
            )
            if event.kind == ActivityKind.POLICY_VIOLATION:
                details.update(policy_code=event.payload["policy_code"], note=event.payload["note"])
            await append(
                session,
                ctx,
                AuditEvent(
                    action=_ACTIONS[event.kind],
                    scope="user",
                    ref_id=str(event.user_id),
                    details=details,
                ),
            )
            return ActivityView(
                event_id=event.event_id,
                kind=str(event.kind),
                occurred_at=event.occurred_at,
                recorded_at=recorded_at,
                payload=event.payload,
            )

        return await self._db.run(tx)
