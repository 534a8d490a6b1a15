"""Conversion rules (docs/product-rules.md "Conversion to equity"): pure functions only.

Equity is integer basis points (bp); a window's `equity_rate_bps` is bp of venture equity per
10,000 BUZ. Granting floors (the user never gets more equity than paid for) and locking
ceils (only the BUZ needed for the granted bp is locked), both with integer arithmetic.

Window time model: a window is OPEN on the half-open interval [opens_at, closes_at). The
quarter window therefore closes at the first instant of the following quarter, which is the
instant its "last instant" ends; consecutive quarterly windows touch without a gap or an
overlap and no sub-second "23:59:59.999999" value is needed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

from server.core.errors import FailedPrecondition, InvalidArgument, Reason
from server.core.pagination import Page
from server.core.params import GateParams
from server.core.validation import text
from server.wallet.domain import evaluate_gates
from server.wallet.entries import EntryType

BPS_PER_UNIT = 10_000  # rate is bp per 10,000 BUZ
MAX_RATE_BPS = 10_000
MAX_POOL_BPS = 10_000
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2000
MAX_LABEL_LENGTH = 100
MAX_NOTE_LENGTH = 2000
MAX_REASON_LENGTH = 500
# Idempotency scopes are per RPC (server/core/idempotency.py scope_for).
RPC = "smartstart.conversion.v1.ConversionService"
# created_by of the windows the conversion_windows job schedules (one per quarter).
JOB_CREATOR = "job:conversion_windows"

T = TypeVar("T")


def _check_rate(rate_bps: int) -> None:
    """1..10,000 bp per 10,000 BUZ (at most 1 bp per BUZ).

    The upper bound is what makes locking exact: with rate ≤ 10,000, locking
    ceil(bp × 10,000 / rate) BUZ grants exactly bp again (see buz_to_lock).
    """
    if not 1 <= rate_bps <= MAX_RATE_BPS:
        raise ValueError(f"equity rate must be in [1, {MAX_RATE_BPS}] bp, got {rate_bps}")


def granted_bp(buz: int, rate_bps: int) -> int:
    """Granted bp = floor(N × rate / 10,000)."""
    _check_rate(rate_bps)
    if buz < 0:
        raise ValueError("buz must be >= 0")
    return (buz * rate_bps) // BPS_PER_UNIT


def buz_to_lock(bp: int, rate_bps: int) -> int:
    """Only the BUZ needed for the granted bp, ceil(bp × 10,000 / rate), is locked.

    Properties (rate in 1..10,000): granted_bp(buz_to_lock(bp)) == bp, and for any N,
    buz_to_lock(granted_bp(N)) ≤ N, so the lock never exceeds what the user asked for.
    """
    _check_rate(rate_bps)
    if bp < 0:
        raise ValueError("bp must be >= 0")
    return -((-bp * BPS_PER_UNIT) // rate_bps)


def min_buz_for_one_bp(rate_bps: int) -> int:
    """The smallest request that grants anything: ceil(10,000 / rate)."""
    return buz_to_lock(1, rate_bps)


def check_buz_amount(requested_buz: int) -> int:
    """N, the BUZ a request asks to convert, must be positive (else a malformed field)."""
    if requested_buz <= 0:
        raise InvalidArgument.field("buz_amount", "must be positive")
    return requested_buz


@dataclass(frozen=True, slots=True)
class ConversionPlan:
    granted_bp: int
    buz_locked: int


def plan_conversion(requested_buz: int, rate_bps: int) -> ConversionPlan:
    """What a request for N BUZ grants and locks; 0 bp is an error stating the minimum.

    N ≤ 0 is a malformed `buz_amount` (INVALID_ARGUMENT). 0 bp is INVALID_ARGUMENT with
    reason BELOW_MINIMUM, ErrorInfo metadata `min_buz_amount` = ceil(10,000 / rate) and a
    BadRequest field violation on `buz_amount` (the contract's names).
    """
    check_buz_amount(requested_buz)
    bp = granted_bp(requested_buz, rate_bps)
    if bp == 0:
        minimum = min_buz_for_one_bp(rate_bps)
        error = InvalidArgument.field(
            "buz_amount",
            f"{requested_buz} BUZ grants 0 bp at {rate_bps} bp per 10,000 BUZ; "
            f"the minimum is {minimum} BUZ",
            reason=Reason.BELOW_MINIMUM,
        )
        error.metadata["min_buz_amount"] = str(minimum)
        raise error
    return ConversionPlan(granted_bp=bp, buz_locked=buz_to_lock(bp, rate_bps))


# --- windows ------------------------------------------------------------------------------


class WindowStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    FINALIZED = "FINALIZED"


class RequestStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def quarter_start(now: datetime) -> datetime:
    """First instant (UTC) of the calendar quarter containing `now`."""
    now = _utc(now, "now")
    return datetime(now.year, 3 * ((now.month - 1) // 3) + 1, 1, tzinfo=UTC)


def next_quarter_start(now: datetime) -> datetime:
    """First instant (UTC) of the calendar quarter after the one containing `now`."""
    start = quarter_start(now)
    if start.month == 10:
        return datetime(start.year + 1, 1, 1, tzinfo=UTC)
    return datetime(start.year, start.month + 3, 1, tzinfo=UTC)


def quarter_bounds(now: datetime) -> tuple[datetime, datetime]:
    """(opens_at, closes_at) of the window for the next calendar quarter, half-open.

    The job keeps "a SCHEDULED window for the next calendar quarter (opens at its first instant
    UTC, closes at its last)". opens_at is the first instant of the quarter after the one
    containing `now`; closes_at is the first instant of the quarter after that, i.e. the
    end of the quarter's last instant (window OPEN on [opens_at, closes_at)). At exactly a
    quarter's first instant, `now` is in that quarter, so the result is the one after.
    2026-11-15 → (2027-01-01T00:00Z, 2027-04-01T00:00Z).
    """
    opens_at = next_quarter_start(now)
    return opens_at, next_quarter_start(opens_at)


def validate_window(opens_at: datetime, closes_at: datetime) -> None:
    """A window must open before it closes (both timezone-aware)."""
    if _utc(closes_at, "closes_at") <= _utc(opens_at, "opens_at"):
        raise InvalidArgument.field("closes_at", "must be after opens_at")


def window_status_at(
    status: WindowStatus, opens_at: datetime, closes_at: datetime, now: datetime
) -> WindowStatus:
    """The status time moves a window to: SCHEDULED → OPEN at opens_at, OPEN → CLOSED at
    closes_at ("moved by time (the 15-minute job) and by the board (finalize)").

    Both boundaries are inclusive of the transition instant (OPEN on [opens_at, closes_at)).
    A SCHEDULED window whose whole interval has passed (the job did not run) goes straight
    to CLOSED. Time never moves a window backwards, and CLOSED → FINALIZED is the board's
    decision, never time's, so CLOSED and FINALIZED are returned unchanged.
    """
    now = _utc(now, "now")
    if status in (WindowStatus.CLOSED, WindowStatus.FINALIZED):
        return status
    if now >= _utc(closes_at, "closes_at"):
        return WindowStatus.CLOSED
    if now >= _utc(opens_at, "opens_at"):
        return WindowStatus.OPEN
    return status


def rate_changeable(status: WindowStatus, opens_at: datetime, now: datetime) -> bool:
    """The board may change a window's rate until it opens: SCHEDULED and before
    opens_at (a SCHEDULED window the job has not opened yet is already open by time)."""
    return status == WindowStatus.SCHEDULED and _utc(now, "now") < _utc(opens_at, "opens_at")


def opened_window(
    opens_at: datetime, closes_at: datetime, now: datetime
) -> tuple[datetime, WindowStatus]:
    """(opens_at, status) of a window the board creates at `now`.

    A future opens_at: SCHEDULED, as asked. An opens_at at or before now: the window opens at
    once, and its opens_at becomes now (nobody could request before). closes_at must be
    after opens_at and in the future: a window closed on arrival is a caller's mistake.
    """
    validate_window(opens_at, closes_at)
    if _utc(closes_at, "closes_at") <= _utc(now, "now"):
        raise InvalidArgument.field("closes_at", "must be in the future")
    opens_at = max(_utc(opens_at, "opens_at"), _utc(now, "now"))
    return opens_at, window_status_at(WindowStatus.SCHEDULED, opens_at, closes_at, now)


def quarter_label(opens_at: datetime) -> str:
    """The label of the job's window for the quarter starting at `opens_at`: `2027-Q1`."""
    start = quarter_start(opens_at)
    return f"{start.year}-Q{(start.month - 1) // 3 + 1}"


def window_not_open(status: WindowStatus) -> FailedPrecondition:
    return FailedPrecondition(
        f"the window is {status}, not OPEN",
        reason=Reason.WINDOW_NOT_OPEN,
        metadata={"status": str(status)},
    )


def invalid_state(what: str, status: str) -> FailedPrecondition:
    """A transition asked of a window or request in a status that does not allow it."""
    return FailedPrecondition(
        f"the {what} is {status}", reason=Reason.INVALID_STATE, metadata={"status": status}
    )


# --- values a caller supplies ---------------------------------------------------------------


def check_rate(rate_bps: int, field: str = "equity_rate_bps") -> int:
    if not 1 <= rate_bps <= MAX_RATE_BPS:
        raise InvalidArgument.field(field, f"must be in 1..{MAX_RATE_BPS}")
    return rate_bps


def check_pool(pool_bps: int) -> int:
    if not 0 <= pool_bps <= MAX_POOL_BPS:
        raise InvalidArgument.field("conversion_pool_bps", f"must be in 0..{MAX_POOL_BPS}")
    return pool_bps


def venture_name(value: str) -> str:
    return text(value, "name", min_length=1, max_length=MAX_NAME_LENGTH)


def venture_description(value: str) -> str:
    return text(value, "description", max_length=MAX_DESCRIPTION_LENGTH)


