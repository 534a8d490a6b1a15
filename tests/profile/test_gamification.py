"""Gamification rules: levels, trust weight, reputation, XP (with the default parameters,
decoded from the settings defaults, unless a test overrides one)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.core.params import DEFAULTS, BusinessParams, LevelParams
from server.profile.gamification import (
    REP_MAX_MILLI,
    DailyGain,
    badge_xp,
    catch_up,
    endorsement_xp,
    level_for_xp,
    reputation_step,
    review_xp,
    shown_rep,
    trust_weight_milli,
)

DEFAULT_LEVEL_THRESHOLDS = DEFAULTS.levels.thresholds
REP = DEFAULTS.reputation
XP = DEFAULTS.xp
TRUST = DEFAULTS.trust


def level(xp: int) -> int:
    return level_for_xp(xp, DEFAULT_LEVEL_THRESHOLDS)


# --- levels -------------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "threshold"), list(enumerate(DEFAULT_LEVEL_THRESHOLDS)))
def test_level_at_every_threshold_boundary(index: int, threshold: int) -> None:
    assert level(threshold) == index + 1
    if threshold > 0:
        assert level(threshold - 1) == index


def test_level_caps_at_ten() -> None:
    assert level(10**9) == 10


def test_level_rejects_negative_xp_and_bad_tables() -> None:
    with pytest.raises(ValueError, match="xp"):
        level(-1)
    # A table is checked once, when the settings are decoded.
    with pytest.raises(ValueError, match="start at 0"):
        LevelParams((10, 20))
    with pytest.raises(ValueError, match="increase"):
        LevelParams((0, 20, 20))
    with pytest.raises(ValueError, match="increase"):
        BusinessParams.decode({"levels.thresholds": [0, 20, 20]})


def test_level_with_override_table() -> None:
    assert [level_for_xp(x, (0, 10, 30)) for x in (0, 9, 10, 29, 30, 999)] == [1, 1, 2, 2, 3, 3]


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_level_is_monotone(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert 1 <= level(lo) <= level(hi) <= 10


# --- trust weight and shown rep -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rep_milli", "weight"),
    [
        (0, 500),  # clamp low
        (24_999, 500),  # sqrt(0.24999) = 0.49999 → clamp 0.5
        (25_000, 500),  # exactly 0.5
        (25_001, 500),  # 0.500004… floors to 0.500
        (50_000, 707),  # sqrt(0.5) = 0.70710… floors to 0.707
        (64_000, 800),
        (100_000, 1000),
        (224_999, 1499),  # 1.49999… floors to 1.499
        (225_000, 1500),  # exactly 1.5
        (400_000, 1500),  # 2.0 → clamp high
        (REP_MAX_MILLI, 1500),
    ],
)
def test_trust_weight(rep_milli: int, weight: int) -> None:
    assert trust_weight_milli(rep_milli, TRUST) == weight


def test_trust_weight_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="rep_milli"):
        trust_weight_milli(-1, TRUST)
    with pytest.raises(ValueError, match="rep_milli"):
        trust_weight_milli(REP_MAX_MILLI + 1, TRUST)


@given(st.integers(0, REP_MAX_MILLI))
def test_trust_weight_is_floor_of_exact_sqrt(rep_milli: int) -> None:
    w = trust_weight_milli(rep_milli, TRUST)
    assert 500 <= w <= 1500
    # floor: w² ≤ 10·rep_milli < (w+1)² unless clamped
    if 500 < w < 1500:
        assert w * w <= 10 * rep_milli < (w + 1) * (w + 1)


@pytest.mark.parametrize(
    ("rep_milli", "shown"), [(0, 0), (999, 0), (1000, 1), (59_999, 59), (60_000, 60)]
)
def test_shown_rep_is_floor(rep_milli: int, shown: int) -> None:
    assert shown_rep(rep_milli) == shown


# --- reputation step ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rep_milli", "gain", "expected"),
    [
        (0, DailyGain(), 0),
        (100_000, DailyGain(), 99_500),  # 0.995 × 100
        (100_000, DailyGain(xp_gain=50), 104_500),  # 99.5 + 50/10
        (100_000, DailyGain(endorsements_weighted_milli=1500), 99_800),  # 99.5 + 1.5/5
        (100_000, DailyGain(endorsements_weighted_milli=707), 99_641),  # 99.6414 → 99.641
        (100_000, DailyGain(badges_today=1), 119_500),  # 99.5 + 20
        (100_000, DailyGain(xp_gain=300, badges_today=1), 149_500),  # 30 + 20 = 50, at cap
        (100_000, DailyGain(xp_gain=301, badges_today=1), 149_500),  # 50.1 → cap 50
        (100_000, DailyGain(xp_gain=600), 149_500),  # 60 → cap 50
        (100_000, DailyGain(badges_today=3), 149_500),  # 60 → cap 50
        (100_000, DailyGain(xp_gain=10**6, endorsements_weighted_milli=10**6), 149_500),
        # round half up to the thousandth
        (300, DailyGain(), 299),  # 298.5 milli → 299
        (100, DailyGain(), 100),  # 99.5 milli → 100 (stays)
        (99, DailyGain(), 99),  # 98.505 → 99
        (1, DailyGain(), 1),  # 0.995 → 1
        (0, DailyGain(endorsements_weighted_milli=1), 0),  # 0.2 milli → 0
        (0, DailyGain(endorsements_weighted_milli=3), 1),  # 0.6 milli → 1
        (200, DailyGain(endorsements_weighted_milli=1), 199),  # 199 + 0.2 = 199.2 → 199
        (400, DailyGain(endorsements_weighted_milli=1), 398),  # 398 + 0.2 = 398.2 → 398
        (100, DailyGain(endorsements_weighted_milli=5), 101),  # 99.5 + 1 = 100.5 → 101
        # the top: 0.995 × 10,000 + 50 = 10,000 exactly, so rep stays at the ceiling
        (REP_MAX_MILLI, DailyGain(xp_gain=1000), REP_MAX_MILLI),
        (REP_MAX_MILLI, DailyGain(), 9_950_000),
        (9_990_000, DailyGain(xp_gain=500), 9_990_050),  # 9940.05 + 50
    ],
)
def test_reputation_step_examples(rep_milli: int, gain: DailyGain, expected: int) -> None:
    assert reputation_step(rep_milli, gain, REP) == expected


def test_reputation_ceiling_applies_when_rules_allow_more() -> None:
    rules = replace(REP, daily_gain_cap=Decimal(100))
    # 9,950 + 100 = 10,050 → ceiling 10,000
    assert reputation_step(REP_MAX_MILLI, DailyGain(xp_gain=1000), rules) == REP_MAX_MILLI
    assert reputation_step(100_000, DailyGain(xp_gain=1000), rules) == 199_500


def test_daily_gain_rejects_negative_inputs() -> None:
    with pytest.raises(ValueError, match="daily gain"):
        DailyGain(xp_gain=-1)
    with pytest.raises(ValueError, match="daily gain"):
        DailyGain(endorsements_weighted_milli=-1)
    with pytest.raises(ValueError, match="daily gain"):
        DailyGain(badges_today=-1)


def test_reputation_step_rejects_out_of_range_rep() -> None:
    with pytest.raises(ValueError, match="rep_milli"):
        reputation_step(REP_MAX_MILLI + 1, DailyGain(), REP)


gains = st.builds(
    DailyGain,
    xp_gain=st.integers(0, 5_000),
    endorsements_weighted_milli=st.integers(0, 50_000),
    badges_today=st.integers(0, 5),
)
reps = st.integers(0, REP_MAX_MILLI)


@given(reps, gains)
def test_reputation_stays_in_range(rep_milli: int, gain: DailyGain) -> None:
    assert 0 <= reputation_step(rep_milli, gain, REP) <= REP_MAX_MILLI


@given(reps, gains)
def test_reputation_step_matches_fraction_reference(rep_milli: int, gain: DailyGain) -> None:
    from fractions import Fraction

    rep = Fraction(rep_milli, 1000)
    daily = (
        Fraction(gain.xp_gain, 10)
        + Fraction(gain.endorsements_weighted_milli, 1000) / 5
        + gain.badges_today * 20
    )
    exact = Fraction(995, 1000) * rep + min(Fraction(50), daily)
    expected = min(REP_MAX_MILLI, int(exact * 1000 + Fraction(1, 2)))  # floor(x + 1/2)
    assert reputation_step(rep_milli, gain, REP) == expected


@given(reps, st.lists(gains, max_size=40))
def test_catch_up_equals_single_steps(rep_milli: int, days: list[DailyGain]) -> None:
    expected = rep_milli
    for gain in days:
        expected = reputation_step(expected, gain, REP)
    assert catch_up(rep_milli, days, REP) == expected


def test_catch_up_order_matters_and_is_kept() -> None:
    days = [DailyGain(xp_gain=500), DailyGain()]
    assert catch_up(0, days, REP) == 49_750  # 50 then × 0.995
    assert catch_up(0, list(reversed(days)), REP) == 50_000


@given(reps, gains)
def test_reputation_step_monotone_in_rep(a: int, gain: DailyGain) -> None:
    b = min(REP_MAX_MILLI, a + 1)
    assert reputation_step(a, gain, REP) <= reputation_step(b, gain, REP)


# --- XP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "xp"),
    [(500, 3), (699, 3), (700, 4), (707, 4), (1000, 5), (1300, 7), (1500, 8)],
    # 2.5 → 3 (half up), 3.495 → 3, 3.5 → 4, 3.535 → 4, 7.5 → 8
)
def test_review_xp(weight: int, xp: int) -> None:
    assert review_xp(weight, XP) == xp


def test_badge_xp() -> None:
    assert badge_xp(XP) == 50


@pytest.mark.parametrize(
    ("weight", "already", "xp"),
    [
        (500, 0, 1),
        (707, 0, 1),  # 1.414
        (749, 0, 1),  # 1.498
        (750, 0, 2),  # 1.5 → 2
        (1000, 0, 2),
        (1250, 0, 3),  # 2.5 → 3
        (1500, 0, 3),
        (1500, 17, 3),
        (1500, 18, 2),  # only 2 left under 20
        (1500, 19, 1),
        (1500, 20, 0),
        (1500, 25, 0),
    ],
)
def test_endorsement_xp_with_daily_cap(weight: int, already: int, xp: int) -> None:
    assert endorsement_xp(weight, already, XP) == xp


@given(st.lists(st.integers(500, 1500), max_size=30))
def test_endorsement_xp_never_exceeds_daily_cap(weights: list[int]) -> None:
    total = 0
    for w in weights:
        total += endorsement_xp(w, total, XP)
    assert total <= 20
