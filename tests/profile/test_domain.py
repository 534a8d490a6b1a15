"""Account rules: device posture (compliance, streaks) and UTC days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from server.core.params import DEFAULTS
from server.profile.domain import DeviceReport, device_compliant_days, is_device_compliant, utc_day

MAX_AGE = DEFAULTS.device.max_report_age

# --- device posture -----------------------------------------------------------------------

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("report", "compliant"),
    [
        (None, False),
        (DeviceReport(True, NOW), True),
        (DeviceReport(False, NOW), False),
        (DeviceReport(True, NOW - timedelta(hours=72)), True),  # "at most 72 h": inclusive
        (DeviceReport(True, NOW - timedelta(hours=72, microseconds=1)), False),
        (DeviceReport(True, NOW + timedelta(minutes=5)), True),  # reporter clock ahead
        (
            DeviceReport(True, datetime(2026, 3, 10, 13, 0, tzinfo=timezone(timedelta(hours=1)))),
            True,
        ),
    ],
)
def test_is_device_compliant(report: DeviceReport | None, compliant: bool) -> None:
    assert is_device_compliant(report, NOW, MAX_AGE) is compliant


def test_is_device_compliant_requires_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_device_compliant(DeviceReport(True, datetime(2026, 3, 10)), NOW, MAX_AGE)


TODAY = date(2026, 3, 10)


def _d(n: int) -> date:
    return TODAY - timedelta(days=n)


@pytest.mark.parametrize(
    ("reports", "days"),
    [
        ([], 0),
        ([(_d(0), True)], 1),
        ([(_d(0), True), (_d(1), True), (_d(2), True)], 3),
        ([(_d(2), True), (_d(0), True), (_d(1), True), (_d(1), True)], 3),  # any order, dups
        ([(_d(0), True), (_d(2), True)], 1),  # gap yesterday
        ([(_d(1), True), (_d(2), True)], 0),  # must end today
        ([(_d(0), False), (_d(0), True), (_d(1), True)], 2),  # one compliant report suffices
        ([(_d(0), True), (_d(1), False)], 1),
        ([(_d(-1), True), (_d(0), True)], 1),  # future days ignored
    ],
)
def test_device_compliant_days(reports: list[tuple[date, bool]], days: int) -> None:
    assert device_compliant_days(reports, TODAY) == days


def test_device_compliant_days_long_streak() -> None:
    assert device_compliant_days([(_d(n), True) for n in range(120)], TODAY) == 120


def test_utc_day() -> None:
    late = datetime(2026, 3, 10, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert utc_day(late) == date(2026, 3, 11)
