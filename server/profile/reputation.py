"""The daily maintenance job (02:00 UTC): reputation decay and gain, level repair, badge
metric repair.

Reputation, `rep(d + 1) = decay × rep(d) + min(cap, dailyGain(d))`, is folded day by day,
in order, from each profile's own last folded day (`profiles.rep_through`) up to
yesterday (the job's clock), whatever the job's run records say: a run that missed days,
failed or never happened is caught up by the next. Each day is a few set-based statements
over all profiles (server/profile/reputation_queries.py), guarded by rep_through = d - 1,
so a second run, or two replicas at once, change nothing more. A profile that never gained
anything has no rep_through and costs nothing.

Gains count on the UTC day they were awarded (server/profile/gains.py): yesterday's gains
are complete when yesterday is folded, and a late event counts on a later day.

Levels and metrics move with the events that move them; the repair passes here only fix
drift (a changed level table, rows written outside the API) and report how much they fixed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.core.context import RequestContext
from server.core.params_cache import Parameters
from server.db.session import Database
from server.profile import badge_queries
from server.profile import reputation_queries as queries
from server.profile.domain import utc_day
from server.profile.gamification import StepCoefficients, step_coefficients

# A day's fold retries the profiles a writer held (SKIP LOCKED) this often before the run
# fails; the next run catches the day up.
MAX_ROUNDS = 60
ROUND_PAUSE_S = 0.05


class DayNotFolded(RuntimeError):
    """Some profile stayed locked by writers through every round of a day."""


class MaintenanceService:
    def __init__(self, database: Database, params: Parameters) -> None:
        self._db = database
        self._params = params

    async def daily_maintenance(self, ctx: RequestContext, now: datetime) -> dict[str, int]:
        """Fold every day up to yesterday (UTC, of `now`), then repair levels and metrics.
        The counts the job run records."""
        params = await self._params.current()
        coefficients = step_coefficients(params.reputation)
        last = utc_day(now) - timedelta(days=1)
        async with self._db.read() as conn:
            day = await queries.fold_start(conn)
        days = folded = active = 0
        while day is not None and day <= last:
            day_folded, day_active = await self.fold_day(ctx, day, coefficients)
            days += 1
            folded += day_folded
            active += day_active
            day += timedelta(days=1)
        thresholds = params.levels.thresholds
        levels = await self._repair(
            ctx, "levels", lambda session: queries.repair_levels(session, thresholds)
        )
        metrics = await self._repair(ctx, "metrics", queries.repair_metrics)
        if days or levels:  # every repScore (or some level) moved: the badge job looks at all
            await self._db.run(badge_queries.request_full_pass)
        return {
            "days_folded": days,
            "profiles_folded": folded,
            "profiles_with_gains": active,
            "levels_repaired": levels,
            "metrics_repaired": metrics,
        }

    async def fold_day(
        self, ctx: RequestContext, day: date, coefficients: StepCoefficients
    ) -> tuple[int, int]:
        """Fold `day` into every profile whose last folded day is the day before: (profiles
        folded, of which with gains). Rounds until none is left."""
        folded = active = 0
        for attempt in range(MAX_ROUNDS):

            async def tx(session: AsyncSession) -> tuple[int, int, int]:
                locked, with_gains, idle = await queries.fold_day_round(session, day, coefficients)
                if locked:
                    await append(
                        session,
                        ctx,
                        AuditEvent(
                            action="reputation.day_folded",
                            scope="job",
                            ref_id=f"reputation:{day.isoformat()}",
                            details={
                                "day": day.isoformat(),
                                "profiles": locked,
                                "with_gains": with_gains,
                            },
                        ),
                    )
                return locked, with_gains, idle

            locked, with_gains, _ = await self._db.run(tx)
            folded += locked
            active += with_gains
            async with self._db.transaction() as session:
                if not await queries.day_left(session, day):
                    return folded, active
            await asyncio.sleep(ROUND_PAUSE_S * (attempt + 1))
        raise DayNotFolded(f"profiles stayed locked through {MAX_ROUNDS} rounds of {day}")

    async def _repair(
        self,
        ctx: RequestContext,
        what: str,
        repair: Callable[[AsyncSession], Awaitable[int]],
    ) -> int:
        """Run one repair pass in its own transaction; audited when it fixed anything."""

        async def tx(session: AsyncSession) -> int:
            fixed = await repair(session)
            if fixed:
                await append(
                    session,
                    ctx,
                    AuditEvent(
                        action=f"{what}.repaired", scope="job", ref_id=what, details={"rows": fixed}
                    ),
                )
            return fixed

        return await self._db.run(tx)