def window_label(value: str) -> str:
    return text(value, "label", min_length=1, max_length=MAX_LABEL_LENGTH)


# --- requests -------------------------------------------------------------------------------


def check_gates(kyc_status: str, rep_milli: int, device_compliant: bool, gates: GateParams) -> None:
    """A conversion needs the gates BUZ issuance needs (KYC PASSED, reputation, device
    compliance, as switched by the settings): the first failing one, in that order, is
    FAILED_PRECONDITION with its reason."""
    failing = evaluate_gates(kyc_status, rep_milli, device_compliant, gates)
    if failing:
        raise FailedPrecondition(
            f"conversion gate not met: {failing[0]}", reason=Reason(failing[0].value)
        )


# What leaving PENDING does to the locked BUZ: an approval burns it, every other end gives
# it back.
RELEASE: dict[RequestStatus, EntryType] = {
    RequestStatus.APPROVED: EntryType.BURN,
    RequestStatus.REJECTED: EntryType.UNLOCK,
    RequestStatus.CANCELLED: EntryType.UNLOCK,
    RequestStatus.EXPIRED: EntryType.UNLOCK,
}


# --- views ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VentureView:
    id: uuid.UUID
    name: str
    description: str
    pool_bps: int
    granted_bps: int
    pending_bps: int  # reserved by PENDING requests
    created_at: datetime
    updated_at: datetime

    @property
    def available_bps(self) -> int:
        return self.pool_bps - self.granted_bps - self.pending_bps


@dataclass(frozen=True, slots=True)
class WindowView:
    id: uuid.UUID
    label: str
    opens_at: datetime
    closes_at: datetime
    equity_rate_bps: int
    status: WindowStatus
    created_by: str
    created_at: datetime
    updated_at: datetime
    finalized_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConversionView:
    id: uuid.UUID
    user_id: uuid.UUID
    window_id: uuid.UUID
    venture_id: uuid.UUID
    status: RequestStatus
    buz_requested: int
    equity_rate_bps: int
    granted_bps: int
    buz_locked: int
    decided_by: str | None
    decision_note: str | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class HolderView:
    """One user's holding in a venture's cap table."""

    user_id: uuid.UUID
    granted_bps: int
    grant_count: int
    buz_burned: int
    first_granted_at: datetime
    last_granted_at: datetime


@dataclass(frozen=True, slots=True)
class CapTableView:
    venture_id: uuid.UUID
    pool_bps: int
    granted_bps: int
    holder_count: int
    holders: Page[HolderView]


@dataclass(frozen=True, slots=True)
class Finalized:
    window: WindowView
    expired_count: int
    buz_unlocked: int


@dataclass(frozen=True, slots=True)
class DefaultRateView:
    equity_rate_bps: int
    updated_at: datetime | None  # None while the seeded default holds
    updated_by: str | None


@dataclass(frozen=True, slots=True)
class DefaultRateChange:
    default_rate: DefaultRateView
    windows: list[WindowView]  # the job's unopened windows moved to the new rate
