"""The daily maintenance job's SQL: the reputation fold of one UTC day over all profiles, and
the level and metric repair passes. Set-based: each statement covers every profile.

The fold of day d (one transaction per round, server/profile/reputation.py):

  LOCK_DAY    lock every profile with rep_through = d - 1 that no one else holds
              (FOR NO KEY UPDATE SKIP LOCKED: the job never waits on a writer)
  FOLD_ACTIVE rep(d + 1) from day d's gains, for the locked profiles with a gains row
  FOLD_IDLE   rep(d + 1) with no gain, for the other locked profiles

FOLD_* take only rows whose xmax is this transaction (the rows LOCK_DAY locked): their
snapshot is taken after the locks, so it sees every gain committed on them, and no writer
can add one before the commit. A writer that held a profile at LOCK_DAY leaves it at
d - 1 for the next round. Both set rep_through = d, so a second fold of the day finds
nothing. The step is `gamification.reputation_step` in integers
(`gamification.StepCoefficients`), evaluated as numeric (exact, no overflow).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.profile.gains import COUNTERS
from server.profile.gamification import StepCoefficients


def _n(name: str) -> str:
    return f"CAST(:{name} AS numeric)"


def step_sql(rep: str, xp: str, weight: str, badges: str) -> str:
    """The SQL expression of rep_milli(d + 1) from SQL expressions of rep_milli(d) and day
    d's XP, endorsement weight (thousandths) and badges; binds from `step_binds`."""
    gain = (
        f"LEAST({_n('cap_q')}, {xp} * {_n('xp_coef')} + {weight} * {_n('endorsement_coef')}"
        f" + {badges} * {_n('badge_coef')})"
    )
    exact = f"({_n('decay_num')} * {rep} * {_n('q')} + 1000 * {gain} * {_n('decay_den')})"
    return f"LEAST({_n('ceiling_milli')}, div(2 * {exact} + {_n('t')}, 2 * {_n('t')}))"


def step_binds(c: StepCoefficients) -> dict[str, int]:
    return {
        "decay_num": c.decay_num,
        "decay_den": c.decay_den,
        "q": c.q,
        "xp_coef": c.xp_coef,
        "endorsement_coef": c.endorsement_coef,
        "badge_coef": c.badge_coef,
        "cap_q": c.cap_q,
        "ceiling_milli": c.ceiling_milli,
        "t": c.t,
    }


_FOLD_START = text("SELECT min(rep_through) FROM profiles")
_LOCK_DAY = text(
    "SELECT count(*) FROM (SELECT 1 FROM profiles WHERE rep_through = :before"
    " FOR NO KEY UPDATE SKIP LOCKED) l"
)
_MINE = "p.xmax = pg_current_xact_id()::xid"
_FOLD_ACTIVE = text(
    "WITH f AS (UPDATE profiles p SET rep_through = :day, rep_milli = "  # noqa: S608
    + step_sql("p.rep_milli", "s.xp_gain", "s.endorsement_weight_milli", "s.badges_awarded")
    + " FROM daily_user_stats s WHERE s.user_id = p.user_id AND s.day = :day"  # noqa: S608
    f" AND p.rep_through = :before AND {_MINE} RETURNING 1) SELECT count(*) FROM f"
)
_FOLD_IDLE = text(
    "WITH f AS (UPDATE profiles p SET rep_through = :day, rep_milli = "  # noqa: S608
    + step_sql("p.rep_milli", "0", "0", "0")
    + f" WHERE p.rep_through = :before AND {_MINE} RETURNING 1) SELECT count(*) FROM f"  # noqa: S608
)
_LEFT = text("SELECT EXISTS (SELECT 1 FROM profiles WHERE rep_through = :before)")

# width_bucket(xp, thresholds) = the number of thresholds <= xp (they start at 0 and
# increase): gamification.level_for_xp, as tests/profile/test_reputation_sql.py checks.
_REPAIR_LEVELS = text(
    "WITH f AS (UPDATE profiles SET level = width_bucket(xp, CAST(:thresholds AS bigint[]))"
    " WHERE level <> width_bucket(xp, CAST(:thresholds AS bigint[])) RETURNING 1)"
    " SELECT count(*) FROM f"
)


def _sum_of(key: str) -> str:
    return f"sum(COALESCE(CAST(metrics ->> '{key}' AS bigint), 0))"


