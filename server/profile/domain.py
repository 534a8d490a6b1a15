"""Gamification rules (SPEC "Gamification", "Identity, roles, access"): pure functions only.

Fixed point (docs/design.md): reputation is an integer number of thousandths (`rep_milli`,
0..10,000,000, i.e. rep 0..10,000) and shown as floor(rep). Trust weights are integer
thousandths too (`weight_milli`, 500..1500). Nothing here uses floats, so every replay of
the daily job on any machine gives bit-identical results.

Rounding decisions (each applied exactly once, at the end of a computation):

* trust weight: floor to the thousandth (`math.isqrt` on a scaled integer);
* reputation step: the exact value 0.995 × rep + min(50, dailyGain) is computed as a
  fraction over 1/1,000,000 and rounded half up to the thousandth, then capped at 10,000;
* XP from a weight (review 5 × w, endorsement 2 × w): the exact product of the integer and
  the floored thousandth weight, rounded half up to an integer XP (5 × 0.707 = 3.535 → 4).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

MILLI = 1000

# --- levels -------------------------------------------------------------------------------

DEFAULT_LEVEL_THRESHOLDS: tuple[int, ...] = (0, 100, 250, 500, 900, 1400, 2000, 2700, 3500, 4400)


def level_for_xp(xp: int, thresholds: Sequence[int] = DEFAULT_LEVEL_THRESHOLDS) -> int:
    """Level 1..len(thresholds): the number of thresholds that `xp` has reached.

    SPEC: "Levels: 1..10 at XP thresholds 0, 100, 250, ...". Level n starts at exactly
    thresholds[n-1] XP (reaching 100 XP is level 2, 99 XP is level 1). Thresholds must start
    at 0 and strictly increase (a settings override is checked here, so a bad table fails
    loudly instead of producing odd levels).
    """
    if xp < 0:
        raise ValueError(f"xp must be >= 0, got {xp}")
    if not thresholds or thresholds[0] != 0:
        raise ValueError("level thresholds must start at 0")
    if any(b <= a for a, b in itertools.pairwise(thresholds)):
        raise ValueError("level thresholds must strictly increase")
    return sum(1 for t in thresholds if xp >= t)


# --- reputation and trust -----------------------------------------------------------------

REP_MAX_MILLI = 10_000 * MILLI
TRUST_MIN_MILLI = 500
TRUST_MAX_MILLI = 1500


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


def trust_weight_milli(
    rep_milli: int, *, low_milli: int = TRUST_MIN_MILLI, high_milli: int = TRUST_MAX_MILLI
) -> int:
    """Trust weight in thousandths: clamp(sqrt(rep/100), 0.5, 1.5), floored to the thousandth.

    SPEC: "Trust weight of a user = clamp(sqrt(rep/100), 0.5, 1.5)". rep 25 → 0.5 (and
    anything lower), rep 100 → 1.0, rep 225 and above → 1.5; rep 50 → 0.707 (floor of
    0.70710…). The clamp bounds are integers in thousandths, so floor-then-clamp equals
    clamp-then-floor.
    """
    _check_rep(rep_milli)
    return min(high_milli, max(low_milli, sqrt_rep_over_100_milli(rep_milli)))


def shown_rep(rep_milli: int) -> int:
    """The reputation the API shows: floor(rep) (SPEC "the API shows floor(rep)")."""
    _check_rep(rep_milli)
    return rep_milli // MILLI


@dataclass(frozen=True, slots=True)
class DailyGain:
    """What one user gained over one UTC day d, the inputs of SPEC's dailyGain(d).

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


@dataclass(frozen=True, slots=True)
class ReputationRules:
    """The reputation parameters (SPEC defaults; a settings row may override them)."""

    decay_per_mille: int = 995  # 0.995
    gain_cap_milli: int = 50 * MILLI  # min(50, dailyGain)
    badge_gain_milli: int = 20 * MILLI  # badgesToday × 20
    ceiling_milli: int = REP_MAX_MILLI  # 10,000


DEFAULT_REPUTATION_RULES = ReputationRules()


