"""Task reward rules (SPEC "BUZ economy", "Gamification" XP sources): pure functions only.

An accepted task yields `points = round_half_up(tierBase × quality × reviewerCred)`. The SPEC
uses the same factors for BUZ and XP, so both come from `task_points`; BUZ is then subject
to the gates and the daily cap, XP is not.

Exactness: reviewerCred = clamp(sqrt(avgReviewerTrust / 100), 0.7, 1.1) is floored to the
thousandth with integer `isqrt` (the same function as the trust weight), so the product
tierBase × quality × reviewerCred is a terminating decimal and is computed exactly in a
Decimal context that traps inexact results. round_half_up therefore sees exact .5 ties
(e.g. 150 × 1.0 × 0.710 = 106.5 → 107) and replays are deterministic.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from server.errors import Reason
from server.profile.domain import MILLI, KycStatus, sqrt_rep_over_100_milli


def round_half_up(value: Decimal | int) -> int:
    """Round to the nearest integer, ties away from zero (2.5 → 3; values here are >= 0).

    Decimal-based, so an exact x.5 is a tie (no binary-float surprises like 2.675).
    """
    quantized = Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(quantized)


def _exact() -> decimal.Context:
    """A Decimal context in which any inexact operation raises instead of rounding."""
    return decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])


class Tier(StrEnum):
    S = "S"
    A = "A"
    B = "B"
    C = "C"


TIER_BASE: Mapping[str, int] = {Tier.S: 400, Tier.A: 150, Tier.B: 80, Tier.C: 50}
QUALITY: Mapping[int, Decimal] = {
    1: Decimal("0.6"),
    2: Decimal("0.8"),
    3: Decimal("1.0"),
    4: Decimal("1.2"),
    5: Decimal("1.4"),
}

REVIEWER_CRED_MIN_MILLI = 700
REVIEWER_CRED_MAX_MILLI = 1100


def reviewer_cred_milli(
    reviewer_reps_milli: Sequence[int],
    *,
    low_milli: int = REVIEWER_CRED_MIN_MILLI,
    high_milli: int = REVIEWER_CRED_MAX_MILLI,
) -> int:
    """reviewerCred in thousandths: clamp(sqrt(mean reviewer rep / 100), 0.7, 1.1), floored.

    SPEC: "reviewerCred = clamp(sqrt(avgReviewerTrust/100), 0.7, 1.1), avgReviewerTrust being
    the reviewers' mean reputation". The mean is of the reviewers' exact reputations
    (rep_milli, not the floored shown value) and is not rounded separately:
    floor(1000 × sqrt(mean/100)) = isqrt(10 × Σrep_milli // n).
    No reviewers → mean 0 → the lower clamp, 0.7.
    rep 49 → 0.7, rep 100 → 1.0, rep 121 and above → 1.1.
    """
    if not reviewer_reps_milli:
        return low_milli
    if any(r < 0 for r in reviewer_reps_milli):
        raise ValueError("reviewer reputations must be >= 0")
    cred = sqrt_rep_over_100_milli(sum(reviewer_reps_milli), len(reviewer_reps_milli))
    return min(high_milli, max(low_milli, cred))


def task_points(
    tier: str,
    quality: int,
    cred_milli: int,
    *,
    tier_base: Mapping[str, int] = TIER_BASE,
    quality_multiplier: Mapping[int, Decimal] = QUALITY,
) -> int:
    """round_half_up(tierBase × quality × reviewerCred): the task's BUZ and also its XP.

    SPEC "Task accepted": `buz = round_half_up(tierBase × quality × reviewerCred)`, and
    "accepted task [XP] = round_half_up(tierBase × quality × reviewerCred) (same factors as
    BUZ, no daily cap)". Computed exactly (see the module docstring); an override table
    with, say, quality 1.25 stays exact.
    """
    try:
        base = tier_base[tier]
    except KeyError:
        raise ValueError(f"unknown tier {tier!r}") from None
    try:
        multiplier = quality_multiplier[quality]
    except KeyError:
        raise ValueError(f"unknown quality {quality!r}") from None
    if cred_milli < 0:
        raise ValueError("reviewer cred must be >= 0")
    ctx = _exact()
    product = ctx.multiply(
        ctx.multiply(Decimal(base), multiplier), Decimal(cred_milli).scaleb(-3, ctx)
    )
    return round_half_up(product)


# --- gates and cap ------------------------------------------------------------------------

MIN_REP = 60
DAILY_BUZ_CAP = 2000


def evaluate_gates(
    kyc_status: str,
    rep_milli: int,
    device_compliant: bool,
    *,
    min_rep: int = MIN_REP,
) -> tuple[Reason, ...]:
    """Reasons the BUZ part is withheld, in a fixed order; empty when all gates hold.

    SPEC "Gates (all must hold)": KYC PASSED, reputation ≥ 60, device-compliant. Every
    failing gate is reported (not just the first), always in the order KYC_REQUIRED,
    REPUTATION_TOO_LOW, DEVICE_NOT_COMPLIANT. Reputation compares the exact value:
    rep_milli ≥ min_rep × 1000, which is the same as shown floor(rep) ≥ min_rep.
    """
    reasons: list[Reason] = []
    if kyc_status != KycStatus.PASSED:
        reasons.append(Reason.KYC_REQUIRED)
    if rep_milli < min_rep * MILLI:
        reasons.append(Reason.REPUTATION_TOO_LOW)
    if not device_compliant:
        reasons.append(Reason.DEVICE_NOT_COMPLIANT)
    return tuple(reasons)


def apply_daily_cap(computed: int, issued_today: int, cap: int = DAILY_BUZ_CAP) -> tuple[int, int]:
    """(awarded, capped): award up to what is left of the day's cap; the rest is dropped.

    SPEC: "Daily cap 2,000 BUZ per user per UTC day of acceptance: award up to the cap, the
    rest is not carried over". `issued_today` is the BUZ already issued for tasks accepted
    that UTC day. awarded + capped == computed; awarded ≤ max(0, cap − issued_today).
    """
    if computed < 0 or issued_today < 0 or cap < 0:
        raise ValueError("amounts must be >= 0")
    remaining = max(0, cap - issued_today)
    awarded = min(computed, remaining)
    return awarded, computed - awarded


@dataclass(frozen=True, slots=True)
class RewardDecision:
    """Everything the task-accepted use case records and returns.

    computed: round_half_up(tierBase × quality × reviewerCred) BUZ before gates and cap.
    awarded: BUZ to ISSUE. capped: BUZ dropped by the daily cap. withheld_buz: BUZ not
    issued because a gate failed (then awarded = capped = 0). withheld: the failing gates.
    xp: XP for the task (always awarded, never capped). cred_milli: reviewerCred used.
    Invariant: awarded + capped + withheld_buz == computed.
    """

    computed: int
    awarded: int
    capped: int
    withheld_buz: int
    withheld: tuple[Reason, ...]
    xp: int
    cred_milli: int

    @property
    def reasons(self) -> tuple[Reason, ...]:
        """Why less than `computed` was issued: the gates, then DAILY_CAP_REACHED."""
        return self.withheld + ((Reason.DAILY_CAP_REACHED,) if self.capped else ())


def decide_reward(
    *,
    tier: str,
    quality: int,
    reviewer_reps_milli: Sequence[int],
    kyc_status: str,
    rep_milli: int,
    device_compliant: bool,
    issued_today: int,
    tier_base: Mapping[str, int] = TIER_BASE,
    quality_multiplier: Mapping[int, Decimal] = QUALITY,
    cred_low_milli: int = REVIEWER_CRED_MIN_MILLI,
    cred_high_milli: int = REVIEWER_CRED_MAX_MILLI,
    min_rep: int = MIN_REP,
    daily_cap: int = DAILY_BUZ_CAP,
) -> RewardDecision:
    """The reward for one accepted task (SPEC "Task accepted", "Gates", "Daily cap").

    Gates are checked first: if any fails, all BUZ is withheld (and does not use up the
    day's cap); XP is awarded either way. Otherwise the daily cap splits the BUZ into
    awarded and capped.
    """
    cred = reviewer_cred_milli(
        reviewer_reps_milli, low_milli=cred_low_milli, high_milli=cred_high_milli
    )
    points = task_points(
        tier, quality, cred, tier_base=tier_base, quality_multiplier=quality_multiplier
    )
    withheld = evaluate_gates(kyc_status, rep_milli, device_compliant, min_rep=min_rep)
    if withheld:
        awarded, capped, withheld_buz = 0, 0, points
    else:
        awarded, capped = apply_daily_cap(points, issued_today, daily_cap)
        withheld_buz = 0
    return RewardDecision(
        computed=points,
        awarded=awarded,
        capped=capped,
        withheld_buz=withheld_buz,
        withheld=withheld,
        xp=points,
        cred_milli=cred,
    )


@dataclass(frozen=True, slots=True)
class RewardParams:
    """The business parameters a reward decision uses, decoded from one snapshot."""

    tier_base: Mapping[str, int]
    quality_multiplier: Mapping[int, Decimal]
    cred_low_milli: int
    cred_high_milli: int
    min_rep: int
    daily_cap: int
    require_kyc: bool
    require_device: bool
    max_report_age: timedelta
    level_thresholds: tuple[int, ...]

    @classmethod
    def from_snapshot(cls, values: Mapping[str, Any]) -> RewardParams:
        bounds = values["buz.reviewer_cred_bounds"]
        return cls(
            tier_base={str(k): int(v) for k, v in values["buz.tier_base"].items()},
            quality_multiplier={
                int(k): Decimal(str(v)) for k, v in values["buz.quality_multipliers"].items()
            },
            cred_low_milli=int(Decimal(str(bounds["min"])) * MILLI),
            cred_high_milli=int(Decimal(str(bounds["max"])) * MILLI),
            min_rep=int(values["gates.min_reputation"]),
            daily_cap=int(values["buz.daily_cap"]),
            require_kyc=bool(values["gates.require_kyc"]),
            require_device=bool(values["gates.require_device_compliance"]),
            max_report_age=timedelta(hours=int(values["device.max_report_age_hours"])),
            level_thresholds=tuple(int(t) for t in values["levels.thresholds"]),
        )
