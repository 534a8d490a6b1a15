"""Activity events (review submitted, bug report, policy violation): the checks of a call,
what each event adds to the badge metrics, and the payload hash that makes the caller's
event id an idempotency key. Pure.

An event is stored with its normalised payload, the hash of that payload and the metric
counters it added (`metric_deltas`), so the daily job's metric repair recomputes
user_metrics by summing what the events stored, never by restating these rules in SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from server.core.chain import payload_hash
from server.core.errors import InvalidArgument
from server.core.validation import not_future, parse_uuid, request_key, required_time, text
from server.profile.domain import ActivityKind

MAX_CALLER_ID_LENGTH = 128  # review_id, task_id, bug_id: the caller's informational ids
MAX_POLICY_CODE_LENGTH = 64
MAX_NOTE_LENGTH = 500


class BugSeverity(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


_SEVERITIES = frozenset(BugSeverity)


@dataclass(frozen=True, slots=True)
class ReviewSubmitted:
    reviewer_user_id: str
    subject_user_id: str
    review_id: str
    task_id: str
    helpful: bool
    agreed_with_consensus: bool
    positive: bool


@dataclass(frozen=True, slots=True)
class BugReport:
    user_id: str
    severity: str
    bug_id: str


@dataclass(frozen=True, slots=True)
class PolicyViolation:
    user_id: str
    policy_code: str
    note: str


@dataclass(frozen=True, slots=True)
class ValidEvent:
    """One checked event. `user_id` is the user whose metrics it moves (the reviewer, the
    reporter, the violator); `subject_id` the reviewed user who may earn XP."""

    kind: ActivityKind
    event_id: str
    occurred_at: datetime
    user_id: uuid.UUID
    subject_id: uuid.UUID | None
    payload: dict[str, Any]
    payload_hash: str
    metric_deltas: dict[str, int]

    @property
    def earns_review_xp(self) -> bool:
        return self.subject_id is not None and bool(self.payload.get("positive"))


@dataclass(frozen=True, slots=True)
class ActivityView:
    event_id: str
    kind: str
    occurred_at: datetime
    recorded_at: datetime
    payload: Mapping[str, Any]


def _caller_text(value: str, field: str, max_length: int, min_length: int = 0) -> str:
    return text(value, field, min_length=min_length, max_length=max_length)


def _event(
    kind: ActivityKind,
    event_id: str,
    occurred_at: datetime | None,
    now: datetime,
    user_id: uuid.UUID,
    payload: dict[str, Any],
    subject_id: uuid.UUID | None = None,
) -> ValidEvent:
    key = request_key(event_id, "event_id")
    when = not_future(required_time(occurred_at, "occurred_at"), "occurred_at", now)
    return ValidEvent(
        kind=kind,
        event_id=key,
        occurred_at=when,
        user_id=user_id,
        subject_id=subject_id,
        payload=payload,
        payload_hash=payload_hash({"kind": kind, "occurred_at": when, **payload}),
        metric_deltas=metric_deltas(kind, payload),
    )


def validate_review(
    event_id: str, occurred_at: datetime | None, review: ReviewSubmitted, now: datetime
) -> ValidEvent:
    """INVALID_ARGUMENT naming the first bad field; the reviewer reviewing their own work is
    one (it would credit themselves XP)."""
    reviewer = parse_uuid(review.reviewer_user_id, "review.reviewer_user_id")
    subject = (
        parse_uuid(review.subject_user_id, "review.subject_user_id")
        if review.subject_user_id
        else None
    )
    if subject == reviewer:
        raise InvalidArgument.field(
            "review.subject_user_id", "must not be the reviewer (no self-review)"
        )
    payload = {
        "reviewer_user_id": str(reviewer),
        "subject_user_id": str(subject) if subject else "",
        "review_id": _caller_text(review.review_id, "review.review_id", MAX_CALLER_ID_LENGTH),
        "task_id": _caller_text(review.task_id, "review.task_id", MAX_CALLER_ID_LENGTH),
        "helpful": review.helpful,
        "agreed_with_consensus": review.agreed_with_consensus,
        "positive": review.positive,
    }
    return _event(
        ActivityKind.REVIEW_SUBMITTED, event_id, occurred_at, now, reviewer, payload, subject
    )


def validate_bug_report(
    event_id: str, occurred_at: datetime | None, report: BugReport, now: datetime
) -> ValidEvent:
    user = parse_uuid(report.user_id, "report.user_id")
    if report.severity not in _SEVERITIES:
        raise InvalidArgument.field("report.severity", "must be LOW, MEDIUM, HIGH or CRITICAL")
    payload = {
        "user_id": str(user),
        "severity": report.severity,
        "bug_id": _caller_text(report.bug_id, "report.bug_id", MAX_CALLER_ID_LENGTH),
    }
    return _event(ActivityKind.BUG_REPORT, event_id, occurred_at, now, user, payload)


def validate_policy_violation(
    event_id: str, occurred_at: datetime | None, violation: PolicyViolation, now: datetime
) -> ValidEvent:
    user = parse_uuid(violation.user_id, "violation.user_id")
    payload = {
        "user_id": str(user),
        "policy_code": _caller_text(
            violation.policy_code, "violation.policy_code", MAX_POLICY_CODE_LENGTH, 1
        ),
        "note": _caller_text(violation.note, "violation.note", MAX_NOTE_LENGTH),
    }
    return _event(ActivityKind.POLICY_VIOLATION, event_id, occurred_at, now, user, payload)


def metric_deltas(kind: str, payload: Mapping[str, Any]) -> dict[str, int]:
    """The user_metrics counters one event adds to its user (the reviewer, reporter or
    violator): reviewAgreementPct = reviews_agreed / reviews_total × 100; a bug counts for
    criticalBugReports only when CRITICAL."""
    if kind == ActivityKind.REVIEW_SUBMITTED:
        return {
            "reviews_total": 1,
            "reviews_agreed": int(bool(payload["agreed_with_consensus"])),
            "helpful_reviews": int(bool(payload["helpful"])),
        }
    if kind == ActivityKind.BUG_REPORT:
        return {"critical_bug_reports": int(payload["severity"] == BugSeverity.CRITICAL)}
    if kind == ActivityKind.POLICY_VIOLATION:
        return {"policy_violations": 1}
    raise ValueError(f"unknown activity kind {kind!r}")
