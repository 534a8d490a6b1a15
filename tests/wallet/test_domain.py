"""Task reward rules: points, reviewerCred, gates, daily cap (docs/product-rules.md)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.core.errors import Reason
from server.core.params import DEFAULTS
from server.profile.gamification import REP_MAX_MILLI
from server.wallet.domain import (
    RewardDecision,
    Tier,
    apply_daily_cap,
    decide_reward,
    evaluate_gates,
    reviewer_cred_milli,
    round_half_up,
    task_points,
)

REWARDS = DEFAULTS.rewards
GATES = DEFAULTS.gates
TIER_BASE = REWARDS.tier_base
QUALITY = REWARDS.quality_multiplier


def cred_of(reps: list[int]) -> int:
    return reviewer_cred_milli(reps, REWARDS)


def points(tier: str, quality: int, cred_milli: int) -> int:
    return task_points(tier, quality, cred_milli, REWARDS)


def decide(**kwargs: object) -> RewardDecision:
    return decide_reward(**{"rewards": REWARDS, "gates": GATES, **kwargs})  # type: ignore[arg-type]


# --- round_half_up ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("0.4999999", 0),
        ("0.5", 1),
        ("2.5", 3),
        ("3.5", 4),
        ("2.675", 3),
        ("106.49", 106),
        ("106.5", 107),
        ("22.5", 23),
        ("616.0", 616),
    ],
)
def test_round_half_up(value: str, expected: int) -> None:
    assert round_half_up(Decimal(value)) == expected


def test_round_half_up_int() -> None:
    assert round_half_up(7) == 7


# --- task points --------------------------------------------------------------------------

TABLE_CRED_1 = {
    Tier.S: (240, 320, 400, 480, 560),
    Tier.A: (90, 120, 150, 180, 210),
    Tier.B: (48, 64, 80, 96, 112),
    Tier.C: (30, 40, 50, 60, 70),
}


@pytest.mark.parametrize(
    ("tier", "quality", "expected"),
    [(t, q + 1, row[q]) for t, row in TABLE_CRED_1.items() for q in range(5)],
)
def test_every_tier_and_quality_at_cred_one(tier: Tier, quality: int, expected: int) -> None:
    assert cred_of([100_000]) == 1000
    assert points(tier, quality, 1000) == expected


@pytest.mark.parametrize(
    ("reps", "cred"),
    [
        ([], 700),  # no reviewers → mean 0 → 0.7
        ([0], 700),
        ([25_000], 700),  # 0.5 → clamp 0.7
        ([48_999], 700),
        ([49_000], 700),  # exactly 0.7
        ([50_000], 707),  # sqrt(0.5), floored
        ([50_410], 710),  # exactly 0.71
        ([56_250], 750),  # exactly 0.75
        ([64_000], 800),
        ([100_000], 1000),
        ([120_999], 1099),
        ([121_000], 1100),  # exactly 1.1
        ([REP_MAX_MILLI], 1100),  # clamp high
        ([100_000, 0], 707),  # mean 50
        ([81_000, 121_000], 1004),  # mean 101 → sqrt(1.01) = 1.00498… → 1.004
        ([1, 2], 700),
    ],
)
def test_reviewer_cred(reps: list[int], cred: int) -> None:
    assert cred_of(reps) == cred


def test_reviewer_cred_uses_exact_mean() -> None:
    # mean of 100.000 and 100.001 is 100.0005; 1000·sqrt(1.000005) = 1000.0025 → 1000
    assert cred_of([100_000, 100_001]) == 1000
    # mean 121.0005 → above 1.1 → clamp; mean 120.9995 → 1099.99… → 1099
    assert cred_of([120_999, 121_000]) == 1099


@pytest.mark.parametrize(
    ("tier", "quality", "reps", "expected"),
    [
        (Tier.C, 1, [0], 21),  # 50 × 0.6 × 0.7 = 21.0 (low clamp)
        (Tier.C, 1, [REP_MAX_MILLI], 33),  # 50 × 0.6 × 1.1 (high clamp)
        (Tier.S, 3, [], 280),  # no reviewers → 0.7
        (Tier.S, 5, [REP_MAX_MILLI], 616),  # 400 × 1.4 × 1.1 = 616.0
        (Tier.S, 1, [0], 168),  # 400 × 0.6 × 0.7
        (Tier.A, 3, [50_000], 106),  # 150 × 1.0 × 0.707 = 106.05
        (Tier.A, 3, [50_410], 107),  # 150 × 1.0 × 0.710 = 106.5 → 107 (exact tie)
        (Tier.C, 1, [56_250], 23),  # 50 × 0.6 × 0.750 = 22.5 → 23 (exact tie)
        (Tier.C, 1, [56_101], 22),  # cred 0.749 → 22.47
        (Tier.B, 4, [64_000], 77),  # 80 × 1.2 × 0.8 = 76.8
        (Tier.A, 5, [81_000, 121_000], 211),  # 150 × 1.4 × 1.004 = 210.84
    ],
)
def test_task_points_with_reviewers(
    tier: Tier, quality: int, reps: list[int], expected: int
) -> None:
    assert points(tier, quality, cred_of(reps)) == expected


def test_task_points_accepts_override_tables() -> None:
    bases = {**TIER_BASE, "S": 500}
    qualities = {**QUALITY, 3: Decimal("1.25")}
    overridden = replace(REWARDS, tier_base=bases, quality_multiplier=qualities)
    assert task_points("S", 3, 1000, overridden) == 625
    # 50 × 1.25 × 0.7 = 43.75 → 44
    assert task_points("C", 3, 700, replace(REWARDS, quality_multiplier=qualities)) == 44


def test_task_points_rejects_unknown_inputs() -> None:
    with pytest.raises(ValueError, match="tier"):
        points("X", 3, 1000)
    with pytest.raises(ValueError, match="quality"):
        points("S", 6, 1000)


tiers = st.sampled_from(list(Tier))
qualities = st.integers(1, 5)
rep_lists = st.lists(st.integers(0, REP_MAX_MILLI), max_size=6)


@given(tiers, qualities, qualities, rep_lists)
def test_points_monotone_in_quality(tier: Tier, q1: int, q2: int, reps: list[int]) -> None:
    lo, hi = sorted((q1, q2))
    c = cred_of(reps)
    assert points(tier, lo, c) <= points(tier, hi, c)


@given(tiers, qualities, st.integers(0, REP_MAX_MILLI), st.integers(0, REP_MAX_MILLI))
def test_points_monotone_in_reviewer_rep(tier: Tier, quality: int, r1: int, r2: int) -> None:
    lo, hi = sorted((r1, r2))
    assert points(tier, quality, cred_of([lo])) <= points(tier, quality, cred_of([hi]))


@given(tiers, qualities, rep_lists)
def test_points_bounded(tier: Tier, quality: int, reps: list[int]) -> None:
    base = Decimal(TIER_BASE[tier])
    low = round_half_up(base * Decimal("0.6") * Decimal("0.7"))
    high = round_half_up(base * Decimal("1.4") * Decimal("1.1"))
    assert low <= points(tier, quality, cred_of(reps)) <= high


# --- gates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kyc", "rep_milli", "device", "reasons"),
    [
        ("PASSED", 60_000, True, ()),
        ("PASSED", REP_MAX_MILLI, True, ()),
        ("PASSED", 59_999, True, (Reason.REPUTATION_TOO_LOW,)),  # shown 59
        ("PENDING", 60_000, True, (Reason.KYC_REQUIRED,)),
        ("NONE", 60_000, True, (Reason.KYC_REQUIRED,)),
        ("FAILED", 60_000, True, (Reason.KYC_REQUIRED,)),
        ("PASSED", 60_000, False, (Reason.DEVICE_NOT_COMPLIANT,)),
        (
            "NONE",
            0,
            False,
            (Reason.KYC_REQUIRED, Reason.REPUTATION_TOO_LOW, Reason.DEVICE_NOT_COMPLIANT),
        ),
        ("FAILED", 0, True, (Reason.KYC_REQUIRED, Reason.REPUTATION_TOO_LOW)),
    ],
)
def test_evaluate_gates(
    kyc: str, rep_milli: int, device: bool, reasons: tuple[Reason, ...]
) -> None:
    assert evaluate_gates(kyc, rep_milli, device, GATES) == reasons


def test_gates_min_rep_override() -> None:
    assert evaluate_gates("PASSED", 60_000, True, replace(GATES, min_rep=61)) == (
        Reason.REPUTATION_TOO_LOW,
    )
    assert evaluate_gates("PASSED", 0, True, replace(GATES, min_rep=0)) == ()


def test_gates_switched_off_by_settings() -> None:
    relaxed = replace(GATES, require_kyc=False, require_device=False)
    assert evaluate_gates("NONE", 60_000, False, relaxed) == ()
    assert evaluate_gates("NONE", 0, False, relaxed) == (Reason.REPUTATION_TOO_LOW,)


# --- daily cap ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("computed", "issued", "awarded", "capped"),
    [
        (400, 0, 400, 0),
        (400, 1600, 400, 0),  # reaches the cap exactly
        (400, 1700, 300, 100),
        (400, 2000, 0, 400),
        (400, 2500, 0, 400),  # already over (e.g. cap lowered): nothing more
        (0, 0, 0, 0),
        (2616, 0, 2000, 616),
    ],
)
def test_apply_daily_cap(computed: int, issued: int, awarded: int, capped: int) -> None:
    assert apply_daily_cap(computed, issued, REWARDS.daily_cap) == (awarded, capped)


@given(st.integers(0, 5000), st.integers(0, 5000), st.integers(0, 5000))
def test_cap_properties(computed: int, issued: int, cap: int) -> None:
    awarded, capped = apply_daily_cap(computed, issued, cap)
    assert awarded + capped == computed
    assert 0 <= awarded <= max(0, cap - issued)
    assert capped >= 0


# --- decide_reward ------------------------------------------------------------------------


def test_decide_reward_all_gates_pass() -> None:
    d = decide(
        tier="S",
        quality=5,
        reviewer_reps_milli=[REP_MAX_MILLI],
        issued_today=1500,
        kyc_status="PASSED",
        rep_milli=60_000,
        device_compliant=True,
    )
    assert d == RewardDecision(
        computed=616, awarded=500, capped=116, withheld_buz=0, withheld=(), xp=616, cred_milli=1100
    )
    assert d.reasons == (Reason.DAILY_CAP_REACHED,)


def test_decide_reward_withheld_keeps_xp() -> None:
    d = decide(
        tier="A",
        quality=3,
        reviewer_reps_milli=[100_000],
        kyc_status="PENDING",
        rep_milli=10_000,
        device_compliant=True,
        issued_today=0,
    )
    assert (d.computed, d.awarded, d.capped, d.withheld_buz, d.xp) == (150, 0, 0, 150, 150)
    assert d.withheld == (Reason.KYC_REQUIRED, Reason.REPUTATION_TOO_LOW)
    assert d.reasons == d.withheld


def test_decide_reward_overrides() -> None:
    d = decide(
        rewards=replace(REWARDS, daily_cap=10, tier_base={**TIER_BASE, "C": 60}),
        tier="C",
        quality=3,
        reviewer_reps_milli=[100_000],
        issued_today=0,
        kyc_status="PASSED",
        rep_milli=60_000,
        device_compliant=True,
    )
    assert (d.computed, d.awarded, d.capped) == (60, 10, 50)


@given(
    tiers,
    qualities,
    rep_lists,
    st.sampled_from(["NONE", "PENDING", "PASSED", "FAILED"]),
    st.integers(0, REP_MAX_MILLI),
    st.booleans(),
    st.integers(0, 3000),
)
def test_decide_reward_invariants(
    tier: Tier,
    quality: int,
    reps: list[int],
    kyc: str,
    rep_milli: int,
    device: bool,
    issued: int,
) -> None:
    d = decide(
        tier=tier,
        quality=quality,
        reviewer_reps_milli=reps,
        kyc_status=kyc,
        rep_milli=rep_milli,
        device_compliant=device,
        issued_today=issued,
    )
    assert d.xp == d.computed == points(tier, quality, cred_of(reps))
    assert d.awarded + d.capped + d.withheld_buz == d.computed
    assert d.awarded <= max(0, 2000 - issued)
    if d.withheld:
        assert d.awarded == d.capped == 0
    else:
        assert d.withheld_buz == 0
        assert d.awarded + d.capped == d.computed
