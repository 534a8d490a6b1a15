"""Activity events through the real server: effects, idempotency per kind, every field
rule, unknown users, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import grpc.aio
import pytest
from smartstart.profile.v1 import profile_service_pb2 as pb
from sqlalchemy import text

from server.db.session import Database
from tests.fixtures_server import error_info
from tests.profile.support import Api, MovableClock, clock_at, fails, sql_rows, sql_value, ts

DAY = "2026-03-10"


@pytest.fixture
def clock() -> MovableClock:
    return clock_at(DAY)


async def metrics(db: Database, user: str) -> dict[str, int]:
    rows = await sql_rows(db, "SELECT * FROM user_metrics WHERE user_id = :u", u=user)
    if not rows:
        return {}
    return {k: v for k, v in rows[0]._mapping.items() if k not in ("user_id", "updated_at")}


async def test_a_positive_review_credits_the_subject_and_counts_for_the_reviewer(
    api: Api, db: Database, clock: MovableClock
) -> None:
    reviewer, subject = await api.register("Rev"), await api.register("Sub")
    event = await api.review(reviewer, subject, event_id="r-1", helpful=True, agreed=True)
    assert event.event_id == "r-1"
    assert event.WhichOneof("kind") == "review_submitted"
    assert event.review_submitted.reviewer_user_id == reviewer
    assert event.review_submitted.subject_user_id == subject
    assert event.review_submitted.positive and event.review_submitted.helpful
    assert event.occurred_at.ToDatetime().date().isoformat() == DAY

    # reviewer rep 0 → trust weight 0.5 → round_half_up(5 × 0.5) = 3 XP
    assert (await api.profile(subject)).xp == 3
    assert (await api.profile(reviewer)).xp == 0
    assert (await metrics(db, reviewer))["helpful_reviews"] == 1
    assert (await metrics(db, reviewer))["reviews_total"] == 1
    assert (await metrics(db, reviewer))["reviews_agreed"] == 1
    stats = await sql_rows(
        db, "SELECT day, xp_gain FROM daily_user_stats WHERE user_id = :u", u=subject
    )
    assert [(str(r.day), r.xp_gain) for r in stats] == [(DAY, 3)]
    # the first gain opens the subject's reputation: the day before the gain's day
    assert str(
        await sql_value(db, "SELECT rep_through FROM profiles WHERE user_id = :u", u=subject)
    ) == str(clock().date() - timedelta(days=1))
    audit = await sql_rows(
        db, "SELECT details FROM audit_events WHERE action = 'activity.review_submitted'"
    )
    assert [a.details["subject_xp"] for a in audit] == [3]


async def test_reviews_that_earn_no_xp(api: Api, db: Database) -> None:
    reviewer, subject = await api.register(), await api.register()
    await api.review(reviewer, subject, positive=False, agreed=True)
    await api.review(reviewer, "", positive=True)  # not a user's work
    assert (await api.profile(subject)).xp == 0
    assert await sql_value(db, "SELECT count(*) FROM daily_user_stats") == 0
    m = await metrics(db, reviewer)
    assert (m["reviews_total"], m["reviews_agreed"], m["helpful_reviews"]) == (2, 1, 0)


async def test_review_xp_follows_the_reviewers_trust_weight(api: Api, db: Database) -> None:
    reviewer, subject = await api.register(), await api.register()
    async with db.transaction() as session:  # no API sets a reputation directly
        await session.execute(
            text("UPDATE profiles SET rep_milli = 50000 WHERE user_id = :u"), {"u": reviewer}
        )
    await api.review(reviewer, subject)  # weight 0.707 → 3.535 → 4 XP
    assert (await api.profile(subject)).xp == 4


async def test_bug_reports_and_violations_feed_their_metrics(api: Api, db: Database) -> None:
    user = await api.register()
    critical = await api.bug(user)
    assert critical.bug_report.severity == pb.BUG_SEVERITY_CRITICAL
    await api.bug(user, pb.BUG_SEVERITY_HIGH)
    violation = await api.violation(user, "plagiarism", "copied a chapter")
    assert violation.policy_violation.note == "copied a chapter"
    m = await metrics(db, user)
    assert (m["critical_bug_reports"], m["policy_violations"]) == (1, 1)
    assert (await api.profile(user)).xp == 0
    audit = await sql_rows(
        db, "SELECT details FROM audit_events WHERE action = 'activity.policy_violated'"
    )
    assert audit[0].details["note"] == "copied a chapter"
    stored = await sql_rows(db, "SELECT kind, metrics FROM activity_events ORDER BY kind")
    assert [(r.kind, r.metrics) for r in stored] == [
        ("BUG_REPORT", {"critical_bug_reports": 1}),
        ("BUG_REPORT", {"critical_bug_reports": 0}),
        ("POLICY_VIOLATION", {"policy_violations": 1}),
    ]


async def test_an_event_id_is_idempotent_within_its_kind(api: Api, db: Database) -> None:
    reviewer, subject = await api.register(), await api.register()
    first = await api.review(reviewer, subject, event_id="same")
    again = await api.review(reviewer, subject, event_id="same", occurred_at=None)
    assert again == first
    assert (await api.profile(subject)).xp == 3  # credited once
    err = await fails(
        api.review(reviewer, subject, event_id="same", helpful=True),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )
    info = error_info(err)
    assert info is not None and info.metadata["event_id"] == "same"
    # another kind may use the same id
    bug = await api.bug(reviewer, event_id="same")
    assert bug.event_id == "same"
    assert await sql_value(db, "SELECT count(*) FROM activity_events") == 2
    assert (await metrics(db, reviewer))["reviews_total"] == 1


async def test_concurrent_duplicates_record_one_event(api: Api, db: Database) -> None:
    reviewer, subject = await api.register(), await api.register()
    got = await asyncio.gather(
        *(api.review(reviewer, subject, event_id="race", helpful=True) for _ in range(12))
    )
    assert len({e.SerializeToString() for e in got}) == 1
    assert (await api.profile(subject)).xp == 3
    assert (await metrics(db, reviewer))["helpful_reviews"] == 1
    assert (
        await sql_value(db, "SELECT count(*) FROM audit_events WHERE action LIKE 'activity.%'") == 1
    )


async def test_many_reviews_of_one_subject_in_parallel_lose_no_xp(api: Api, db: Database) -> None:
    subject = await api.register()
    reviewers = [await api.register() for _ in range(4)]
    await asyncio.gather(*(api.review(r, subject) for r in reviewers for _ in range(5)))
    assert (await api.profile(subject)).xp == 20 * 3
    assert (
        await sql_value(db, "SELECT xp_gain FROM daily_user_stats WHERE user_id = :u", u=subject)
        == 60
    )
    totals = await sql_rows(
        db, "SELECT reviews_total FROM user_metrics WHERE user_id <> :u", u=subject
    )
    assert sorted(r.reviews_total for r in totals) == [5, 5, 5, 5]


async def test_unknown_users_are_not_found_and_nothing_is_written(api: Api, db: Database) -> None:
    user = await api.register()
    ghost = str(uuid.uuid4())
    for call in (
        api.review(ghost, user),
        api.review(user, ghost),
        api.bug(ghost),
        api.violation(ghost),
    ):
        err = await fails(call, grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
        info = error_info(err)
        assert info is not None and info.metadata["user_id"] == ghost
    assert await sql_value(db, "SELECT count(*) FROM activity_events") == 0
    assert await sql_value(db, "SELECT count(*) FROM user_metrics") == 0
    assert (
        await sql_value(db, "SELECT count(*) FROM audit_events WHERE action LIKE 'activity.%'") == 0
    )


async def test_field_rules(api: Api, clock: MovableClock, db: Database) -> None:
    user, other = await api.register(), await api.register()
    p = api.profiles
    now = ts(clock())

    def review(**overrides: object) -> pb.RecordReviewSubmittedRequest:
        base = pb.RecordReviewSubmittedRequest(
            event_id="e",
            occurred_at=now,
            review=pb.ReviewSubmitted(reviewer_user_id=user, subject_user_id=other),
        )
        for key, value in overrides.items():
            if value is None:
                base.ClearField(key)  # type: ignore[arg-type]
            elif key in ("review", "occurred_at"):
                getattr(base, key).CopyFrom(value)
            else:
                setattr(base, key, value)
        return base

    bad_reviews = {
        "event_id": review(event_id=""),
        "occurred_at": review(occurred_at=None),
        "review.reviewer_user_id": review(review=pb.ReviewSubmitted(reviewer_user_id="nope")),
        "review.subject_user_id": review(
            review=pb.ReviewSubmitted(reviewer_user_id=user, subject_user_id=user)
        ),
        "review.review_id": review(
            review=pb.ReviewSubmitted(reviewer_user_id=user, review_id="x" * 129)
        ),
        "review.task_id": review(
            review=pb.ReviewSubmitted(reviewer_user_id=user, task_id="x" * 129)
        ),
    }
    for field, request in bad_reviews.items():
        await fails(
            p.RecordReviewSubmitted(request, metadata=api.system),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            field,
        )
    await fails(
        p.RecordReviewSubmitted(review(event_id="x" * 129), metadata=api.system),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="event_id",
    )
    await fails(
        p.RecordReviewSubmitted(
            review(occurred_at=ts(clock() + timedelta(minutes=6))), metadata=api.system
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="occurred_at",
    )
    # exactly 128 characters and 5 minutes ahead are fine
    await p.RecordReviewSubmitted(
        review(event_id="x" * 128, occurred_at=ts(clock() + timedelta(minutes=5))),
        metadata=api.system,
    )

    def bug(**report: object) -> pb.RecordBugReportRequest:
        fields: dict[str, object] = {"user_id": user, "severity": pb.BUG_SEVERITY_LOW, **report}
        return pb.RecordBugReportRequest(
            event_id="b",
            occurred_at=now,
            report=pb.BugReport(**fields),  # type: ignore[arg-type]
        )

    for field, request in {
        "report.severity": bug(severity=pb.BUG_SEVERITY_UNSPECIFIED),
        "report.user_id": bug(user_id=""),
        "report.bug_id": bug(bug_id="b" * 129),
    }.items():
        await fails(
            p.RecordBugReport(request, metadata=api.system),
            grpc.StatusCode.INVALID_ARGUMENT,
            field=field,
        )

    def violation(**fields: object) -> pb.RecordPolicyViolationRequest:
        values: dict[str, object] = {"user_id": user, "policy_code": "spam", **fields}
        return pb.RecordPolicyViolationRequest(
            event_id="v",
            occurred_at=now,
            violation=pb.PolicyViolation(**values),  # type: ignore[arg-type]
        )

    for field, request in {
        "violation.policy_code": violation(policy_code=""),
        "violation.note": violation(note="n" * 501),
    }.items():
        await fails(
            p.RecordPolicyViolation(request, metadata=api.system),
            grpc.StatusCode.INVALID_ARGUMENT,
            field=field,
        )
    await fails(
        p.RecordPolicyViolation(violation(policy_code="c" * 65), metadata=api.system),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="violation.policy_code",
    )
    await p.RecordPolicyViolation(
        violation(policy_code="c" * 64, note="n" * 500), metadata=api.system
    )
    assert await sql_value(db, "SELECT count(*) FROM activity_events") == 2


async def test_only_the_system_role_records_events(api: Api) -> None:
    user = await api.register()
    request = pb.RecordBugReportRequest(
        event_id="b",
        occurred_at=ts(api.clock()),
        report=pb.BugReport(user_id=user, severity=pb.BUG_SEVERITY_LOW),
    )
    for metadata in (api.admin, api.user(user)):
        await fails(
            api.profiles.RecordBugReport(request, metadata=metadata),
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )
