"""The daily maintenance job: reputation over thirty days through the API against the
recurrence computed here, once per day however often and wherever it runs, gains under a
writer's lock never lost, and the level and metric repairs."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext

import pytest
from smartstart.profile.v1 import profile_service_pb2 as pb
from smartstart.wallet.v1 import wallet_service_pb2 as wpb
from sqlalchemy import text

from server.app import RunningServer
from server.core.context import SYSTEM_CONTEXT
from server.core.params import DEFAULTS
from server.core.params_cache import Parameters
from server.db.session import Database
from server.jobs import Outcome
from server.profile import gains
from server.profile.gamification import DailyGain, catch_up
from server.profile.reputation import MaintenanceService
from tests.fixtures_db import REPO_ROOT
from tests.fixtures_server import ServerFactory
from tests.profile.support import (
    Api,
    MovableClock,
    clock_at,
    sql_rows,
    sql_value,
)
from tests.profile.test_badges import award, create_badge
from tests.profile.test_endorsements import endorse
from tests.profile.test_skills import create_skill, declare

START = "2026-03-01"
SKILLS = ["python", "go", "sql", "ux", "writing"]
JOB = "daily_maintenance"


# --- the recurrence, written out here (not the server's code) -------------------------------

THOUSANDTH = Decimal("0.001")


def spec_step(rep: Decimal, xp: int = 0, weights: Decimal = Decimal(0), badges: int = 0) -> Decimal:
    """rep(d+1) = 0.995 × rep(d) + min(50, xp/10 + endorsementsWeighted/5 + badges × 20),
    fixed point in thousandths (half up), at most 10,000."""
    gain = Decimal(xp) / 10 + weights / 5 + badges * 20
    exact = Decimal("0.995") * rep + min(Decimal(50), gain)
    return min(Decimal(10_000), exact.quantize(THOUSANDTH, rounding=ROUND_HALF_UP))


def spec_weight(rep: Decimal) -> Decimal:
    """Trust weight: clamp(sqrt(rep/100) floored to the thousandth, 0.5, 1.5)."""
    with localcontext() as ctx:
        ctx.prec = 40
        weight = (rep / 100).sqrt().quantize(THOUSANDTH, rounding=ROUND_FLOOR)
    return min(Decimal("1.5"), max(Decimal("0.5"), weight))


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def spec_review_xp(rep: Decimal) -> int:
    """round_half_up(5 × the reviewer's trust weight)."""
    return half_up(5 * spec_weight(rep))


@dataclass
class Day:
    xp: int = 0
    weights: Decimal = Decimal(0)
    endorsement_xp: int = 0
    badges: int = 0


@dataclass
class Model:
    """What the server should store: reputation as of the last job run, per user."""

    rep: dict[str, Decimal] = field(default_factory=dict)
    through: dict[str, int] = field(default_factory=dict)  # last folded day index
    days: dict[tuple[str, int], Day] = field(default_factory=dict)

    def gain(
        self, user: str, day: int, xp: int, weight: Decimal = Decimal(0), badges: int = 0
    ) -> None:
        d = self.days.setdefault((user, day), Day())
        d.xp += xp
        d.weights += weight
        d.badges += badges
        self.rep.setdefault(user, Decimal(0))
        self.through.setdefault(user, day - 1)

    def endorsement_xp(self, endorsee: str, day: int, endorser_rep: Decimal) -> int:
        """round_half_up(2 × weight), at most 20 a day from endorsements."""
        d = self.days.setdefault((endorsee, day), Day())
        xp = min(half_up(2 * spec_weight(endorser_rep)), 20 - d.endorsement_xp)
        d.endorsement_xp += xp
        return xp

    def run(self, job_day: int) -> None:
        """The job at 02:00 of `job_day` folds every open day before it, in order."""
        for user in self.rep:
            for day in range(self.through[user] + 1, job_day):
                d = self.days.get((user, day), Day())
                self.rep[user] = spec_step(self.rep[user], d.xp, d.weights, d.badges)
            self.through[user] = max(self.through[user], job_day - 1)


# --- thirty days through the API ------------------------------------------------------------

# Per day: A's tasks (tier, quality), R's tasks, positive reviews of A by R, endorsements of
# A by R (one skill each), a manual badge for A, and whether a task of A accepted three days
# earlier is reported that day (late: it counts today).
TIER_S, TIER_C = wpb.TASK_TIER_S, wpb.TASK_TIER_C
PLAN: dict[int, dict[str, object]] = {
    0: {"a": [(TIER_C, 3)], "r": [(TIER_C, 4)], "reviews": 2},
    1: {"a": [(TIER_C, 5)], "reviews": 1},
    2: {"a": [(TIER_S, 5), (TIER_S, 5)]},  # 784 XP: the gain is capped at 50
    3: {"endorse": 1},
    4: {"r": [(TIER_S, 4)], "reviews": 3},
    5: {"a": [(TIER_C, 1)]},
    6: {"reviews": 4},
    7: {},
    8: {"a": [(TIER_S, 2)], "late": True},
    9: {"r": [(TIER_C, 2)], "reviews": 1, "endorse": 2},
    11: {"a": [(TIER_C, 3)], "reviews": 2},
    12: {"late": True},
    14: {"a": [(TIER_S, 3)]},
    15: {"badge": True},
    16: {"endorse": 1},
    17: {"reviews": 5},
    18: {"a": [(TIER_C, 4)], "r": [(TIER_S, 5)]},
    21: {"reviews": 2, "late": True},
    22: {"a": [(TIER_S, 1)]},
    25: {"a": [(TIER_C, 2)], "reviews": 1, "endorse": 1},
    28: {"a": [(TIER_S, 5)]},
}
# Job runs at 02:00 of these days are missed (no run); the next run catches up.
MISSED_RUNS = {6, 7, 8, 19, 20, 27}


@pytest.fixture
def clock() -> MovableClock:
    return clock_at(START)


async def rep_milli(db: Database, user: str) -> int:
    return int(await sql_value(db, "SELECT rep_milli FROM profiles WHERE user_id = :u", u=user))


async def test_thirty_days_of_reputation_match_the_recurrence(
    api: Api, running: RunningServer, db: Database, clock: MovableClock
) -> None:
    venture = await api.venture()
    a, r, t = await api.register("A"), await api.register("R"), await api.register("T")
    idle = await api.register("Idle")
    skills = iter(SKILLS)
    for slug in SKILLS:
        await create_skill(api, slug)
        await declare(api, a, slug)
    await create_badge(api, "VECTOR", pb.BADGE_RULE_TYPE_MANUAL)
    model = Model()
    runs = 0
    for day in range(30):
        if day > 0 and day not in MISSED_RUNS:
            clock.at(day, hour=2)
            result = await running.services.scheduler.run_now(JOB)
            assert result.outcome is Outcome.SUCCEEDED, result.error
            model.run(day)
            runs += 1
            for user in (a, r):
                shown = (await api.profile(user)).rep
                assert shown == int(model.rep.get(user, 0)), (day, user)
        clock.at(day, hour=12)
        plan = PLAN.get(day, {})
        for tier, quality in plan.get("a", []):  # type: ignore[attr-defined]
            reward = await api.task(a, t, venture, tier=tier, quality=quality)
            assert reward.withheld  # REPUTATION_TOO_LOW or KYC: XP is awarded anyway
            model.gain(a, day, reward.xp_awarded)
        for tier, quality in plan.get("r", []):  # type: ignore[attr-defined]
            model.gain(
                r, day, (await api.task(r, t, venture, tier=tier, quality=quality)).xp_awarded
            )
        for _ in range(int(plan.get("reviews", 0))):  # type: ignore[call-overload]
            before = (await api.profile(a)).xp
            await api.review(r, a)
            earned = (await api.profile(a)).xp - before
            assert earned == spec_review_xp(model.rep.get(r, Decimal(0)))
            model.gain(a, day, earned)
        for _ in range(int(plan.get("endorse", 0))):  # type: ignore[call-overload]
            await endorse(api, r, a, next(skills))
            xp = model.endorsement_xp(a, day, model.rep.get(r, Decimal(0)))
            model.gain(a, day, xp, spec_weight(model.rep.get(r, Decimal(0))))
        if plan.get("badge"):
            await award(api, "VECTOR", a)
            model.gain(a, day, 50, badges=1)
        if plan.get("late"):
            late = await api.task(a, t, venture, accepted_at=clock() - timedelta(days=3))
            model.gain(a, day, late.xp_awarded)
    clock.at(30, hour=2)
    result = await running.services.scheduler.run_now(JOB)
    assert result.outcome is Outcome.SUCCEEDED
    model.run(30)
    assert result.counts["days_folded"] == 1
    for user in (a, r):
        assert await rep_milli(db, user) == int(model.rep[user] * 1000)
        assert (await api.profile(user)).rep == int(model.rep[user])
    assert model.rep[a] > 60  # the vector reaches past the BUZ gate
    # the user who never gained has nothing to fold: rep 0, no rep_through
    assert (await api.profile(idle)).rep == 0
    assert (
        await sql_value(db, "SELECT rep_through FROM profiles WHERE user_id = :u", u=idle) is None
    )
    # a late task counted on the day it was reported, not on its acceptance day
    stats = dict(
        (r_.day, r_.xp_gain)
        for r_ in await sql_rows(
            db, "SELECT day, xp_gain FROM daily_user_stats WHERE user_id = :u", u=a
        )
    )
    start = date.fromisoformat(START)
    assert stats == {start + timedelta(days=d): v.xp for (u, d), v in model.days.items() if u == a}
    runs_recorded = await sql_value(
        db, "SELECT count(*) FROM job_runs WHERE job = :j AND outcome = 'SUCCEEDED'", j=JOB
    )
    assert runs_recorded == runs + 1


async def test_a_second_run_of_the_day_changes_nothing(
    api: Api, running: RunningServer, db: Database, clock: MovableClock
) -> None:
    user, reviewer = await api.register(), await api.register()
    for _ in range(4):
        await api.review(reviewer, user)  # 12 XP on day 0
    clock.at(1, hour=2)
    first = await running.services.scheduler.run_now(JOB)
    assert (first.outcome, first.counts["profiles_folded"]) == (Outcome.SUCCEEDED, 1)
    folded = await rep_milli(db, user)
    assert folded == 1200  # 0.995 × 0 + 12/10
    again = await running.services.scheduler.run_now(JOB)
    assert again.outcome is Outcome.SKIPPED  # the run key: one success per UTC day
    # the fold itself is guarded too: its body run again by hand folds nothing
    body = running.services.profile.maintenance
    counts = await body.daily_maintenance(SYSTEM_CONTEXT, clock())
    assert (counts["days_folded"], counts["profiles_folded"]) == (0, 0)
    assert await rep_milli(db, user) == folded
    assert (
        await sql_value(
            db, "SELECT count(*) FROM audit_events WHERE action = 'reputation.day_folded'"
        )
        == 1
    )


# --- concurrency ---------------------------------------------------------------------------


async def _seed_profiles(db: Database, n: int, first: date, days: int, seed: int) -> dict:
    """`n` users already folded through `first` - 1 with random reputations and random gains
    on `days` days (service-level set-up, in SQL)."""
    rng = random.Random(seed)
    users = [uuid.uuid4() for _ in range(n)]
    reps = {u: rng.choice([0, rng.randint(0, 200_000), rng.randint(0, 10_000_000)]) for u in users}
    daily = {
        (u, first + timedelta(days=d)): DailyGain(
            xp_gain=rng.randint(0, 900),
            endorsements_weighted_milli=rng.randint(0, 4000),
            badges_today=rng.choice([0, 0, 0, 1]),
        )
        for u in users
        for d in range(days)
        if rng.random() < 0.3
    }
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO users (id, external_id, email, display_name, joined_at)"
                " SELECT u, 'x' || u, u || '@e.test', 'n', now() FROM unnest(CAST(:u AS uuid[])) u"
            ),
            {"u": users},
        )
        await session.execute(
            text(
                "INSERT INTO profiles (user_id, rep_milli, rep_through)"
                " SELECT * FROM unnest(CAST(:u AS uuid[]), CAST(:r AS bigint[]),"
                " CAST(:d AS date[]))"
            ),
            {"u": users, "r": [reps[u] for u in users], "d": [first - timedelta(days=1)] * n},
        )
        await session.execute(
            text("INSERT INTO wallets (user_id) SELECT unnest(CAST(:u AS uuid[]))"), {"u": users}
        )
        keys = list(daily)
        await session.execute(
            text(
                "INSERT INTO daily_user_stats (user_id, day, xp_gain, endorsement_weight_milli,"
                " badges_awarded) SELECT * FROM unnest(CAST(:u AS uuid[]), CAST(:d AS date[]),"
                " CAST(:x AS bigint[]), CAST(:w AS bigint[]), CAST(:b AS integer[]))"
            ),
            {
                "u": [u for u, _ in keys],
                "d": [d for _, d in keys],
                "x": [daily[k].xp_gain for k in keys],
                "w": [daily[k].endorsements_weighted_milli for k in keys],
                "b": [daily[k].badges_today for k in keys],
            },
        )
    return {
        u: catch_up(
            reps[u],
            [daily.get((u, first + timedelta(days=d)), DailyGain()) for d in range(days)],
            DEFAULTS.reputation,
        )
        for u in users
    }