_SOURCES = {
    # counter → (task_rewards, activity_events, endorsements) aggregate expressions
    name: (
        {
            "tasks_accepted": "count(*)",
            "quality_sum": "sum(quality)",
            "quality_count": "count(*)",
        }.get(name, "0"),
        _sum_of(name),
        "count(*)" if name == "endorsements_received" else "0",
    )
    for name in COUNTERS
}
_TRUTH = (
    "truth AS (SELECT user_id, "  # noqa: S608 (constant SQL)
    + ", ".join(f"sum({c}) AS {c}" for c in COUNTERS)
    + " FROM ("
    + " SELECT user_id, "
    + ", ".join(f"{src[0]} AS {c}" for c, src in _SOURCES.items())
    + " FROM task_rewards GROUP BY user_id UNION ALL SELECT user_id, "
    + ", ".join(f"{src[1]} AS {c}" for c, src in _SOURCES.items())
    + " FROM activity_events GROUP BY user_id UNION ALL SELECT endorsee_id, "
    + ", ".join(f"{src[2]} AS {c}" for c, src in _SOURCES.items())
    + " FROM endorsements GROUP BY endorsee_id) x GROUP BY user_id)"
)
_NONZERO = " OR ".join(f"d.{c} <> 0" for c in COUNTERS)
# Drift is added, not assigned: an event committed after this statement's snapshot moved
# both the truth and the counter, so the correction stays right under a concurrent writer.
_REPAIR_METRICS = text(
    "WITH "  # noqa: S608 (constant SQL)
    + _TRUTH
    + ", drift AS (SELECT COALESCE(t.user_id, m.user_id) AS user_id,"
    " m.user_id IS NOT NULL AS existed, "
    + ", ".join(f"COALESCE(t.{c}, 0) - COALESCE(m.{c}, 0) AS {c}" for c in COUNTERS)
    + " FROM truth t FULL JOIN user_metrics m ON m.user_id = t.user_id),"
    " fixed AS (UPDATE user_metrics m SET "
    + ", ".join(f"{c} = m.{c} + d.{c}" for c in COUNTERS)
    + ", updated_at = now() FROM drift d WHERE m.user_id = d.user_id AND d.existed"  # noqa: S608
    f" AND ({_NONZERO}) RETURNING m.user_id),"
    f" added AS (INSERT INTO user_metrics (user_id, {', '.join(COUNTERS)})"
    f" SELECT d.user_id, {', '.join(f'd.{c}' for c in COUNTERS)} FROM drift d"
    f" WHERE NOT d.existed AND ({_NONZERO})"
    " ON CONFLICT (user_id) DO UPDATE SET "
    + ", ".join(f"{c} = user_metrics.{c} + EXCLUDED.{c}" for c in COUNTERS)
    + ", updated_at = now() RETURNING user_id)"
    " SELECT (SELECT count(*) FROM fixed) + (SELECT count(*) FROM added)"
)


async def fold_start(conn: AsyncConnection | AsyncSession) -> date | None:
    """The first day some profile still needs folded; None when no profile ever gained."""
    last: date | None = (await conn.execute(_FOLD_START)).scalar()
    return last + timedelta(days=1) if last is not None else None


async def fold_day_round(
    session: AsyncSession, day: date, coefficients: StepCoefficients
) -> tuple[int, int, int]:
    """One round of day `day`: (locked, folded with gains, folded idle)."""
    before = day - timedelta(days=1)
    locked = int((await session.execute(_LOCK_DAY, {"before": before})).scalar_one())
    if not locked:
        return 0, 0, 0
    binds: dict[str, Any] = {"day": day, "before": before, **step_binds(coefficients)}
    active = int((await session.execute(_FOLD_ACTIVE, binds)).scalar_one())
    idle = int((await session.execute(_FOLD_IDLE, binds)).scalar_one())
    if active + idle != locked:
        raise RuntimeError(f"folded {active} + {idle} profiles of {locked} locked for {day}")
    return locked, active, idle


async def day_left(session: AsyncSession, day: date) -> bool:
    """Whether some profile (held by a writer at the last round) still waits for `day`."""
    found: bool = (await session.execute(_LEFT, {"before": day - timedelta(days=1)})).scalar_one()
    return found


async def repair_levels(session: AsyncSession, thresholds: tuple[int, ...]) -> int:
    fixed = await session.execute(_REPAIR_LEVELS, {"thresholds": list(thresholds)})
    return int(fixed.scalar_one())


async def repair_metrics(session: AsyncSession) -> int:
    return int((await session.execute(_REPAIR_METRICS)).scalar_one())
