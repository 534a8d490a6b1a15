"""The writer of XP, levels, the daily gains reputation folds, and badge metric counters.

Every use case that credits XP (reviews, endorsements, badges) goes through `lock_profiles`
then `apply`; the task reward batch (server/wallet/reward_batch.py) writes the same columns
in its own hot-path statement under the same rules. The rules:

- The profile rows are locked first (FOR NO KEY UPDATE, in ascending wallet id, the order
  of the reward batch), and the level moves in the same transaction as the XP.
- A gain counts for `gamification.gain_day(today, rep_through)`, rep_through read under
  that lock: the daily job (server/profile/reputation.py) folds a day only for profiles it
  has locked itself, so a gain can never land in a day already folded.
- A profile's first gain starts its reputation: rep_through = that day - 1.
- user_metrics rows are written last, in ascending user id, and `updated_at` is touched
  for every user whose XP or counters moved (the badge job reads it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import NotFound
from server.core.params import LevelParams
from server.profile.domain import utc_day
from server.profile.gamification import gain_day, level_for_xp

# Counters of user_metrics an event may add to (activity_rules.metric_deltas, endorsements).
COUNTERS = (
    "tasks_accepted",
    "critical_bug_reports",
    "helpful_reviews",
    "reviews_total",
    "reviews_agreed",
    "policy_violations",
    "endorsements_received",
    "quality_sum",
    "quality_count",
)


@dataclass(frozen=True, slots=True)
class Standing:
    """A profile as locked: XP, level, reputation and its last folded day."""

    user_id: uuid.UUID
    xp: int
    level: int
    rep_milli: int
    rep_through: date | None


@dataclass(frozen=True, slots=True)
class Gain:
    """What one use case credits one user: XP, and the dailyGain inputs beside it."""

    xp: int = 0
    endorsement_weight_milli: int = 0
    endorsement_xp: int = 0
    badges: int = 0


@dataclass(frozen=True, slots=True)
class Credited:
    user_id: uuid.UUID
    day: date  # the UTC day the gain counts for
    xp: int  # total after
    level: int  # after


_LOCK = text(
    "SELECT p.user_id, p.xp, p.level, p.rep_milli, p.rep_through"
    " FROM profiles p JOIN wallets w ON w.user_id = p.user_id"
    " WHERE p.user_id = ANY(CAST(:user_ids AS uuid[])) ORDER BY w.id"
    " FOR NO KEY UPDATE OF p"
)

_ENDORSEMENT_XP_TODAY = text(
    "SELECT endorsement_xp FROM daily_user_stats WHERE user_id = :user_id AND day = :day"
)

_APPLY = text(
    "WITH g AS (SELECT * FROM unnest(CAST(:user_id AS uuid[]), CAST(:day AS date[]),"
    "  CAST(:xp AS bigint[]), CAST(:level AS integer[]), CAST(:gain_xp AS bigint[]),"
    "  CAST(:weight AS bigint[]), CAST(:endorsement_xp AS bigint[]), CAST(:badges AS integer[]))"
    "  AS g(user_id, day, xp, level, gain_xp, weight, endorsement_xp, badges)),"
    " moved AS (UPDATE profiles p SET xp = g.xp, level = g.level,"
    "  rep_through = COALESCE(p.rep_through, g.day - 1)"
    "  FROM g WHERE p.user_id = g.user_id RETURNING p.user_id),"
    " stats AS (INSERT INTO daily_user_stats"
    "  (user_id, day, xp_gain, endorsement_weight_milli, endorsement_xp, badges_awarded)"
    "  SELECT user_id, day, gain_xp, weight, endorsement_xp, badges FROM g"
    "  ON CONFLICT (user_id, day) DO UPDATE SET"
    "  xp_gain = daily_user_stats.xp_gain + EXCLUDED.xp_gain,"
    "  endorsement_weight_milli = daily_user_stats.endorsement_weight_milli"
    "   + EXCLUDED.endorsement_weight_milli,"
    "  endorsement_xp = daily_user_stats.endorsement_xp + EXCLUDED.endorsement_xp,"
    "  badges_awarded = daily_user_stats.badges_awarded + EXCLUDED.badges_awarded"
    "  RETURNING 1)"
    " SELECT (SELECT count(*) FROM moved) AS moved, (SELECT count(*) FROM stats) AS stats"
)

_COUNTER_ARRAYS = ", ".join(f"CAST(:{c} AS bigint[])" for c in COUNTERS)
_BUMP = text(
    f"INSERT INTO user_metrics (user_id, {', '.join(COUNTERS)})"  # noqa: S608 (constant names)
    f" SELECT * FROM unnest(CAST(:user_id AS uuid[]), {_COUNTER_ARRAYS})"
    " ON CONFLICT (user_id) DO UPDATE SET "
    + ", ".join(f"{c} = user_metrics.{c} + EXCLUDED.{c}" for c in COUNTERS)
    + ", updated_at = now()"
)


async def lock_profiles(
    session: AsyncSession, user_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Standing]:
    """Lock the users' profiles until the transaction ends; NOT_FOUND naming a missing one."""
    wanted = sorted(set(user_ids))
    rows = (await session.execute(_LOCK, {"user_ids": wanted})).all()
    found = {
        row.user_id: Standing(
            user_id=row.user_id,
            xp=int(row.xp),
            level=int(row.level),
            rep_milli=int(row.rep_milli),
            rep_through=row.rep_through,
        )
        for row in rows
    }
    for user_id in wanted:
        if user_id not in found:
            raise NotFound("user not found", metadata={"user_id": str(user_id)})
    return found


async def endorsement_xp_on(session: AsyncSession, standing: Standing, now: datetime) -> int:
    """Endorsement XP the (locked) user already got on the day a gain now would count for."""
    day = gain_day(utc_day(now), standing.rep_through)
    found = (
        await session.execute(_ENDORSEMENT_XP_TODAY, {"user_id": standing.user_id, "day": day})
    ).scalar()
    return int(found or 0)


async def apply(
    session: AsyncSession,
    *,
    now: datetime,
    levels: LevelParams,
    standings: Mapping[uuid.UUID, Standing],
    gains: Mapping[uuid.UUID, Gain] | None = None,
    counters: Mapping[uuid.UUID, Mapping[str, int]] | None = None,
) -> dict[uuid.UUID, Credited]:
    """Credit `gains` to their (locked) users and add `counters` to user_metrics; touch the
    metrics of every user named in either."""
    gains = gains or {}
    counters = counters or {}
    today = utc_day(now)
    credited: dict[uuid.UUID, Credited] = {}
    for user_id, gain in gains.items():
        standing = standings[user_id]
        xp = standing.xp + gain.xp
        credited[user_id] = Credited(
            user_id=user_id,
            day=gain_day(today, standing.rep_through),
            xp=xp,
            level=level_for_xp(xp, levels.thresholds),
        )
    if credited:
        users = sorted(credited)
        written = (
            await session.execute(
                _APPLY,
                {
                    "user_id": users,
                    "day": [credited[u].day for u in users],
                    "xp": [credited[u].xp for u in users],
                    "level": [credited[u].level for u in users],
                    "gain_xp": [gains[u].xp for u in users],
                    "weight": [gains[u].endorsement_weight_milli for u in users],
                    "endorsement_xp": [gains[u].endorsement_xp for u in users],
                    "badges": [gains[u].badges for u in users],
                },
            )
        ).one()
        if (written.moved, written.stats) != (len(users), len(users)):
            raise RuntimeError(f"gain write moved {tuple(written)}, expected {len(users)}")
    await _bump(session, {u: counters.get(u, {}) for u in sorted({*credited, *counters})})
    return credited


async def touch(session: AsyncSession, user_ids: Iterable[uuid.UUID]) -> None:
    """Mark the users' metrics changed (KYC status, device posture: read where they live,
    but the badge job finds the users to evaluate through user_metrics.updated_at)."""
    await _bump(session, {u: {} for u in sorted(set(user_ids))})


async def _bump(session: AsyncSession, counters: Mapping[uuid.UUID, Mapping[str, int]]) -> None:
    if not counters:
        return
    users: Sequence[uuid.UUID] = list(counters)
    values: dict[str, Any] = {"user_id": users}
    for name in COUNTERS:
        values[name] = [int(counters[u].get(name, 0)) for u in users]
    unknown = {name for deltas in counters.values() for name in deltas} - set(COUNTERS)
    if unknown:
        raise ValueError(f"unknown metric counters {sorted(unknown)}")
    await session.execute(_BUMP, values)
