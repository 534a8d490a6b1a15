"""Skills catalogue, declared skills, verification and endorsement rules. Pure.

Verification: by an admin, or by a user whose own *verified* level in the skill is at least
the declared level; never by the skill's owner, admin or not. Endorsements: only of a skill
the endorsee declared, one per (endorser, endorsee, skill), never oneself, at most
`EndorsementParams.daily_limit` given per endorser per UTC day.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from server.core.errors import InvalidArgument, PermissionDenied, Reason, ResourceExhausted
from server.core.validation import text, url

_SLUG = re.compile(r"[a-z][a-z0-9-]{1,39}")
SKILL_EDITABLE = ("name", "category")
MIN_LEVEL, MAX_LEVEL = 1, 5


@dataclass(frozen=True, slots=True)
class SkillView:
    skill_id: uuid.UUID
    slug: str
    name: str
    category: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UserSkillView:
    user_id: uuid.UUID
    skill_slug: str
    skill_name: str
    skill_category: str
    level: int
    evidence_url: str
    verified_by: str
    verified_at: datetime | None
    endorsement_count: int
    created_at: datetime
    updated_at: datetime

    @property
    def verified(self) -> bool:
        return self.verified_at is not None


@dataclass(frozen=True, slots=True)
class EndorsementView:
    endorsement_id: uuid.UUID
    endorser_user_id: uuid.UUID
    endorsee_user_id: uuid.UUID
    skill_slug: str
    created_at: datetime


def slug(value: str, field: str = "slug") -> str:
    if not _SLUG.fullmatch(value):
        raise InvalidArgument.field(
            field, "must be 2..40 characters of [a-z0-9-], starting with a letter"
        )
    return value


def skill_name(value: str) -> str:
    return text(value, "name", min_length=1, max_length=60)


def skill_category(value: str, field: str = "category") -> str:
    return text(value, field, min_length=1, max_length=40)


def validate_skill_changes(changes: Mapping[str, Any]) -> dict[str, str]:
    if not changes:
        raise InvalidArgument.field("update_mask", "must name at least one field")
    values: dict[str, str] = {}
    for name, value in changes.items():
        if name == "name":
            values[name] = skill_name(value)
        elif name == "category":
            values[name] = skill_category(value)
        else:  # pragma: no cover - mask_changes already refused other paths
            raise InvalidArgument.field("update_mask", f"`{name}` cannot be updated")
    return values


def declared_level(level: int, field: str = "level") -> int:
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        raise InvalidArgument.field(field, f"must be {MIN_LEVEL}..{MAX_LEVEL}")
    return level


def evidence_url(value: str) -> str | None:
    return url(value, "evidence_url", max_length=300, schemes=("http", "https")) or None


def check_verifier(
    *, verifier_is_owner: bool, verifier_is_admin: bool, verifier_level: int | None, declared: int
) -> None:
    """PERMISSION_DENIED unless the verifier may verify a skill declared at `declared`.
    `verifier_level` is the verifier's own verified level in the skill (None: none)."""
    if verifier_is_owner:
        raise PermissionDenied("nobody may verify their own skill")
    if verifier_is_admin:
        return
    if verifier_level is None or verifier_level < declared:
        raise PermissionDenied(
            "only an admin, or a user verified in this skill at the declared level or above,"
            " may verify it"
        )


def next_utc_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(), UTC)


def check_daily_limit(given_today: int, limit: int, now: datetime) -> None:
    """RESOURCE_EXHAUSTED (DAILY_LIMIT_REACHED, RetryInfo to the next UTC midnight) when the
    endorser already gave `limit` endorsements this UTC day."""
    if given_today >= limit:
        wait = (next_utc_midnight(now) - now).total_seconds()
        raise ResourceExhausted(
            f"at most {limit} endorsements may be given per UTC day",
            reason=Reason.DAILY_LIMIT_REACHED,
            metadata={"limit": str(limit), "retry_at": next_utc_midnight(now).isoformat()},
            retry_after_s=wait,
        )


def endorsement_day(now: datetime) -> date:
    return now.astimezone(UTC).date()
