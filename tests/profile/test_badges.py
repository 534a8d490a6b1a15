"""Badges through the real server: the directory, admin create/update with rule validation,
manual award and revocation, a user's awards (privacy), and the hourly job: each seeded
badge awarded exactly when its rule first holds, never twice."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import grpc
import grpc.aio
from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.struct_pb2 import Struct
from smartstart.conversion.v1 import conversion_service_pb2 as cpb
from smartstart.ops.v1 import ops_service_pb2 as ops_pb
from smartstart.ops.v1 import ops_service_pb2_grpc as ops_grpc
from smartstart.profile.v1 import profile_service_pb2 as pb
from smartstart.wallet.v1 import wallet_service_pb2 as wpb

from server.app import RunningServer
from server.core.context import SYSTEM_CONTEXT
from server.db.session import Database
from server.jobs import Outcome, Trigger
from server.profile import badge_queries
from server.profile.seeds import SEED_BADGES
from tests.ops.support import json_value
from tests.profile.support import (
    Api,
    Metadata,
    MovableClock,
    fails,
    sql_rows,
    sql_value,
    ts,
)
from tests.profile.test_endorsements import endorse
from tests.profile.test_skills import create_skill, declare


def struct(value: dict[str, Any]) -> Struct:
    out = Struct()
    out.update(value)
    return out


def cond(metric: str, op: str, value: Any) -> dict[str, Any]:
    return {"metric": metric, op: value}


async def create_badge(
    api: Api, code: str, rule_type: int, rule: dict[str, Any] | None = None, **fields: Any
) -> pb.Badge:
    request = pb.CreateBadgeRequest(
        request_id=fields.pop("request_id", str(uuid.uuid4())),
        code=code,
        title=fields.pop("title", "A badge"),
        rule_type=rule_type,  # type: ignore[arg-type]
        **fields,
    )
    if rule is not None:
        request.rule.CopyFrom(struct(rule))
    return await api.profiles.CreateBadge(request, metadata=api.admin)


async def award(
    api: Api, code: str, user: str, note: str = "", request_id: str = ""
) -> pb.BadgeAward:
    return await api.profiles.AwardBadge(
        pb.AwardBadgeRequest(
            request_id=request_id or str(uuid.uuid4()), code=code, user_id=user, note=note
        ),
        metadata=api.admin,
    )


async def revoke(api: Api, code: str, user: str, reason: str = "abuse") -> pb.BadgeAward:
    return await api.profiles.RevokeBadgeAward(
        pb.RevokeBadgeAwardRequest(
            request_id=str(uuid.uuid4()), code=code, user_id=user, reason=reason
        ),
        metadata=api.admin,
    )


async def badges_of(api: Api, user: str, metadata: Metadata = (), **kw: Any) -> list[pb.BadgeAward]:
    listed = await api.profiles.ListUserBadges(
        pb.ListUserBadgesRequest(user_id=user, **kw), metadata=metadata
    )
    return list(listed.awards)


async def run_badges(running: RunningServer) -> dict[str, int]:
    result = await running.services.scheduler.run_now("badge_evaluation")
    assert result.outcome is Outcome.SUCCEEDED, result.error
    return result.counts


# --- directory and admin ----------------------------------------------------------------------


async def test_the_directory_lists_the_seeded_badges_in_the_one_format(api: Api) -> None:
    listed = await api.profiles.ListBadges(pb.ListBadgesRequest())  # anonymous
    assert [b.code for b in listed.badges] == sorted(b.code for b in SEED_BADGES)
    one = await api.profiles.GetBadge(pb.GetBadgeRequest(code="BUG_HUNTER_BRONZE"))
    assert json_format.MessageToDict(one.rule) == {
        "conditions": [{"metric": "criticalBugReports", "gte": 3}]
    }
    assert (one.rule_type, one.award_count) == (pb.BADGE_RULE_TYPE_THRESHOLD, 0)
    manual = await api.profiles.ListBadges(
        pb.ListBadgesRequest(rule_type=pb.BADGE_RULE_TYPE_MANUAL)
    )
    assert list(manual.badges) == []
    page = await api.profiles.ListBadges(pb.ListBadgesRequest(page_size=4))
    rest = await api.profiles.ListBadges(pb.ListBadgesRequest(page_token=page.next_page_token))
    assert len(page.badges) + len(rest.badges) == 6 and rest.next_page_token == ""
    await fails(api.profiles.GetBadge(pb.GetBadgeRequest(code="NOPE")), grpc.StatusCode.NOT_FOUND)


async def test_create_and_update_with_rule_validation(api: Api, db: Database) -> None:
    composite = {
        "any": [
            cond("level", "gte", 5),
            {"all": [cond("kycStatus", "eq", "PASSED"), cond("repScore", "gt", 60.5)]},
        ]
    }
    made = await create_badge(
        api, "STAR_2026", pb.BADGE_RULE_TYPE_COMPOSITE, composite, icon="https://x.test/star.svg"
    )
    assert json_format.MessageToDict(made.rule) == composite
    await create_badge(api, "HELPER", pb.BADGE_RULE_TYPE_MANUAL, icon="helper")
    bad = {"conditions": [cond("level", "gte", 2), cond("karma", "gte", 1)]}
    err = await fails(
        create_badge(api, "BAD_ONE", pb.BADGE_RULE_TYPE_THRESHOLD, bad),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "rule.conditions[1].metric",
    )
    assert "karma" in (err.details() or "")
    cases: list[tuple[str, int, dict[str, Any] | None, dict[str, Any], str]] = [
        (
            "BAD_OP",
            pb.BADGE_RULE_TYPE_COMPOSITE,
            {"all": [cond("level", "approx", 2)]},
            {},
            "rule.all[0].approx",
        ),
        (
            "BAD_MANUAL",
            pb.BADGE_RULE_TYPE_MANUAL,
            {"conditions": [cond("level", "gte", 2)]},
            {},
            "rule",
        ),
        ("NO_RULE", pb.BADGE_RULE_TYPE_THRESHOLD, None, {}, "rule"),
        ("NO_TYPE", pb.BADGE_RULE_TYPE_UNSPECIFIED, None, {}, "rule_type"),
        ("bad-code", pb.BADGE_RULE_TYPE_MANUAL, None, {}, "code"),
        ("AB", pb.BADGE_RULE_TYPE_MANUAL, None, {}, "code"),
        ("NO_TITLE", pb.BADGE_RULE_TYPE_MANUAL, None, {"title": ""}, "title"),
        ("LONG_TITLE", pb.BADGE_RULE_TYPE_MANUAL, None, {"title": "t" * 81}, "title"),
        ("LONG_TEXT", pb.BADGE_RULE_TYPE_MANUAL, None, {"description": "d" * 501}, "description"),
        ("HTTP_ICON", pb.BADGE_RULE_TYPE_MANUAL, None, {"icon": "http://x.test/i.png"}, "icon"),
        ("LONG_ICON", pb.BADGE_RULE_TYPE_MANUAL, None, {"icon": "i" * 301}, "icon"),
    ]
    for code, rule_type, rule, fields, path in cases:
        await fails(
            create_badge(api, code, rule_type, rule, **fields),
            grpc.StatusCode.INVALID_ARGUMENT,
            field=path,
        )
    await create_badge(
        api, "C" * 64, pb.BADGE_RULE_TYPE_MANUAL, title="t" * 80, description="d" * 500
    )
    await fails(
        create_badge(api, "HELPER", pb.BADGE_RULE_TYPE_MANUAL),
        grpc.StatusCode.ALREADY_EXISTS,
        "ALREADY_EXISTS",
    )
    first = await create_badge(api, "ONCE", pb.BADGE_RULE_TYPE_MANUAL, request_id="r-1")
    assert await create_badge(api, "ONCE", pb.BADGE_RULE_TYPE_MANUAL, request_id="r-1") == first
    await fails(
        create_badge(api, "TWICE", pb.BADGE_RULE_TYPE_MANUAL, request_id="r-1"),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )

    def update(code: str, paths: list[str], **badge: Any) -> Any:
        message = pb.Badge(code=code, **{k: v for k, v in badge.items() if k != "rule"})
        if "rule" in badge:
            message.rule.CopyFrom(struct(badge["rule"]))
        return api.profiles.UpdateBadge(
            pb.UpdateBadgeRequest(badge=message, update_mask=FieldMask(paths=paths)),
            metadata=api.admin,
        )

    new_rule = {"conditions": [cond("level", "gte", 3)]}
    updated = await update(
        "BUG_HUNTER_BRONZE", ["title", "rule"], title="Bug Hunter", rule=new_rule
    )
    assert updated.title == "Bug Hunter" and json_format.MessageToDict(updated.rule) == new_rule
    await fails(
        update("BUG_HUNTER_BRONZE", ["rule"], rule={"conditions": [cond("level", "gte", "x")]}),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="badge.rule.conditions[0].gte",
    )
    await fails(
        update("HELPER", ["rule"], rule=new_rule),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="badge.rule",
    )
    for paths in ([], ["code"], ["rule_type"]):
        await fails(update("HELPER", paths), grpc.StatusCode.INVALID_ARGUMENT, field="update_mask")
    await fails(update("NOPE", ["title"], title="x"), grpc.StatusCode.NOT_FOUND)
    user = await api.register()
    await fails(
        api.profiles.CreateBadge(
            pb.CreateBadgeRequest(
                request_id="x", code="MINE", title="t", rule_type=pb.BADGE_RULE_TYPE_MANUAL
            ),
            metadata=api.user(user),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert await sql_value(db, "SELECT count(*) FROM audit_events WHERE action LIKE 'badge.%'") == 5


# --- manual awards and revocation -------------------------------------------------------------


async def test_manual_award_and_revocation(api: Api, db: Database) -> None:
    await create_badge(api, "HELPER", pb.BADGE_RULE_TYPE_MANUAL, icon="helper", title="Helper")
    user = await api.register()
    given = await award(api, "HELPER", user, note="ran the meetup", request_id="a-1")
    assert (given.status, given.source, given.badge_title) == (
        pb.BADGE_AWARD_STATUS_ACTIVE,
        pb.BADGE_AWARD_SOURCE_MANUAL,
        "Helper",
    )
    assert json_format.MessageToDict(given.metric_snapshot) == {"note": "ran the meetup"}
    assert given.awarded_by == str(uuid.UUID(int=2))
    assert await award(api, "HELPER", user, note="ran the meetup", request_id="a-1") == given
    assert (await api.profile(user)).xp == 50
    stats = await sql_rows(
        db, "SELECT xp_gain, badges_awarded FROM daily_user_stats WHERE user_id = :u", u=user
    )
    assert [(s.xp_gain, s.badges_awarded) for s in stats] == [(50, 1)]
    await fails(award(api, "HELPER", user), grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    await fails(
        award(api, "BUG_HUNTER_BRONZE", user), grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE"
    )
    await fails(award(api, "HELPER", str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND)
    await fails(award(api, "NOPE", user), grpc.StatusCode.NOT_FOUND)
    await fails(
        award(api, "HELPER", user, note="n" * 501), grpc.StatusCode.INVALID_ARGUMENT, field="note"
    )
    assert (await api.profiles.GetBadge(pb.GetBadgeRequest(code="HELPER"))).award_count == 1

    await fails(
        revoke(api, "HELPER", user, reason=""), grpc.StatusCode.INVALID_ARGUMENT, field="reason"
    )
    revoked = await revoke(api, "HELPER", user, reason="duplicate account")
    assert revoked.status == pb.BADGE_AWARD_STATUS_REVOKED
    assert (revoked.revoke_reason, revoked.award_id) == ("duplicate account", given.award_id)
    await fails(revoke(api, "HELPER", user), grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE")
    await fails(revoke(api, "HELPER", await api.register()), grpc.StatusCode.NOT_FOUND)
    # once per user and badge: a revoked award blocks a new one; XP already earned stays
    await fails(award(api, "HELPER", user), grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    assert (await api.profile(user)).xp == 50
    assert (await api.profiles.GetBadge(pb.GetBadgeRequest(code="HELPER"))).award_count == 0
    assert await sql_value(db, "SELECT count(*) FROM badge_awards") == 1
    actions = [
        r.action
        for r in await sql_rows(
            db,
            "SELECT action FROM audit_events"
            " WHERE action IN ('badge.awarded', 'badge.revoked') ORDER BY id",
        )
    ]
    assert actions == ["badge.awarded", "badge.revoked"]


async def test_a_users_awards_and_who_sees_what(api: Api, clock: MovableClock) -> None:
    for code in ("ONE", "TWO"):
        await create_badge(api, code, pb.BADGE_RULE_TYPE_MANUAL)
    owner, other = await api.register(), await api.register()
    await award(api, "ONE", owner, note="secret note")
    clock.now += timedelta(seconds=1)
    await award(api, "TWO", owner, note="second")
    await revoke(api, "ONE", owner, reason="private reason")
    public_view = await badges_of(api, owner, include_revoked=True)  # ignored for others
    assert [a.badge_code for a in public_view] == ["TWO"]
    assert not public_view[0].HasField("metric_snapshot")
    for metadata in (api.user(owner), api.admin):
        everything = await badges_of(api, owner, metadata, include_revoked=True)
        assert [a.badge_code for a in everything] == ["TWO", "ONE"]
        assert everything[1].revoke_reason == "private reason"
        assert json_format.MessageToDict(everything[1].metric_snapshot) == {"note": "secret note"}
    assert [a.badge_code for a in await badges_of(api, "me", api.user(owner))] == ["TWO"]
    first = await api.profiles.ListUserBadges(
        pb.ListUserBadgesRequest(user_id=owner, include_revoked=True, page_size=1),
        metadata=api.user(owner),
    )
    rest = await api.profiles.ListUserBadges(
        pb.ListUserBadgesRequest(
            user_id=owner, include_revoked=True, page_size=1, page_token=first.next_page_token
        ),
        metadata=api.user(owner),
    )
    assert [a.badge_code for a in [*first.awards, *rest.awards]] == ["TWO", "ONE"]
    await api.profiles.UpdateMyProfile(
        pb.UpdateMyProfileRequest(
            profile=pb.Profile(is_public=False), update_mask=FieldMask(paths=["is_public"])
        ),
        metadata=api.user(owner),
    )
    await fails(badges_of(api, owner, api.user(other)), grpc.StatusCode.NOT_FOUND)
    assert len(await badges_of(api, owner, api.admin)) == 1


# --- the hourly job: the seeded badges ------------------------------------------------------


async def test_bug_hunter_is_awarded_when_its_rule_first_holds_and_never_twice(
    api: Api, running: RunningServer, db: Database, clock: MovableClock
) -> None:
    user = await api.register()
    for _ in range(2):
        await api.bug(user)
    await api.bug(user, pb.BUG_SEVERITY_HIGH)
    assert (await run_badges(running))["awards"] == 0
    await api.bug(user)  # the third critical one
    counts = await run_badges(running)
    assert (counts["awards"], counts["full_pass"]) == (1, 0)
    (got,) = await badges_of(api, user, api.user(user))
    assert (got.badge_code, got.source) == ("BUG_HUNTER_BRONZE", pb.BADGE_AWARD_SOURCE_RULE)
    assert json_format.MessageToDict(got.metric_snapshot) == {"criticalBugReports": 3}
    assert (await api.profile(user)).xp == 50
    await api.bug(user)
    assert (await run_badges(running))["awards"] == 0
    clock.at(1, hour=0)
    assert (await run_badges(running))["full_pass"] == 1
    assert await sql_value(db, "SELECT count(*) FROM badge_awards") == 1
    audit = await sql_rows(db, "SELECT details FROM audit_events WHERE action = 'badge.awarded'")
    assert [(a.details["badge"], a.details["source"]) for a in audit] == [
        ("BUG_HUNTER_BRONZE", "RULE")
    ]


async def test_early_contributor_needs_five_tasks_within_ninety_days(
    api: Api, running: RunningServer, db: Database, clock: MovableClock
) -> None:
    venture = await api.venture()
    early = await api.register("Early")
    late = await api.register("Late", joined_at=ts(clock() - timedelta(days=91)))
    reviewer = await api.register()
    for user in (early, late):
        for _ in range(4):
            await api.task(user, reviewer, venture, quality=3)
    assert (await run_badges(running))["awards"] == 0
    for user in (early, late):
        await api.task(user, reviewer, venture, quality=3)
    assert (await run_badges(running))["awards"] == 1
    assert [a.badge_code for a in await badges_of(api, early)] == ["EARLY_CONTRIBUTOR"]
    assert await badges_of(api, late) == []
    await api.task(early, reviewer, venture, quality=3)
    assert (await run_badges(running))["awards"] == 0  # never twice


async def test_top_reviewer_counts_helpful_agreeing_reviews(
    api: Api, running: RunningServer
) -> None:
    reviewer, disagreeing = await api.register(), await api.register()
    for i in range(49):
        await api.review(reviewer, helpful=True, agreed=i < 40, positive=False)
    await api.review(reviewer, helpful=False, agreed=False, positive=False)
    for i in range(50):
        await api.review(disagreeing, helpful=True, agreed=i < 39, positive=False)  # 78 %
    assert (await run_badges(running))["awards"] == 0  # 49 helpful; 78 % agreement
    await api.review(reviewer, helpful=True, agreed=True, positive=False)  # 50; 41 of 51
    assert (await run_badges(running))["awards"] == 1
    (got,) = await badges_of(api, reviewer, api.user(reviewer))
    assert got.badge_code == "TOP_REVIEWER"
    assert json_format.MessageToDict(got.metric_snapshot) == {
        "helpfulReviews": 50,
        "reviewAgreementPct": 80.392,
    }
    assert await badges_of(api, disagreeing) == []
    await api.review(reviewer, helpful=True, agreed=True, positive=False)
    assert (await run_badges(running))["awards"] == 0  # never twice


async def test_security_champion_needs_ninety_compliant_days_in_a_row(
    api: Api, running: RunningServer, clock: MovableClock
) -> None:
    champion, violator, unverified = [await api.register(n) for n in ("C", "V", "U")]
    for user in (champion, violator):
        await api.set_kyc(user)
    await api.violation(violator)
    for day in range(90):
        clock.at(day, hour=9)
        for user in (champion, violator, unverified):
            await api.report_posture(user)
        if day == 88:  # 89 days in a row
            assert (await run_badges(running))["awards"] == 0
    counts = await run_badges(running)  # day 89: the 90th day
    assert counts["awards"] == 1
    assert [a.badge_code for a in await badges_of(api, champion)] == ["SECURITY_CHAMPION"]
    for user in (violator, unverified):
        assert await badges_of(api, user) == []
    clock.at(90, hour=9)
    await api.report_posture(champion)
    assert (await run_badges(running))["awards"] == 0  # never twice


async def test_community_builder_needs_endorsements_and_task_quality(
    api: Api, running: RunningServer, db: Database, clock: MovableClock
) -> None:
    venture = await api.venture()
    slugs = ["python", "go", "sql", "ux", "writing"]
    for slug in slugs:
        await create_skill(api, slug)
    builder, one, two, reviewer = [await api.register(n) for n in ("B", "1", "2", "R")]
    for slug in slugs:
        await declare(api, builder, slug)
    await api.task(builder, reviewer, venture, quality=4)
    await api.task(builder, reviewer, venture, quality=3)  # average 3.5
    for slug in slugs:
        await endorse(api, one, builder, slug)
    for slug in slugs[:4]:
        await endorse(api, two, builder, slug)
    assert (await run_badges(running))["awards"] == 0  # 9 endorsements
    await endorse(api, two, builder, slugs[4])
    assert (await run_badges(running))["awards"] == 0  # 10, but quality 3.5
    await api.task(builder, reviewer, venture, quality=5)  # (4 + 3 + 5) / 3 = 4.0
    assert (await run_badges(running))["awards"] == 1
    (got,) = await badges_of(api, builder, api.admin)
    assert json_format.MessageToDict(got.metric_snapshot) == {
        "avgTaskQuality": 4,
        "endorsementsReceived": 10,
    }
    await api.task(builder, reviewer, venture, quality=5)
    assert (await run_badges(running))["awards"] == 0  # never twice


async def test_the_job_looks_at_changed_users_and_everyone_once_a_day(
    api: Api, running: RunningServer, clock: MovableClock
) -> None:
    quiet, busy = await api.register(), await api.register()
    first = await run_badges(running)
    assert (first["full_pass"], first["users_evaluated"]) == (1, 2)
    await api.bug(busy)
    again = await run_badges(running)
    assert (again["full_pass"], again["users_evaluated"]) == (0, 1)
    clock.at(1, hour=0)
    assert (await run_badges(running))["users_evaluated"] == 2
    del quiet


async def test_a_repscore_badge_is_awarded_on_the_first_run_after_the_daily_fold(
    api: Api, running: RunningServer, clock: MovableClock
) -> None:
    """Reputation moves only in the daily maintenance (02:00), after the day's first full
    pass: the next hourly run evaluates everyone again, and the one after it does not."""
    await create_badge(
        api, "RISING", pb.BADGE_RULE_TYPE_THRESHOLD, {"conditions": [cond("repScore", "gte", 20)]}
    )
    user = await api.register()
    for _ in range(3):
        await api.bug(user)
    assert (await run_badges(running))["awards"] == 1  # BUG_HUNTER: 50 XP and a badge
    clock.at(1, hour=0)
    assert (await run_badges(running))["full_pass"] == 1  # the day's first run
    assert (await run_badges(running))["full_pass"] == 0
    clock.at(1, hour=2)
    result = await running.services.scheduler.run_now("daily_maintenance")
    assert result.outcome is Outcome.SUCCEEDED
    assert (await api.profile(user)).rep == 25
    clock.at(1, hour=3)
    after_fold = await run_badges(running)
    assert (after_fold["full_pass"], after_fold["awards"]) == (1, 1)
    assert "RISING" in [a.badge_code for a in await badges_of(api, user)]
    assert (await run_badges(running))["full_pass"] == 0


async def test_a_full_pass_asked_for_while_a_pass_runs_is_kept_for_the_next_run(
    db: Database,
) -> None:
    """A pass that started before the request may have read the old repScores: only a pass
    that started after it answers it."""
    today = date(2026, 12, 1)
    async with db.transaction() as session:
        running_pass = await badge_queries.lock_state(session)
    async with db.transaction() as session:
        await badge_queries.request_full_pass(session)
    async with db.transaction() as session:
        await badge_queries.save_state(session, since=running_pass.started, full_day=today)
    async with db.transaction() as session:
        next_pass = await badge_queries.lock_state(session)
    assert next_pass.full_pass_requested
    async with db.transaction() as session:
        await badge_queries.save_state(session, since=next_pass.started, full_day=today)
    async with db.transaction() as session:
        assert not (await badge_queries.lock_state(session)).full_pass_requested


async def test_a_badge_counts_for_reputation_and_xp(
    api: Api, running: RunningServer, db: Database, clock: MovableClock
) -> None:
    user = await api.register()
    for _ in range(3):
        await api.bug(user)
    assert (await run_badges(running))["awards"] == 1
    clock.at(1, hour=2)
    result = await running.services.scheduler.run_now("daily_maintenance")
    assert result.outcome is Outcome.SUCCEEDED
    # dailyGain = 50 XP / 10 + 1 badge × 20 = 25
    assert (
        await sql_value(db, "SELECT rep_milli FROM profiles WHERE user_id = :u", u=user) == 25_000
    )
    assert (await api.profile(user)).rep == 25


async def test_equity_pioneer_reads_approved_conversions(
    api: Api, running: RunningServer, clock: MovableClock
) -> None:
    """Approved conversions through ConversionService: one user's approved, another's still
    pending. The gates the conversion needs are met through the API (KYC, a device report,
    and the admin's setting for the reputation gate, so no daily job is needed here)."""
    pioneer, pending = await api.register(), await api.register()
    assert (await run_badges(running))["awards"] == 0
    venture = await api.venture()
    ops = ops_grpc.OpsServiceStub(api.channel)
    gate = ops_pb.UpdateSettingRequest(
        setting=ops_pb.Setting(key="gates.min_reputation", value=json_value(0)),
        reason="a pilot without the reputation gate",
    )
    gate.update_mask.paths.append("value")
    await ops.UpdateSetting(gate, metadata=api.admin)
    board = api.user(str(uuid.uuid4()), "board")
    window = await api.conversions.CreateWindow(
        cpb.CreateWindowRequest(
            label="pioneers",
            opens_at=ts(clock()),
            closes_at=ts(clock() + timedelta(days=30)),
            equity_rate_bps=100,
            request_id=str(uuid.uuid4()),
        ),
        metadata=board,
    )
    requests = {}
    for user in (pioneer, pending):
        await api.set_kyc(user)
        await api.report_posture(user)
        await api.wallets.AdjustBalance(
            wpb.AdjustBalanceRequest(
                request_id=str(uuid.uuid4()), user_id=user, delta=1000, reason="a grant"
            ),
            metadata=api.admin,
        )
        requests[user] = await api.conversions.RequestConversion(
            cpb.RequestConversionRequest(
                window_id=window.id,
                venture_id=venture,
                buz_amount=1000,
                request_id=str(uuid.uuid4()),
            ),
            metadata=api.user(user),
        )
    await api.conversions.ApproveConversion(
        cpb.ApproveConversionRequest(
            conversion_id=requests[pioneer].id, request_id=str(uuid.uuid4())
        ),
        metadata=board,
    )
    counts = await run_badges(running)  # incremental: found through conversion_requests
    assert (counts["full_pass"], counts["awards"]) == (0, 1)
    (got,) = await badges_of(api, pioneer, api.user(pioneer))
    assert got.badge_code == "EQUITY_PIONEER"
    assert json_format.MessageToDict(got.metric_snapshot) == {"approvedConversions": 1}
    assert await badges_of(api, pending) == []
    clock.at(1, hour=0)
    assert (await run_badges(running))["awards"] == 0  # the next full pass: never twice


async def test_racing_awards_and_revocations_take_effect_once(api: Api, db: Database) -> None:
    await create_badge(api, "HELPER", pb.BADGE_RULE_TYPE_MANUAL)
    user = await api.register()
    results = await asyncio.gather(
        *(award(api, "HELPER", user, note=str(i)) for i in range(8)), return_exceptions=True
    )
    made = [r for r in results if isinstance(r, pb.BadgeAward)]
    assert len(made) == 1
    assert all(
        isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.ALREADY_EXISTS
        for r in results
        if r not in made
    )
    assert (await api.profile(user)).xp == 50
    revoked = await asyncio.gather(
        *(revoke(api, "HELPER", user) for _ in range(8)), return_exceptions=True
    )
    assert sum(isinstance(r, pb.BadgeAward) for r in revoked) == 1
    assert (
        await sql_value(db, "SELECT count(*) FROM audit_events WHERE action = 'badge.revoked'") == 1
    )


async def test_two_evaluations_at_once_award_once(
    api: Api, running: RunningServer, db: Database, clock: MovableClock
) -> None:
    """The job's lock keeps a second replica out; its body run twice at once still awards
    each (user, badge) once and credits its XP once."""
    users = [await api.register() for _ in range(6)]
    for user in users:
        for _ in range(3):
            await api.bug(user)
    badges = running.services.profile.badges
    ids = [uuid.UUID(u) for u in users]
    counts = await asyncio.gather(
        *(badges.evaluate_users(SYSTEM_CONTEXT, clock(), ids) for _ in range(3))
    )
    assert sum(counts) == 6
    assert await sql_value(db, "SELECT count(*) FROM badge_awards") == 6
    assert {(await api.profile(u)).xp for u in users} == {50}
    # Two replicas' scheduled runs at once: one runs, the other finds the lock taken.
    replicas = await asyncio.gather(
        running.services.scheduler.run_now("badge_evaluation", Trigger.SCHEDULE),
        running.services.scheduler.run_now("badge_evaluation", Trigger.SCHEDULE),
    )
    assert sorted(r.outcome for r in replicas) == [Outcome.SKIPPED, Outcome.SUCCEEDED]