@pytest.mark.slow
async def test_two_processes_folding_at_once_fold_each_day_once(
    db: Database, database_url: str
) -> None:
    first, days, n = date(2026, 4, 1), 12, 3000
    expected = await _seed_profiles(db, n, first, days, seed=11)
    now = datetime.combine(first + timedelta(days=days), datetime.min.time(), UTC).replace(hour=2)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.profile.fold_process",
            database_url,
            now.isoformat(),
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode()[-2000:] for _, err in outputs]
    counts = [json.loads(out) for out, _ in outputs]
    # between them every profile was folded exactly once per day
    assert sum(c["profiles_folded"] for c in counts) == n * days
    got = {
        row.user_id: (row.rep_milli, row.rep_through)
        for row in await sql_rows(db, "SELECT user_id, rep_milli, rep_through FROM profiles")
    }
    assert got == {u: (rep, first + timedelta(days=days - 1)) for u, rep in expected.items()}
    per_day = await sql_rows(
        db,
        "SELECT details ->> 'day' AS day, sum(CAST(details ->> 'profiles' AS int)) AS n"
        " FROM audit_events WHERE action = 'reputation.day_folded' GROUP BY 1",
    )
    assert {r.day: r.n for r in per_day} == {
        (first + timedelta(days=d)).isoformat(): n for d in range(days)
    }


async def test_two_replicas_run_the_job_once(server_factory: ServerFactory, db: Database) -> None:
    expected = await _seed_profiles(db, 200, date(2026, 5, 1), 3, seed=5)
    clock = MovableClock(datetime(2026, 5, 4, 2, 0, tzinfo=UTC))
    one, two = await server_factory(clock=clock), await server_factory(clock=clock)
    results = await asyncio.gather(
        one.services.scheduler.run_now(JOB), two.services.scheduler.run_now(JOB)
    )
    assert sorted(r.outcome for r in results) == [Outcome.SKIPPED, Outcome.SUCCEEDED]
    got = dict(
        (r.user_id, r.rep_milli)
        for r in await sql_rows(db, "SELECT user_id, rep_milli FROM profiles")
    )
    assert got == expected


async def test_a_gain_under_a_writers_lock_is_folded_not_lost(db: Database) -> None:
    """The job never waits on a writer: it folds everyone else, retries the held profile,
    and folds it with the writer's gain once the writer commits."""
    day = date(2026, 6, 10)
    expected = await _seed_profiles(db, 50, day, 1, seed=3)
    held = next(iter(expected))
    params = Parameters(db)
    service = MaintenanceService(db, params)
    writer_now = datetime.combine(day, datetime.min.time(), UTC).replace(hour=23, minute=59)
    job_now = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC).replace(hour=2)
    before = await sql_value(db, "SELECT rep_milli FROM profiles WHERE user_id = :u", u=held)
    gained = await sql_rows(
        db,
        "SELECT xp_gain, endorsement_weight_milli, badges_awarded FROM daily_user_stats"
        " WHERE user_id = :u AND day = :d",
        u=held,
        d=day,
    )
    old = gained[0] if gained else None

    async with db.transaction() as session:  # the writer: clock still on `day`
        standings = await gains.lock_profiles(session, [held])
        job = asyncio.create_task(service.daily_maintenance(SYSTEM_CONTEXT, job_now))
        await asyncio.sleep(0.5)
        assert not job.done()  # retrying the held profile
        others = await sql_value(db, "SELECT count(*) FROM profiles WHERE rep_through = :d", d=day)
        assert others == 49
        credited = await gains.apply(
            session,
            now=writer_now,
            levels=DEFAULTS.levels,
            standings=standings,
            gains={held: gains.Gain(xp=500)},
        )
        assert credited[held].day == day
    counts = await asyncio.wait_for(job, 10)
    assert counts["profiles_folded"] == 50
    gain = DailyGain(
        xp_gain=500 + (old.xp_gain if old else 0),
        endorsements_weighted_milli=old.endorsement_weight_milli if old else 0,
        badges_today=old.badges_awarded if old else 0,
    )
    assert await sql_value(db, "SELECT rep_milli FROM profiles WHERE user_id = :u", u=held) == (
        catch_up(before, [gain], DEFAULTS.reputation)
    )
    # a writer still on `day` after the fold counts on the next day, never a folded one
    async with db.transaction() as session:
        standings = await gains.lock_profiles(session, [held])
        late = await gains.apply(
            session,
            now=writer_now,
            levels=DEFAULTS.levels,
            standings=standings,
            gains={held: gains.Gain(xp=7)},
        )
    assert late[held].day == day + timedelta(days=1)


