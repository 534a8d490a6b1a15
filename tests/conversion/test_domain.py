"""Conversion rules: granted bp, lock amounts, quarter windows (docs/product-rules.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.conversion.domain import (
    RELEASE,
    ConversionPlan,
    RequestStatus,
    WindowStatus,
    buz_to_lock,
    check_gates,
    check_pool,
    check_rate,
    granted_bp,
    min_buz_for_one_bp,
    opened_window,
    plan_conversion,
    quarter_bounds,
    quarter_label,
    quarter_start,
    rate_changeable,
    validate_window,
    window_status_at,
)
from server.core.errors import FailedPrecondition, InvalidArgument, Reason
from server.core.params import GateParams
from server.wallet.entries import EntryType

# --- amounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buz", "rate", "bp"),
    [
        (0, 100, 0),
        (99, 100, 0),
        (100, 100, 1),
        (150, 100, 1),  # floor
        (10_000, 100, 100),
        (3333, 3, 0),  # 0.9999
        (3334, 3, 1),
        (5000, 7, 3),  # 3.5 → 3
        (1, 10_000, 1),
        (12_345, 10_000, 12_345),
    ],
)
def test_granted_bp_floors(buz: int, rate: int, bp: int) -> None:
    assert granted_bp(buz, rate) == bp


@pytest.mark.parametrize(
    ("bp", "rate", "buz"),
    [
        (0, 100, 0),
        (1, 100, 100),
        (1, 3, 3334),  # ceil(3333.33)
        (3, 3, 10_000),
        (3, 7, 4286),  # ceil(4285.71)
        (7, 7, 10_000),
        (5, 10_000, 5),
        (1, 1, 10_000),
    ],
)
def test_buz_to_lock_ceils(bp: int, rate: int, buz: int) -> None:
    assert buz_to_lock(bp, rate) == buz


@pytest.mark.parametrize(("rate", "minimum"), [(1, 10_000), (3, 3334), (100, 100), (10_000, 1)])
def test_min_buz_for_one_bp(rate: int, minimum: int) -> None:
    assert min_buz_for_one_bp(rate) == minimum
    assert granted_bp(minimum, rate) == 1
    assert granted_bp(minimum - 1, rate) == 0


@pytest.mark.parametrize("rate", [0, -1, 10_001])
def test_rate_out_of_range(rate: int) -> None:
    with pytest.raises(ValueError, match="equity rate"):
        granted_bp(100, rate)
    with pytest.raises(ValueError, match="equity rate"):
        buz_to_lock(1, rate)


def test_plan_conversion_locks_only_what_is_needed() -> None:
    assert plan_conversion(5000, 7) == ConversionPlan(granted_bp=3, buz_locked=4286)
    assert plan_conversion(10_000, 100) == ConversionPlan(granted_bp=100, buz_locked=10_000)


@pytest.mark.parametrize(
    ("buz", "rate", "minimum"), [(99, 100, 100), (1, 333, 31), (3333, 3, 3334)]
)
def test_plan_conversion_below_minimum_states_it(buz: int, rate: int, minimum: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        plan_conversion(buz, rate)
    assert caught.value.effective_reason is Reason.BELOW_MINIMUM
    assert caught.value.violations[0].field == "buz_amount"
    assert caught.value.metadata == {"min_buz_amount": str(minimum)}
    assert f"minimum is {minimum} BUZ" in caught.value.message


@pytest.mark.parametrize("buz", [0, -5])
def test_plan_conversion_refuses_a_non_positive_amount(buz: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        plan_conversion(buz, 100)
    assert caught.value.effective_reason is Reason.INVALID_ARGUMENT
    assert caught.value.violations[0].field == "buz_amount"
    assert caught.value.metadata == {}


rates = st.integers(1, 10_000)


@given(st.integers(0, 10**9), rates)
def test_locking_grants_exactly_bp_again(bp: int, rate: int) -> None:
    assert granted_bp(buz_to_lock(bp, rate), rate) == bp


@given(st.integers(0, 10**12), rates)
def test_lock_never_exceeds_request(n: int, rate: int) -> None:
    bp = granted_bp(n, rate)
    locked = buz_to_lock(bp, rate)
    assert locked <= n
    # and it is the least amount that grants bp
    if locked > 0:
        assert granted_bp(locked - 1, rate) == bp - 1


# --- quarters -----------------------------------------------------------------------------


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "opens", "closes"),
    [
        (_utc(2026, 11, 15), _utc(2027, 1, 1), _utc(2027, 4, 1)),
        (
            datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            _utc(2027, 1, 1),
            _utc(2027, 4, 1),
        ),
        (_utc(2027, 1, 1), _utc(2027, 4, 1), _utc(2027, 7, 1)),  # a quarter's first instant
        (_utc(2026, 2, 10), _utc(2026, 4, 1), _utc(2026, 7, 1)),
        (_utc(2026, 5, 31), _utc(2026, 7, 1), _utc(2026, 10, 1)),
        (_utc(2026, 9, 30, 23, 59), _utc(2026, 10, 1), _utc(2027, 1, 1)),  # closes at year end
        (_utc(2026, 10, 1), _utc(2027, 1, 1), _utc(2027, 4, 1)),
        # 2027-01-01T01:00+02:00 is 2026-12-31T23:00Z: still Q4 in UTC
        (
            datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            _utc(2027, 1, 1),
            _utc(2027, 4, 1),
        ),
    ],
)
def test_quarter_bounds(now: datetime, opens: datetime, closes: datetime) -> None:
    assert quarter_bounds(now) == (opens, closes)


def test_quarter_bounds_requires_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        quarter_bounds(datetime(2026, 1, 1))


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(9998, 9, 1), timezones=st.just(UTC)
    )
)
def test_quarter_bounds_properties(now: datetime) -> None:
    opens, closes = quarter_bounds(now)
    assert now < opens < closes
    assert opens.tzinfo is UTC
    assert quarter_start(opens) == opens
    assert quarter_start(closes) == closes
    assert opens.month in (1, 4, 7, 10)
    assert opens.day == 1
    assert timedelta(days=90) <= closes - opens <= timedelta(days=92)
    assert opens - quarter_start(now) <= timedelta(days=92)
    # the window after this one starts exactly when this one closes (no gap, no overlap)
    assert quarter_bounds(opens)[0] == closes


# --- window status ------------------------------------------------------------------------

OPENS = _utc(2026, 4, 1)
CLOSES = _utc(2026, 7, 1)
TICK = timedelta(microseconds=1)
SCH, OPN, CLS, FIN = (
    WindowStatus.SCHEDULED,
    WindowStatus.OPEN,
    WindowStatus.CLOSED,
    WindowStatus.FINALIZED,
)


@pytest.mark.parametrize(
    ("status", "now", "expected"),
    [
        (SCH, OPENS - TICK, SCH),
        (SCH, OPENS, OPN),  # opens at opens_at
        (SCH, CLOSES - TICK, OPN),
        (SCH, CLOSES, CLS),  # missed the whole window: straight to CLOSED
        (OPN, OPENS, OPN),
        (OPN, CLOSES - TICK, OPN),
        (OPN, CLOSES, CLS),  # closes at closes_at
        (OPN, OPENS - TICK, OPN),  # time never moves a window backwards
        (CLS, CLOSES + timedelta(days=30), CLS),  # finalize is the board's, not time's
        (CLS, OPENS, CLS),
        (FIN, CLOSES + timedelta(days=30), FIN),
        (FIN, OPENS - TICK, FIN),
    ],
)
def test_window_status_at(status: WindowStatus, now: datetime, expected: WindowStatus) -> None:
    assert window_status_at(status, OPENS, CLOSES, now) == expected


_ORDER = {SCH: 0, OPN: 1, CLS: 2, FIN: 3}


@given(
    st.sampled_from(list(WindowStatus)),
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    ),
)
def test_window_status_only_moves_forward_and_is_idempotent(
    status: WindowStatus, now: datetime
) -> None:
    moved = window_status_at(status, OPENS, CLOSES, now)
    assert _ORDER[moved] >= _ORDER[status]
    assert moved != FIN or status == FIN
    assert window_status_at(moved, OPENS, CLOSES, now) == moved


def test_rate_changeable_until_open() -> None:
    assert rate_changeable(SCH, OPENS, OPENS - TICK)
    assert not rate_changeable(SCH, OPENS, OPENS)
    assert not rate_changeable(OPN, OPENS, OPENS - TICK)
    assert not rate_changeable(CLS, OPENS, OPENS - TICK)


def test_validate_window() -> None:
    validate_window(OPENS, CLOSES)
    with pytest.raises(InvalidArgument):
        validate_window(CLOSES, OPENS)
    with pytest.raises(InvalidArgument):
        validate_window(OPENS, OPENS)


# --- windows the board creates, labels, gates ---------------------------------------------

NOW = _utc(2027, 2, 10, 12)


@pytest.mark.parametrize(
    ("opens", "closes", "expected"),
    [
        (NOW + TICK, NOW + timedelta(days=1), (NOW + TICK, SCH)),
        (NOW, NOW + timedelta(days=1), (NOW, OPN)),  # at now: open at once
        (NOW - timedelta(days=9), NOW + TICK, (NOW, OPN)),  # opens from now, not before
    ],
)
def test_opened_window(
    opens: datetime, closes: datetime, expected: tuple[datetime, object]
) -> None:
    assert opened_window(opens, closes, NOW) == expected


@pytest.mark.parametrize(
    ("opens", "closes", "field"),
    [
        (NOW - timedelta(days=2), NOW, "closes_at"),  # closed on arrival
        (NOW + timedelta(days=2), NOW + timedelta(days=1), "closes_at"),
        (NOW - timedelta(days=2), NOW - timedelta(days=1), "closes_at"),
    ],
)
def test_opened_window_refuses(opens: datetime, closes: datetime, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        opened_window(opens, closes, NOW)
    assert caught.value.violations[0].field == field


@pytest.mark.parametrize(
    ("opens", "label"),
    [(_utc(2027, 1, 1), "2027-Q1"), (_utc(2027, 4, 1), "2027-Q2"), (_utc(2026, 10, 1), "2026-Q4")],
)
def test_quarter_label(opens: datetime, label: str) -> None:
    assert quarter_label(opens) == label
    assert quarter_label(quarter_bounds(opens - TICK)[0]) == label


GATES = GateParams(require_kyc=True, min_rep=60, require_device=True)


@pytest.mark.parametrize(
    ("kyc", "rep_milli", "device", "gates", "reason"),
    [
        ("PASSED", 60_000, True, GATES, None),
        ("NONE", 0, False, GATES, Reason.KYC_REQUIRED),  # the first failing gate is named
        ("PASSED", 59_999, False, GATES, Reason.REPUTATION_TOO_LOW),
        ("PASSED", 60_000, False, GATES, Reason.DEVICE_NOT_COMPLIANT),
        ("FAILED", 60_000, False, replace(GATES, require_kyc=False, require_device=False), None),
        ("FAILED", 0, True, replace(GATES, require_kyc=False), Reason.REPUTATION_TOO_LOW),
    ],
)
def test_check_gates(
    kyc: str, rep_milli: int, device: bool, gates: GateParams, reason: Reason | None
) -> None:
    if reason is None:
        check_gates(kyc, rep_milli, device, gates)
        return
    with pytest.raises(FailedPrecondition) as caught:
        check_gates(kyc, rep_milli, device, gates)
    assert caught.value.effective_reason is reason


def test_value_checks() -> None:
    assert check_rate(1) == 1 and check_rate(10_000) == 10_000
    assert check_pool(0) == 0 and check_pool(10_000) == 10_000
    for bad in (0, 10_001):
        with pytest.raises(InvalidArgument):
            check_rate(bad)
    for bad in (-1, 10_001):
        with pytest.raises(InvalidArgument):
            check_pool(bad)


def test_every_way_out_of_pending_releases_the_lock_once() -> None:
    assert set(RELEASE) == set(RequestStatus) - {RequestStatus.PENDING}
    assert RELEASE[RequestStatus.APPROVED] is EntryType.BURN
    assert {RELEASE[s] for s in RELEASE if s is not RequestStatus.APPROVED} == {EntryType.UNLOCK}
