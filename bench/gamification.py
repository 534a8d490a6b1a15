"""Gamification jobs at scale, each against a bare statement over the same rows in the same run.

1. Daily maintenance: `profiles` gets N extra profiles (1,000,000 in a full run, 20,000 with
   --quick) folded through the day before yesterday, 5 % of them with gains yesterday. The
   baseline is a bare `UPDATE profiles SET rep_milli = rep_milli` over the whole table; the
   figure is the daily maintenance body (server/profile/reputation.py: the reputation fold of
   yesterday for every profile, the level and metric repair passes) as of 02:00 today. The
   table is updated and vacuumed once before anything is timed (a freshly loaded table has
   no free space for HOT updates), the baseline is timed before and after the job (the mean is
   reported) and the table is vacuumed between runs, so both see the same table.
2. Badge evaluation: the first M of those users (100,000; 5,000 with --quick) get wallets,
   0..3 critical bug report events with their metric counters (a quarter of them earn
   BUG_HUNTER_BRONZE) and one compliant device report;
   the figure is the badge evaluator over exactly these users
   (server/profile/badges.py evaluate_users: read facts, evaluate every rule badge, award),
   the baseline a bare `SELECT * FROM user_metrics WHERE user_id = ANY(...)` of the same users
   in the same chunks. A second pass over the same users (nothing left to award) gives the
   cost of reading and evaluating alone (`second_pass_*`).

In-process against the bench database (the served users stay as they are); rows set up in SQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from server.core.context import SYSTEM_CONTEXT
from server.core.pagination import PageTokens
from server.core.params_cache import Parameters
from server.db.session import Database
from server.profile.badges import CHUNK, BadgeService
from server.profile.reputation import MaintenanceService

PREFIX = "bench-g-"


@dataclass(frozen=True, slots=True)
class GamificationPlan:
    profiles: int
    badge_users: int

    @classmethod
    def of(cls, quick: bool) -> GamificationPlan:
        return cls(20_000, 5_000) if quick else cls(1_000_000, 100_000)


async def _execute(db: Database, *statements: str, **params: Any) -> None:
    async with db.transaction() as session:
        for statement in statements:
            await session.execute(text(statement), params)


async def _vacuum(db: Database, *tables: str) -> None:
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in tables:
            await conn.execute(text(f"VACUUM ANALYZE {table}"))


async def _populate(db: Database, plan: GamificationPlan, today: datetime) -> list[uuid.UUID]:
    yesterday = today.date() - timedelta(days=1)
    await _execute(
        db,
        "INSERT INTO users (id, external_id, email, display_name, joined_at)"
        " SELECT gen_random_uuid(), :p || g, :p || g || '@bench.test', 'bench',"
        " CAST(:today AS timestamptz)"
        "  - make_interval(days => g % 400) FROM generate_series(1, :n) g",
        "INSERT INTO profiles (user_id, rep_milli, rep_through, xp, level)"
        " SELECT id, (hashtext(external_id) & 1048575) * 9, CAST(:before AS date), 0, 1"
        " FROM users WHERE external_id LIKE :p || '%'",
        "INSERT INTO daily_user_stats (user_id, day, xp_gain, endorsement_weight_milli,"
        " badges_awarded) SELECT user_id, CAST(:yesterday AS date), 120, 700, 0 FROM profiles"
        " WHERE rep_through = CAST(:before AS date) AND hashtext(user_id::text) % 20 = 0",
        p=PREFIX,
        n=plan.profiles,
        today=today,
        before=yesterday - timedelta(days=1),
        yesterday=yesterday,
    )
    async with db.transaction() as session:
        users = list(
            (
                await session.execute(
                    text(
                        "SELECT id FROM users WHERE external_id LIKE :p || '%' ORDER BY id LIMIT :m"
                    ),
                    {"p": PREFIX, "m": plan.badge_users},
                )
            ).scalars()
        )
    await _execute(
        db,
        "INSERT INTO wallets (user_id) SELECT unnest(CAST(:u AS uuid[]))",
        # k = i % 4 critical bug reports per user, as RecordBugReport stores them, and the
        # counters they moved (so the metric repair finds no drift): a quarter reach the
        # BUG_HUNTER_BRONZE rule (3).
        "INSERT INTO activity_events (kind, event_id, user_id, payload_hash, metrics,"
        " occurred_at) SELECT 'BUG_REPORT', 'bench-' || i || '-' || j, u, '',"
        " '{\"critical_bug_reports\": 1}', CAST(:today AS timestamptz)"
        " FROM unnest(CAST(:u AS uuid[])) WITH ORDINALITY AS x(u, i),"
        " generate_series(1, CAST(i % 4 AS integer)) AS j",
        "INSERT INTO user_metrics (user_id, critical_bug_reports)"
        " SELECT u, i % 4 FROM unnest(CAST(:u AS uuid[])) WITH ORDINALITY AS x(u, i)",
        "INSERT INTO device_posture_reports (user_id, compliant, reported_at)"
        " SELECT unnest(CAST(:u AS uuid[])), true, CAST(:today AS timestamptz)",
        u=users,
        today=today - timedelta(hours=3),
    )
    return users


async def _timed(coro: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await coro
    return time.perf_counter() - started, result


async def _bare_update(db: Database) -> float:
    async def go() -> None:
        await _execute(db, "UPDATE profiles SET rep_milli = rep_milli")

    seconds, _ = await _timed(go())
    return seconds


async def _bare_select(db: Database, users: list[uuid.UUID]) -> float:
    async def go() -> int:
        rows = 0
        for start in range(0, len(users), CHUNK):
            async with db.read() as conn:
                found = await conn.execute(
                    text("SELECT * FROM user_metrics WHERE user_id = ANY(CAST(:u AS uuid[]))"),
                    {"u": users[start : start + CHUNK]},
                )
                rows += len(found.all())
        return rows

    seconds, rows = await _timed(go())
    assert rows == len(users), (rows, len(users))
    return seconds


async def _run(url: str, plan: GamificationPlan, say: Any) -> dict[str, Any]:
    db = Database.from_url(url, pool_size=4, max_overflow=2)
    try:
        now = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
        started = time.perf_counter()
        users = await _populate(db, plan, now)
        total = await _count(db)
        await _bare_update(db)  # warm-up: gives every page room for HOT updates
        await _vacuum(db, "profiles", "daily_user_stats", "user_metrics", "users", "wallets")
        setup_s = time.perf_counter() - started
        say(f"gamification: {plan.profiles:,} profiles set up in {setup_s:.0f} s")
        before = await _bare_update(db)
        await _vacuum(db, "profiles")
        params = Parameters(db)
        await params.current()  # settings loaded and connections open before the clock runs
        maintenance = MaintenanceService(db, params)
        job_s, counts = await _timed(maintenance.daily_maintenance(SYSTEM_CONTEXT, now))
        await _vacuum(db, "profiles")
        after = await _bare_update(db)
        baseline = (before + after) / 2
        say(
            f"daily maintenance: {job_s:.2f} s; bare UPDATE {before:.2f} s / {after:.2f} s"
            f" ({counts['profiles_folded']:,} folded)"
        )
        select_s = await _bare_select(db, users)
        badges = BadgeService(db, params, PageTokens(""))
        eval_s, awards = await _timed(badges.evaluate_users(SYSTEM_CONTEXT, now, users))
        # the same users again: every award made, so this is the evaluation alone
        again_s, again = await _timed(badges.evaluate_users(SYSTEM_CONTEXT, now, users))
        assert again == 0, again
        select_again = await _bare_select(db, users)
        select_mean = (select_s + select_again) / 2
        say(
            f"badge evaluation: {len(users) / eval_s:,.0f} users/s ({awards:,} awards),"
            f" {len(users) / again_s:,.0f} users/s with nothing to award;"
            f" bare SELECT {len(users) / select_mean:,.0f} users/s"
        )
        return {
            "profiles_added": plan.profiles,
            "profiles_in_table": total,
            "setup_s": round(setup_s, 1),
            "daily_maintenance": {
                "job_s": round(job_s, 3),
                "bare_update_s": round(baseline, 3),
                "bare_update_before_s": round(before, 3),
                "bare_update_after_s": round(after, 3),
                "counts": counts,
                "profiles_per_s": round(counts["profiles_folded"] / job_s),
            },
            "badge_evaluation": {
                "users": len(users),
                "eval_s": round(eval_s, 3),
                "users_per_s": round(len(users) / eval_s),
                "awards": awards,
                "second_pass_s": round(again_s, 3),
                "second_pass_users_per_s": round(len(users) / again_s),
                "bare_select_s": round(select_mean, 3),
                "bare_select_users_per_s": round(len(users) / select_mean),
                "chunk": CHUNK,
            },
        }
    finally:
        await db.dispose()


async def _count(db: Database) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text("SELECT count(*) FROM profiles"))).scalar_one())


def run(url: str, quick: bool, say: Any) -> dict[str, Any]:
    return asyncio.run(_run(url, GamificationPlan.of(quick), say))
