"""Endorsements through the real server: every limit (one per endorser, endorsee and skill;
never oneself; five given per UTC day, the sixth RESOURCE_EXHAUSTED with RetryInfo to the
next UTC midnight; the endorsee's 20 XP a day), privacy, listing, and what they add to XP and
reputation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import grpc.aio
from google.protobuf.field_mask_pb2 import FieldMask
from google.rpc import error_details_pb2
from smartstart.profile.v1 import profile_service_pb2 as pb

from server.app import RunningServer
from server.db.session import Database
from server.jobs import Outcome
from tests.fixtures_server import error_info, rpc_status_of
from tests.profile.support import Api, Metadata, MovableClock, fails, sql_rows, sql_value
from tests.profile.test_skills import create_skill, declare


async def endorse(
    api: Api, endorser: str, endorsee: str, slug: str, request_id: str | None = None
) -> pb.Endorsement:
    return await api.profiles.EndorseUser(
        pb.EndorseUserRequest(
            request_id=request_id or str(uuid.uuid4()), endorsee_user_id=endorsee, skill_slug=slug
        ),
        metadata=api.user(endorser),
    )


def retry_after(err: grpc.aio.AioRpcError) -> float | None:
    for detail in rpc_status_of(err).details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


SLUGS = ["python", "go", "sql", "ux", "writing", "rust"]


async def world(api: Api, n_users: int = 2) -> list[str]:
    for slug in SLUGS:
        await create_skill(api, slug)
    users = [await api.register(f"U{i}") for i in range(n_users)]
    for user in users:
        for slug in SLUGS:
            await declare(api, user, slug)
    return users


async def test_an_endorsement_and_its_effects(api: Api, db: Database) -> None:
    alice, bob = await world(api)
    made = await endorse(api, alice, bob, "python")
    assert (made.endorser_user_id, made.endorsee_user_id, made.skill_slug) == (alice, bob, "python")
    # alice's rep 0 → weight 0.5 → round_half_up(2 × 0.5) = 1 XP
    assert (await api.profile(bob)).xp == 1
    stats = await sql_rows(db, "SELECT * FROM daily_user_stats WHERE user_id = :u", u=bob)
    assert [(s.xp_gain, s.endorsement_weight_milli, s.endorsement_xp) for s in stats] == [
        (1, 500, 1)
    ]
    assert (
        await sql_value(
            db, "SELECT endorsements_received FROM user_metrics WHERE user_id = :u", u=bob
        )
        == 1
    )
    skills = await api.profiles.ListUserSkills(pb.ListUserSkillsRequest(user_id=bob))
    assert {s.skill_slug: s.endorsement_count for s in skills.skills}["python"] == 1


async def test_idempotent_on_request_id(api: Api, db: Database) -> None:
    alice, bob = await world(api)
    first = await endorse(api, alice, bob, "python", request_id="e-1")
    assert await endorse(api, alice, bob, "python", request_id="e-1") == first
    await fails(
        endorse(api, alice, bob, "go", request_id="e-1"),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )
    assert await sql_value(db, "SELECT count(*) FROM endorsements") == 1
    assert (await api.profile(bob)).xp == 1


async def test_one_per_endorser_endorsee_and_skill_never_oneself(api: Api, db: Database) -> None:
    alice, bob = await world(api)
    made = await endorse(api, alice, bob, "python")
    err = await fails(
        endorse(api, alice, bob, "python"), grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS"
    )
    assert error_info(err).metadata["endorsement_id"] == made.endorsement_id  # type: ignore[union-attr]
    await endorse(api, bob, alice, "python")  # the other way round is another endorsement
    await fails(
        endorse(api, alice, alice, "go"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "endorsee_user_id",
    )
    await fails(
        endorse(api, alice, "nope", "go"),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="endorsee_user_id",
    )
    assert await sql_value(db, "SELECT count(*) FROM endorsements") == 2


async def test_only_for_a_skill_the_endorsee_declared(api: Api) -> None:
    alice, bob = await world(api)
    await create_skill(api, "cobol")
    for slug in ("cobol", "fortran"):  # in the catalogue but not declared; not in it at all
        await fails(
            endorse(api, alice, bob, slug), grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE"
        )


async def test_unknown_or_private_endorsee_is_not_found(api: Api, db: Database) -> None:
    alice, bob = await world(api)
    await fails(
        endorse(api, alice, str(uuid.uuid4()), "python"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND"
    )
    await api.profiles.UpdateMyProfile(
        pb.UpdateMyProfileRequest(
            profile=pb.Profile(is_public=False), update_mask=FieldMask(paths=["is_public"])
        ),
        metadata=api.user(bob),
    )
    await fails(endorse(api, alice, bob, "python"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    # a caller who is not a registered user has nobody to endorse from
    await fails(endorse(api, str(uuid.uuid4()), alice, "python"), grpc.StatusCode.NOT_FOUND)
    assert await sql_value(db, "SELECT count(*) FROM endorsements") == 0


async def test_the_sixth_of_a_utc_day_is_resource_exhausted_until_midnight(
    api: Api, db: Database, clock: MovableClock
) -> None:
    endorser, *others = await world(api, 8)
    clock.at(0, hour=17, minute=30)
    for user in others[:5]:
        await endorse(api, endorser, user, "python")
    err = await fails(
        endorse(api, endorser, others[5], "python"),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "DAILY_LIMIT_REACHED",
    )
    assert retry_after(err) == 6.5 * 3600  # 17:30 → the next 00:00 UTC
    assert error_info(err).metadata["limit"] == "5"  # type: ignore[union-attr]
    assert await sql_value(db, "SELECT count(*) FROM endorsements") == 5
    clock.at(0, hour=23, minute=59)
    await fails(endorse(api, endorser, others[6], "go"), grpc.StatusCode.RESOURCE_EXHAUSTED)
    clock.at(1, hour=0)
    await endorse(api, endorser, others[5], "python")  # a new UTC day
    # the limit counts what was given: received endorsements do not count
    for user in others[:5]:
        await endorse(api, user, endorser, SLUGS[others.index(user)])


async def test_concurrent_endorsements_by_one_endorser_stop_at_five(api: Api, db: Database) -> None:
    endorser, *others = await world(api, 11)
    results = await asyncio.gather(
        *(endorse(api, endorser, user, "sql") for user in others), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, pb.Endorsement)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 5 and len(refused) == 5
    assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
    assert await sql_value(db, "SELECT count(*) FROM endorsements") == 5


async def test_the_endorsee_gets_at_most_20_xp_a_day_from_endorsements(
    api: Api, db: Database, running: RunningServer, clock: MovableClock
) -> None:
    endorsee, *endorsers = await world(api, 6)
    for endorser in endorsers[:5]:  # 5 endorsers × 5 skills = 25 endorsements of 1 XP each
        for slug in SLUGS[:5]:
            await endorse(api, endorser, endorsee, slug)
    assert (await api.profile(endorsee)).xp == 20
    row = (await sql_rows(db, "SELECT * FROM daily_user_stats WHERE user_id = :u", u=endorsee))[0]
    assert (row.xp_gain, row.endorsement_xp, row.endorsement_weight_milli) == (20, 20, 12_500)
    awarded = await sql_rows(db, "SELECT xp_awarded FROM endorsements ORDER BY created_at, id")
    assert sorted(a.xp_awarded for a in awarded) == [0] * 5 + [1] * 20
    # reputation counts every endorsement's weight even past the XP cap:
    # 20 / 10 + (25 × 0.5) / 5 = 4.5
    clock.at(1, hour=2)
    result = await running.services.scheduler.run_now("daily_maintenance")
    assert result.outcome is Outcome.SUCCEEDED
    assert (
        await sql_value(db, "SELECT rep_milli FROM profiles WHERE user_id = :u", u=endorsee) == 4500
    )
    # the next day the cap starts over
    clock.at(1, hour=9)
    await endorse(api, endorsers[5 - 1], endorsee, SLUGS[5])
    assert (await api.profile(endorsee)).xp == 21


async def test_listing_received_given_by_skill_and_pages(api: Api, clock: MovableClock) -> None:
    a, b, c = await world(api, 3)
    made = []
    for endorser, endorsee, slug in [
        (a, b, "python"),
        (c, b, "python"),
        (a, b, "go"),
        (b, a, "sql"),
    ]:
        clock.now += timedelta(seconds=1)
        made.append(await endorse(api, endorser, endorsee, slug))
    received = await api.profiles.ListEndorsements(pb.ListEndorsementsRequest(user_id=b))
    assert [e.endorsement_id for e in received.endorsements] == [
        m.endorsement_id for m in reversed(made[:3])
    ]
    given = await api.profiles.ListEndorsements(
        pb.ListEndorsementsRequest(user_id="me", direction=pb.ENDORSEMENT_DIRECTION_GIVEN),
        metadata=api.user(a),
    )
    assert [e.skill_slug for e in given.endorsements] == ["go", "python"]
    python = await api.profiles.ListEndorsements(
        pb.ListEndorsementsRequest(user_id=b, skill_slug="python", page_size=1)
    )
    rest = await api.profiles.ListEndorsements(
        pb.ListEndorsementsRequest(
            user_id=b, skill_slug="python", page_size=1, page_token=python.next_page_token
        )
    )
    assert [e.endorser_user_id for e in [*python.endorsements, *rest.endorsements]] == [c, a]
    assert rest.next_page_token == ""
    await fails(
        api.profiles.ListEndorsements(
            pb.ListEndorsementsRequest(user_id=b, page_token=python.next_page_token)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="page_token",
    )


async def test_a_private_users_endorsements_are_not_listed_to_others(api: Api) -> None:
    a, b = await world(api)
    await endorse(api, a, b, "python")
    await api.profiles.UpdateMyProfile(
        pb.UpdateMyProfileRequest(
            profile=pb.Profile(is_public=False), update_mask=FieldMask(paths=["is_public"])
        ),
        metadata=api.user(b),
    )
    request = pb.ListEndorsementsRequest(user_id=b)
    nobody: Metadata = ()
    for metadata in (nobody, api.user(a)):
        await fails(
            api.profiles.ListEndorsements(request, metadata=metadata), grpc.StatusCode.NOT_FOUND
        )
    for metadata in (api.user(b), api.admin):
        listed = await api.profiles.ListEndorsements(request, metadata=metadata)
        assert len(listed.endorsements) == 1
    # a's list still names b, by id only
    given = await api.profiles.ListEndorsements(
        pb.ListEndorsementsRequest(user_id=a, direction=pb.ENDORSEMENT_DIRECTION_GIVEN)
    )
    assert [e.endorsee_user_id for e in given.endorsements] == [b]