# --- repairs --------------------------------------------------------------------------------


async def test_level_and_metric_drift_is_repaired_and_audited(
    api: Api, running: RunningServer, db: Database, clock: MovableClock
) -> None:
    user, reviewer = await api.register(), await api.register()
    await api.review(reviewer, user, helpful=True)
    await api.bug(reviewer)
    body = running.services.profile.maintenance
    clean = await body.daily_maintenance(SYSTEM_CONTEXT, clock())
    assert (clean["levels_repaired"], clean["metrics_repaired"]) == (0, 0)

    async with db.transaction() as session:  # drift, as a hand edit would make it
        await session.execute(text("UPDATE profiles SET level = 7 WHERE user_id = :u"), {"u": user})
        await session.execute(
            text(
                "UPDATE user_metrics SET helpful_reviews = 40, critical_bug_reports = 0,"
                " tasks_accepted = 3 WHERE user_id = :u"
            ),
            {"u": reviewer},
        )
        await session.execute(text("DELETE FROM user_metrics WHERE user_id = :u"), {"u": user})
    fixed = await body.daily_maintenance(SYSTEM_CONTEXT, clock())
    assert (fixed["levels_repaired"], fixed["metrics_repaired"]) == (1, 1)
    assert (await api.profile(user)).level == 1
    m = (await sql_rows(db, "SELECT * FROM user_metrics WHERE user_id = :u", u=reviewer))[0]
    assert (m.helpful_reviews, m.critical_bug_reports, m.tasks_accepted, m.reviews_total) == (
        1,
        1,
        0,
        1,
    )
    # the subject's row only ever held zero counters: nothing to restore for it
    assert await sql_value(db, "SELECT count(*) FROM user_metrics WHERE user_id = :u", u=user) == 0
    actions = [
        r.action
        for r in await sql_rows(
            db, "SELECT action FROM audit_events WHERE action LIKE '%.repaired' ORDER BY id"
        )
    ]
    assert actions == ["levels.repaired", "metrics.repaired"]
