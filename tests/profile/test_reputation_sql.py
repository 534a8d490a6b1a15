"""The daily job's SQL computes exactly what the pure rules say: the reputation step
(server/profile/reputation_queries.step_sql over gamification.step_coefficients) equals
gamification.reputation_step, and the level repair's width_bucket equals level_for_xp."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import text

from server.core.params import DEFAULTS, ReputationParams
from server.db.session import Database
from server.profile.gamification import (
    REP_MAX_MILLI,
    DailyGain,
    level_for_xp,
    reputation_step,
    step_coefficients,
)
from server.profile.reputation_queries import step_binds, step_sql

REP = DEFAULTS.reputation

PARAMETER_SETS = {
    "defaults": REP,
    "odd divisors": replace(REP, xp_divisor=7, endorsement_divisor=3),
    "fine decay": replace(REP, decay=Decimal("0.9973")),
    "fractional gains": replace(
        REP, daily_gain_cap=Decimal("37.5"), badge_gain=Decimal("2.25"), xp_divisor=9
    ),
    "high cap, low ceiling": replace(REP, daily_gain_cap=Decimal(500), ceiling=4000),
    "no decay": replace(REP, decay=Decimal(1)),
    "full decay": replace(REP, decay=Decimal(0), daily_gain_cap=Decimal("0.001")),
}

_EVAL = text(
    "SELECT "
    + step_sql("c.rep", "c.xp", "c.weight", "c.badges")
    + " AS rep FROM unnest(CAST(:rep AS bigint[]), CAST(:xp AS bigint[]),"
    " CAST(:weight AS bigint[]), CAST(:badges AS integer[]), CAST(:i AS integer[]))"
    " AS c(rep, xp, weight, badges, i) ORDER BY c.i"
)


def _cases(rng: random.Random, rules: ReputationParams) -> list[tuple[int, DailyGain]]:
    ceiling = rules.ceiling * 1000
    edges = [0, 1, 99, 100, 101, 499, 500, 999, 1000, 59_999, 60_000, ceiling - 1, ceiling]
    cases = [(rep, DailyGain()) for rep in edges if rep <= REP_MAX_MILLI]
    for _ in range(1500):
        rep = rng.choice([rng.randint(0, ceiling), rng.randint(0, 200), rng.choice(edges)])
        gain = DailyGain(
            xp_gain=rng.choice(
                [0, rng.randint(0, 50), rng.randint(0, 5000), rng.randint(0, 10**7)]
            ),
            endorsements_weighted_milli=rng.choice(
                [0, rng.randint(0, 3000), rng.randint(0, 10**6)]
            ),
            badges_today=rng.choice([0, 0, 1, 2, rng.randint(0, 40)]),
        )
        cases.append((min(rep, ceiling), gain))
    # exact ties of the half-up rounding: 0.995 × rep_milli ends in .5 for odd rep_milli
    cases += [(2 * k + 1, DailyGain()) for k in range(0, 400, 7)]
    return cases


@pytest.mark.parametrize("name", list(PARAMETER_SETS))
async def test_sql_step_equals_reputation_step(db: Database, name: str) -> None:
    rules = PARAMETER_SETS[name]
    cases = _cases(random.Random(name), rules)
    binds = {
        "rep": [rep for rep, _ in cases],
        "xp": [g.xp_gain for _, g in cases],
        "weight": [g.endorsements_weighted_milli for _, g in cases],
        "badges": [g.badges_today for _, g in cases],
        "i": list(range(len(cases))),
        **step_binds(step_coefficients(rules)),
    }
    async with db.transaction() as session:
        got = [int(r) for r in (await session.execute(_EVAL, binds)).scalars()]
    expected = [reputation_step(rep, gain, rules) for rep, gain in cases]
    mismatches = [(c, g, e) for c, g, e in zip(cases, got, expected, strict=True) if g != e]
    assert not mismatches, mismatches[:5]


async def test_sql_level_equals_level_for_xp(db: Database) -> None:
    tables = [
        DEFAULTS.levels.thresholds,
        (0, 1, 2, 3),
        (0, 7, 1000, 10**9),
    ]
    rng = random.Random(7)
    for thresholds in tables:
        xps = sorted(
            {0, *thresholds, *(t - 1 for t in thresholds if t), *(t + 1 for t in thresholds)}
            | {rng.randint(0, 2 * thresholds[-1] + 10) for _ in range(300)}
        )
        async with db.transaction() as session:
            got = (
                await session.execute(
                    text(
                        "SELECT width_bucket(x, CAST(:t AS bigint[]))"
                        " FROM unnest(CAST(:xp AS bigint[])) WITH ORDINALITY AS u(x, i) ORDER BY i"
                    ),
                    {"t": list(thresholds), "xp": xps},
                )
            ).scalars()
            assert list(got) == [level_for_xp(x, thresholds) for x in xps]
