"""Gamification rules: levels, trust weight, reputation, XP. Pure, no I/O.

Every number comes from the typed business parameters (server/core/params.py): levels,
trust bounds, XP factors, the reputation recurrence. Fixed point (docs/design.md):
reputation is an integer number of thousandths (`rep_milli`, 0..10,000,000, i.e. rep
0..10,000) and shown as floor(rep). Trust weights are integer thousandths too
(`weight_milli`, 500..1500 by default). Nothing here uses floats, so every replay of the
daily job on any machine gives bit-identical results.

Rounding decisions (each applied exactly once, at the end of a computation):

* trust weight: floor to the thousandth (`math.isqrt` on a scaled integer);
* reputation step: the exact value decay × rep + min(cap, dailyGain) (a fraction) is
  rounded half up to the thousandth, then capped at the ceiling;
* XP from a weight (review 5 × w, endorsement 2 × w): the exact product of the integer and
  the floored thousandth weight, rounded half up to an integer XP (5 × 0.707 = 3.535 → 4).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from server.core.params import MILLI, REP_MAX, ReputationParams, TrustParams, XpParams

# --- levels -------------------------------------------------------------------------------


def level_for_xp(xp: int, thresholds: Sequence[int]) -> int:
    """Level 1..len(thresholds): the number of thresholds that `xp` has reached.

    Level n starts at exactly thresholds[n-1] XP (with the defaults, reaching 100 XP is
    level 2 and 99 XP is level 1). The thresholds are checked once, when the parameters
    are decoded (LevelParams: start at 0, strictly increasing).
    """
    if xp < 0:
        raise ValueError(f"xp must be >= 0, got {xp}")
    return sum(1 for t in thresholds if xp >= t)


def next_level_xp(level: int, thresholds: Sequence[int]) -> int:
    """XP at which the level after `level` starts; 0 at the top level."""
    return int(thresholds[level]) if level < len(thresholds) else 0


# --- reputation and trust -----------------------------------------------------------------

REP_MAX_MILLI = REP_MAX * MILLI  # the storage bound (profiles.rep_milli CHECK)


def _check_rep(rep_milli: int) -> None:
    if not 0 <= rep_milli <= REP_MAX_MILLI:
        raise ValueError(f"rep_milli must be in [0, {REP_MAX_MILLI}], got {rep_milli}")


def sqrt_rep_over_100_milli(rep_milli: int, count: int = 1) -> int:
    """floor(1000 × sqrt(rep / 100)) for rep = rep_milli / (1000 × count), exactly.

    1000 × sqrt(rep_milli / (100,000 × count)) = sqrt(10 × rep_milli / count), and
    floor(sqrt(x)) == isqrt(floor(x)) for real x ≥ 0, so this is
    isqrt(10 × rep_milli // count) with no intermediate rounding. `count` lets a caller pass
    a sum of reputations and get the value for their exact mean. The same sqrt(rep/100)
    appears in trust weight and in the wallet's reviewerCred; both use this one function
    (with their own clamps).
    """
    if rep_milli < 0 or count < 1:
        raise ValueError(f"need rep_milli >= 0 and count >= 1, got {rep_milli}, {count}")
    return math.isqrt((10 * rep_milli) // count)


def trust_weight_milli(rep_milli: int, trust: TrustParams) -> int:
    """Trust weight in thousandths: clamp(sqrt(rep/100), low, high), floored to the thousandth.

    With the default bounds 0.5 and 1.5: rep 25 → 0.5 (and anything lower), rep 100 → 1.0,
    rep 225 and above → 1.5; rep 50 → 0.707 (floor of 0.70710…). The clamp bounds are
    integers in thousandths, so floor-then-clamp equals clamp-then-floor.
    """
    _check_rep(rep_milli)
    return min(trust.high_milli, max(trust.low_milli, sqrt_rep_over_100_milli(rep_milli)))


def shown_rep(rep_milli: int) -> int:
    """The reputation the API shows: floor(rep)."""
    _check_rep(rep_milli)
    return rep_milli // MILLI


@dataclass(frozen=True, slots=True)
class DailyGain:
    """What one user gained over one UTC day d, the inputs of dailyGain(d).

    xp_gain: XP earned that day (all sources). endorsements_weighted_milli: the sum, over
    endorsements received that day, of each endorser's trust weight, in thousandths.
    badges_today: badges awarded that day.
    """

    xp_gain: int = 0
    endorsements_weighted_milli: int = 0
    badges_today: int = 0

    def __post_init__(self) -> None:
        if self.xp_gain < 0 or self.endorsements_weighted_milli < 0 or self.badges_today < 0:
            raise ValueError(f"daily gain inputs must be >= 0: {self}")


def reputation_step(rep_milli: int, gain: DailyGain, rules: ReputationParams) -> int:
    """rep(d+1) in thousandths from rep(d) and day d's gains:

        rep(d+1) = decay × rep(d) + min(daily_gain_cap, dailyGain(d)), at most the ceiling,
        dailyGain = xpGain / xp_divisor + endorsementsWeighted / endorsement_divisor
                    + badgesToday × badge_gain.

    Exact arithmetic (fractions), one rounding at the end: half up to the thousandth.
    Consequence worth knowing: with decay 0.995, a rep below 0.1 (100 milli) with no gain
    no longer decays (0.995 × 99 milli = 98.505 → 99), so rep never reaches 0 by decay
    alone; it stays in [0, ceiling] always. With the defaults the ceiling is also the
    recurrence's fixed point (0.995 × 10,000 + 50 = 10,000), so the cap only bites when
    settings raise the daily gain cap.
    """
    _check_rep(rep_milli)
    daily = (
        Fraction(gain.xp_gain, rules.xp_divisor)
        + Fraction(gain.endorsements_weighted_milli, MILLI * rules.endorsement_divisor)
        + gain.badges_today * Fraction(rules.badge_gain)
    )
    rep = Fraction(rules.decay) * Fraction(rep_milli, MILLI)
    exact_milli = (rep + min(Fraction(rules.daily_gain_cap), daily)) * MILLI
    return min(rules.ceiling * MILLI, math.floor(exact_milli + Fraction(1, 2)))


def catch_up(rep_milli: int, days: Iterable[DailyGain], rules: ReputationParams) -> int:
    """Apply missed days in order ("missed days are caught up in order").

    Exactly a left fold of `reputation_step`, so catching up N days equals N daily runs.
    """
    for gain in days:
        rep_milli = reputation_step(rep_milli, gain, rules)
    return rep_milli


def gain_day(today: date, rep_through: date | None) -> date:
    """The UTC day a gain (XP, endorsement weight, badge) counts for in dailyGain.

    The day it is awarded (`today`, the server's clock), never a day the daily job already
    folded into the reputation: `rep_through` is the profile's last folded day, read under
    the profile's row lock, so a writer whose clock is behind the job, or a late event,
    counts on the first open day instead of changing a closed one.
    """
    if rep_through is None or rep_through < today:
        return today
    return rep_through + timedelta(days=1)


def _ratio(value: Decimal) -> Fraction:
    return Fraction(value)


@dataclass(frozen=True, slots=True)
class StepCoefficients:
    """`reputation_step` as integer arithmetic, for the daily job's set-based SQL.

    With Q a common denominator of every dailyGain term and D the denominator of decay:

        M = min(cap_q, xp × xp_coef + em × endorsement_coef + badges × badge_coef)
            (= Q × min(cap, dailyGain), an integer)
        N = decay_num × rep_milli × Q + 1000 × M × decay_den   (= D × Q × exact rep(d+1) milli)
        rep_milli(d+1) = min(ceiling_milli, floor((2N + T) / 2T)),   T = decay_den × Q

    which is the exact value rounded half up once, as `reputation_step` does with fractions.
    tests/profile/test_reputation_sql.py checks that the SQL equals `reputation_step`.
    """

    decay_num: int
    decay_den: int
    q: int
    xp_coef: int
    endorsement_coef: int
    badge_coef: int
    cap_q: int
    ceiling_milli: int

    @property
    def t(self) -> int:
        return self.decay_den * self.q


def step_coefficients(rules: ReputationParams) -> StepCoefficients:
    decay = _ratio(rules.decay)
    cap = _ratio(rules.daily_gain_cap)
    badge = _ratio(rules.badge_gain)
    q = math.lcm(
        rules.xp_divisor, MILLI * rules.endorsement_divisor, cap.denominator, badge.denominator
    )
    return StepCoefficients(
        decay_num=decay.numerator,
        decay_den=decay.denominator,
        q=q,
        xp_coef=q // rules.xp_divisor,
        endorsement_coef=q // (MILLI * rules.endorsement_divisor),
        badge_coef=int(badge * q),
        cap_q=int(cap * q),
        ceiling_milli=rules.ceiling * MILLI,
    )


# --- XP -----------------------------------------------------------------------------------


def weighted_xp(factor: int, weight_milli: int) -> int:
    """round_half_up(factor × weight) for an integer factor and a weight in thousandths."""
    if factor < 0 or weight_milli < 0:
        raise ValueError("factor and weight must be >= 0")
    return (factor * weight_milli + MILLI // 2) // MILLI


def review_xp(reviewer_weight_milli: int, xp: XpParams) -> int:
    """XP for a positive review received: round_half_up(factor × reviewer trust weight).

    With the default factor 5: 0.5 → 3 (2.5 up), 0.707 → 4 (3.535), 1.0 → 5, 1.5 → 8.
    """
    return weighted_xp(xp.review_factor, reviewer_weight_milli)


def badge_xp(xp: XpParams) -> int:
    """XP for a badge awarded (50 by default)."""
    return xp.badge


def endorsement_xp(endorser_weight_milli: int, already_today: int, xp: XpParams) -> int:
    """XP granted to an endorsee for one endorsement, respecting the daily cap.

    "Endorsement received = 2 × endorser trust weight, at most 20 XP a day per endorsee from
    endorsements" (factor and cap from XpParams). `already_today` is the endorsement XP the
    endorsee already got this UTC day. The value is round_half_up(factor × weight) (1..3 for
    weights 0.5..1.5 by default), cut to what is left under the cap (never negative): the
    endorsement that crosses the cap gets the remainder, later ones get 0.
    """
    if already_today < 0:
        raise ValueError("already_today must be >= 0")
    full = weighted_xp(xp.endorsement_factor, endorser_weight_milli)
    return min(full, max(0, xp.endorsement_daily_cap - already_today))
