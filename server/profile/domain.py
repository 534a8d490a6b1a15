"""Account and profile rules: KYC, device posture, registration and profile edits. Pure.

Gamification (levels, reputation, XP) is server/profile/gamification.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from server.core.errors import InvalidArgument
from server.core.validation import text, url

# --- statuses and kinds ----------------------------------------------------------------------


class KycStatus(StrEnum):
    """A user's KYC status, set by `system` or `admin`."""

    NONE = "NONE"
    PENDING = "PENDING"
    PASSED = "PASSED"
    FAILED = "FAILED"


class BadgeRuleType(StrEnum):
    THRESHOLD = "THRESHOLD"
    COMPOSITE = "COMPOSITE"
    MANUAL = "MANUAL"


class AwardStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"


class ActivityKind(StrEnum):
    REVIEW_SUBMITTED = "REVIEW_SUBMITTED"
    BUG_REPORT = "BUG_REPORT"
    POLICY_VIOLATION = "POLICY_VIOLATION"


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """One device posture report: compliant or not, at a (timezone-aware) time."""

    compliant: bool
    reported_at: datetime


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


def is_device_compliant(latest: DeviceReport | None, now: datetime, max_age: timedelta) -> bool:
    """Device-compliant "when the latest report is compliant and at most 72 h old" (the age
    is DeviceParams.max_report_age).

    "At most" is inclusive: a report exactly max_age old still counts. No report → not
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
    undo it: the rule asks for "a compliant report"). The run must include `today`: no
    compliant report today → 0. Reports after `today` are ignored.
    """
    compliant_days = {day for day, compliant in reports if compliant and day <= today}
    count = 0
    day = today
    while day in compliant_days:
        count += 1
        day -= timedelta(days=1)
    return count


# --- accounts and profiles ----------------------------------------------------------------


class Theme(StrEnum):
    AUTO = "AUTO"
    LIGHT = "LIGHT"
    DARK = "DARK"


@dataclass(frozen=True, slots=True)
class Registration:
    external_id: str
    email: str
    display_name: str


def validate_registration(external_id: str, email: str, display_name: str) -> Registration:
    """The fields of a new user, trimmed and checked (INVALID_ARGUMENT naming the first bad one)."""
    external_id = text(external_id, "external_id", min_length=1, max_length=128)
    email = email.strip()
    if not 3 <= len(email) <= 254 or "@" not in email[1:-1]:
        raise InvalidArgument.field("email", "must be an e-mail address of at most 254 chars")
    display_name = text(display_name, "display_name", min_length=1, max_length=80)
    return Registration(external_id=external_id, email=email, display_name=display_name)


MAX_KYC_NOTE_LENGTH = 500
# What UpdateMyProfile may change, and the limits of the free-text fields.
EDITABLE = ("nickname", "bio", "location", "website_url", "avatar_url", "theme", "is_public")
_TEXT_LIMITS = {"nickname": 40, "bio": 280, "location": 80}
_THEMES = frozenset(Theme)


def validate_profile_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The column values for an update, or INVALID_ARGUMENT naming the first bad field.
    An empty text or URL clears the field (NULL)."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name in _TEXT_LIMITS:
            limit = _TEXT_LIMITS[name]
            values[name] = text(value, name, max_length=limit, multiline=name == "bio") or None
        elif name == "website_url":
            values[name] = url(value, name, max_length=200, schemes=("http", "https")) or None
        elif name == "avatar_url":
            values[name] = url(value, name, max_length=300, schemes=("https",)) or None
        elif name == "theme":
            if value not in _THEMES:
                raise InvalidArgument.field(name, "must be AUTO, LIGHT or DARK")
            values[name] = value
        elif name == "is_public":
            values[name] = bool(value)
        else:
            raise InvalidArgument.field("update_mask", f"`{name}` is not an editable field")
    return values


# --- what the use cases answer ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserView:
    user_id: uuid.UUID
    external_id: str
    email: str
    display_name: str
    joined_at: datetime
    kyc_status: str
    kyc_updated_at: datetime | None
    wallet_id: uuid.UUID
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PostureView:
    user_id: uuid.UUID
    device_compliant: bool
    device_compliant_days: int
    last_report_compliant: bool
    last_reported_at: datetime | None
    compliant_until: datetime | None


@dataclass(frozen=True, slots=True)
class ProfileView:
    user_id: uuid.UUID
    display_name: str
    nickname: str
    bio: str
    location: str
    website_url: str
    avatar_url: str
    theme: str
    is_public: bool
    level: int
    xp: int
    next_level_xp: int
    rep: int
    joined_at: datetime
    created_at: datetime
    updated_at: datetime


def posture(
    user_id: uuid.UUID,
    latest: DeviceReport | None,
    compliant_days: Iterable[tuple[date, bool]],
    now: datetime,
    max_age: timedelta,
) -> PostureView:
    """A user's device compliance and streak as of `now`, from their latest report and their
    (UTC day, any compliant report that day) pairs."""
    compliant = is_device_compliant(latest, now, max_age)
    return PostureView(
        user_id=user_id,
        device_compliant=compliant,
        device_compliant_days=device_compliant_days(compliant_days, utc_day(now)),
        last_report_compliant=bool(latest and latest.compliant),
        last_reported_at=latest.reported_at if latest else None,
        compliant_until=(latest.reported_at + max_age) if compliant and latest else None,
    )