def reputation_step(
    rep_milli: int, gain: DailyGain, rules: ReputationRules = DEFAULT_REPUTATION_RULES
) -> int:
    """rep(d+1) in thousandths from rep(d) and day d's gains.

    SPEC: rep(d+1) = 0.995 × rep(d) + min(50, dailyGain(d)),
          dailyGain = xpGain/10 + endorsementsWeighted/5 + badgesToday × 20, ceiling 10,000.

    Exact arithmetic in units of 1/1,000,000 rep (micro), one rounding at the end:
      decay  = rep_milli × 995                                   (0.995 × rep, micro)
      gain   = xp × 100,000 + endorsementsWeighted_milli × 200 + badges × 20,000,000 (micro)
      result = round_half_up((decay + min(50,000,000, gain)) / 1000), then min(ceiling).
    Round half up is floor((n + 500) / 1000). Consequence worth knowing: a rep below 0.1
    (100 milli) with no gain no longer decays (0.995 × 99 milli = 98.505 → 99), so rep never
    reaches 0 by decay alone; it stays in [0, 10,000] always. With the SPEC defaults the
    ceiling is also the recurrence's fixed point (0.995 × 10,000 + 50 = 10,000), so the cap
    only bites when settings raise the daily gain cap.
    """
    _check_rep(rep_milli)
    gain_micro = (
        gain.xp_gain * 100 * MILLI  # xp / 10, in micro
        + gain.endorsements_weighted_milli * 200  # (w_milli / 1000) / 5, in micro
        + gain.badges_today * rules.badge_gain_milli * MILLI
    )
    total_micro = rep_milli * rules.decay_per_mille + min(rules.gain_cap_milli * MILLI, gain_micro)
    return min(rules.ceiling_milli, (total_micro + MILLI // 2) // MILLI)


def catch_up(
    rep_milli: int, days: Iterable[DailyGain], rules: ReputationRules = DEFAULT_REPUTATION_RULES
) -> int:
    """Apply missed days in order (SPEC: "missed days are caught up in order").

    Exactly a left fold of `reputation_step`, so catching up N days equals N daily runs.
    """
    for gain in days:
        rep_milli = reputation_step(rep_milli, gain, rules)
    return rep_milli


# --- XP -----------------------------------------------------------------------------------

BADGE_XP = 50
REVIEW_XP_FACTOR = 5
ENDORSEMENT_XP_FACTOR = 2
ENDORSEMENT_DAILY_XP_CAP = 20


def weighted_xp(factor: int, weight_milli: int) -> int:
    """round_half_up(factor × weight) for an integer factor and a weight in thousandths."""
    if factor < 0 or weight_milli < 0:
        raise ValueError("factor and weight must be >= 0")
    return (factor * weight_milli + MILLI // 2) // MILLI


def review_xp(reviewer_weight_milli: int) -> int:
    """XP for a positive review received: round_half_up(5 × reviewer trust weight).

    SPEC: "positive review received = 5 × reviewer trust weight". 0.5 → 3 (2.5 up), 0.707 → 4
    (3.535), 1.0 → 5, 1.5 → 8 (7.5 up).
    """
    return weighted_xp(REVIEW_XP_FACTOR, reviewer_weight_milli)


def badge_xp() -> int:
    """XP for a badge awarded (SPEC: "badge awarded = 50")."""
    return BADGE_XP


def endorsement_xp(
    endorser_weight_milli: int,
    already_today: int,
    *,
    daily_cap: int = ENDORSEMENT_DAILY_XP_CAP,
) -> int:
    """XP granted to an endorsee for one endorsement, respecting the daily cap.

    SPEC: "endorsement received = 2 × endorser trust weight, at most 20 XP a day per endorsee
    from endorsements". `already_today` is the endorsement XP the endorsee already got this
    UTC day. The value is round_half_up(2 × weight) (1..3 for weights 0.5..1.5), cut to what
    is left under the cap (never negative): the endorsement that crosses the cap gets the
    remainder, later ones get 0.
    """
    if already_today < 0:
        raise ValueError("already_today must be >= 0")
    full = weighted_xp(ENDORSEMENT_XP_FACTOR, endorser_weight_milli)
    return min(full, max(0, daily_cap - already_today))


# --- KYC and device posture -----------------------------------------------------------------


class KycStatus(StrEnum):
    """SPEC: "KYC status per user: NONE, PENDING, PASSED, FAILED"."""

    NONE = "NONE"
    PENDING = "PENDING"
    PASSED = "PASSED"
    FAILED = "FAILED"


DEVICE_REPORT_MAX_AGE = timedelta(hours=72)


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """One device posture report: compliant or not, at a (timezone-aware) time."""

    compliant: bool
    reported_at: datetime


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


def is_device_compliant(
    latest: DeviceReport | None,
    now: datetime,
    max_age: timedelta = DEVICE_REPORT_MAX_AGE,
) -> bool:
    """SPEC: device-compliant "when the latest report is compliant and at most 72 h old".

    "At most" is inclusive: a report exactly 72 h old still counts. No report → not
    compliant. A report time after `now` (clock skew between reporter and server) counts as
    fresh.
    """
    if latest is None:
        return False
    age = _aware(now, "now") - _aware(latest.reported_at, "reported_at")
    return latest.compliant and age <= max_age


def utc_day(value: datetime) -> date:
    """The UTC calendar day of an aware instant (days are UTC dates, docs/design.md)."""
    return _aware(value, "value").astimezone(UTC).date()


def device_compliant_days(reports: Iterable[tuple[date, bool]], today: date) -> int:
    """deviceCompliantDays: consecutive UTC days, ending today, with a compliant report.

    `reports` are (UTC day, compliant) pairs, any order, duplicates allowed. A day counts
    when it has at least one compliant report (a non-compliant report the same day does not
    undo it: the SPEC asks for "a compliant report"). The run must include `today`: no
    compliant report today → 0. Reports after `today` are ignored.
    """
    compliant_days = {day for day, compliant in reports if compliant and day <= today}
    count = 0
    day = today
    while day in compliant_days:
        count += 1
        day -= timedelta(days=1)
    return count
