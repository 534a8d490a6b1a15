"""Skills through the real server: the catalogue, declaring, listing (privacy), verifying."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from smartstart.profile.v1 import profile_service_pb2 as pb

from server.db.session import Database
from tests.fixtures_server import error_info
from tests.profile.support import Api, fails, sql_value


async def create_skill(api: Api, slug: str, name: str = "Skill", category: str = "eng") -> pb.Skill:
    return await api.profiles.CreateSkill(
        pb.CreateSkillRequest(
            request_id=str(uuid.uuid4()), slug=slug, name=name, category=category
        ),
        metadata=api.admin,
    )


async def declare(
    api: Api, user: str, slug: str, level: int = 3, evidence: str = ""
) -> pb.UserSkill:
    return await api.profiles.DeclareSkill(
        pb.DeclareSkillRequest(skill_slug=slug, level=level, evidence_url=evidence),
        metadata=api.user(user),
    )


async def verify(
    api: Api, verifier_md: object, user: str, slug: str, expected: int = 0
) -> pb.UserSkill:
    return await api.profiles.VerifySkill(
        pb.VerifySkillRequest(user_id=user, skill_slug=slug, expected_level=expected),
        metadata=verifier_md,  # type: ignore[arg-type]
    )


async def set_public(api: Api, user: str, public: bool) -> None:
    await api.profiles.UpdateMyProfile(
        pb.UpdateMyProfileRequest(
            profile=pb.Profile(is_public=public), update_mask=FieldMask(paths=["is_public"])
        ),
        metadata=api.user(user),
    )


# --- catalogue ------------------------------------------------------------------------------


async def test_catalogue_create_update_list(api: Api, db: Database) -> None:
    created = await create_skill(api, "python", "Python", "engineering")
    assert (created.slug, created.name, created.category) == ("python", "Python", "engineering")
    await create_skill(api, "ux-research", "UX research", "design")
    await create_skill(api, "go", "Go", "engineering")
    updated = await api.profiles.UpdateSkill(
        pb.UpdateSkillRequest(
            skill=pb.Skill(slug="go", name="Golang", category="ignored"),
            update_mask=FieldMask(paths=["name"]),
        ),
        metadata=api.admin,
    )
    assert (updated.name, updated.category) == ("Golang", "engineering")
    everything = await api.profiles.ListSkills(pb.ListSkillsRequest())  # anonymous
    assert [s.slug for s in everything.skills] == ["go", "python", "ux-research"]
    first = await api.profiles.ListSkills(pb.ListSkillsRequest(page_size=2, category="engineering"))
    assert [s.slug for s in first.skills] == ["go", "python"] and first.next_page_token == ""
    page = await api.profiles.ListSkills(pb.ListSkillsRequest(page_size=1))
    rest = await api.profiles.ListSkills(
        pb.ListSkillsRequest(page_size=5, page_token=page.next_page_token)
    )
    assert [s.slug for s in [*page.skills, *rest.skills]] == ["go", "python", "ux-research"]
    await fails(
        api.profiles.ListSkills(
            pb.ListSkillsRequest(category="design", page_token=page.next_page_token)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="page_token",
    )
    actions = await sql_value(
        db, "SELECT count(*) FROM audit_events WHERE action IN ('skill.created', 'skill.updated')"
    )
    assert actions == 4


async def test_catalogue_rules(api: Api, db: Database) -> None:
    await create_skill(api, "python")
    err = await fails(create_skill(api, "python"), grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    assert error_info(err).metadata["slug"] == "python"  # type: ignore[union-attr]
    for slug in ("p", "9lives", "Python", "py_thon", "x" * 41, ""):
        await fails(create_skill(api, slug), grpc.StatusCode.INVALID_ARGUMENT, field="slug")
    await create_skill(api, "ab" + "c" * 38)  # 40 characters
    await fails(create_skill(api, "rust", name=""), grpc.StatusCode.INVALID_ARGUMENT, field="name")
    await fails(
        create_skill(api, "rust", name="n" * 61), grpc.StatusCode.INVALID_ARGUMENT, field="name"
    )
    await fails(
        create_skill(api, "rust", category="c" * 41),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="category",
    )
    key = str(uuid.uuid4())
    request = pb.CreateSkillRequest(request_id=key, slug="rust", name="Rust", category="eng")
    first = await api.profiles.CreateSkill(request, metadata=api.admin)
    assert await api.profiles.CreateSkill(request, metadata=api.admin) == first
    request.name = "Rust!"
    await fails(
        api.profiles.CreateSkill(request, metadata=api.admin),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )
    for paths in ([], ["slug"]):
        await fails(
            api.profiles.UpdateSkill(
                pb.UpdateSkillRequest(
                    skill=pb.Skill(slug="rust"), update_mask=FieldMask(paths=paths)
                ),
                metadata=api.admin,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="update_mask",
        )
    await fails(
        api.profiles.UpdateSkill(
            pb.UpdateSkillRequest(
                skill=pb.Skill(slug="nope", name="x"), update_mask=FieldMask(paths=["name"])
            ),
            metadata=api.admin,
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    user = await api.register()
    await fails(
        api.profiles.CreateSkill(
            pb.CreateSkillRequest(request_id="k", slug="java", name="Java", category="e"),
            metadata=api.user(user),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    assert await sql_value(db, "SELECT count(*) FROM skills") == 3


# --- declaring and listing ------------------------------------------------------------------


async def test_declare_redeclare_and_list(api: Api, db: Database) -> None:
    await create_skill(api, "python", "Python", "engineering")
    await create_skill(api, "go")
    user = await api.register()
    first = await declare(api, user, "python", 3, "https://example.com/proof")
    assert (first.skill_name, first.skill_category, first.level, first.verified) == (
        "Python",
        "engineering",
        3,
        False,
    )
    again = await declare(api, user, "python", 3, "https://example.com/proof")
    assert again.updated_at == first.updated_at  # the same values change nothing
    await declare(api, user, "go", 1)
    listed = await api.profiles.ListUserSkills(pb.ListUserSkillsRequest(user_id=user))
    assert [(s.skill_slug, s.level) for s in listed.skills] == [("go", 1), ("python", 3)]
    mine = await api.profiles.ListUserSkills(
        pb.ListUserSkillsRequest(user_id="me", page_size=1), metadata=api.user(user)
    )
    assert [s.skill_slug for s in mine.skills] == ["go"] and mine.next_page_token
    assert (
        await sql_value(db, "SELECT count(*) FROM audit_events WHERE action = 'skill.declared'")
        == 2
    )


async def test_declare_field_rules(api: Api) -> None:
    await create_skill(api, "python")
    user = await api.register()
    for level in (0, 6, -1):
        await fails(
            declare(api, user, "python", level), grpc.StatusCode.INVALID_ARGUMENT, field="level"
        )
    for evidence in ("ftp://example.com/x", "example.com", "https://" + "e" * 293 + ".com"):
        await fails(
            declare(api, user, "python", 2, evidence),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="evidence_url",
        )
    await declare(api, user, "python", 5, "http://" + "e" * 289 + ".com")  # 300 characters
    await declare(api, user, "python", 1)
    await fails(declare(api, user, "cobol", 2), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    await fails(
        api.profiles.DeclareSkill(pb.DeclareSkillRequest(skill_slug="python", level=2)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    stranger = str(uuid.uuid4())  # a valid token of no registered user
    await fails(declare(api, stranger, "python"), grpc.StatusCode.NOT_FOUND)


async def test_a_private_profiles_skills_are_not_found_to_others(api: Api) -> None:
    await create_skill(api, "python")
    owner, other = await api.register(), await api.register()
    await declare(api, owner, "python")
    await set_public(api, owner, False)
    for metadata in ((), api.user(other)):
        await fails(
            api.profiles.ListUserSkills(pb.ListUserSkillsRequest(user_id=owner), metadata=metadata),
            grpc.StatusCode.NOT_FOUND,
            "NOT_FOUND",
        )
    for metadata in (api.user(owner), api.admin):
        listed = await api.profiles.ListUserSkills(
            pb.ListUserSkillsRequest(user_id=owner), metadata=metadata
        )
        assert len(listed.skills) == 1
    await fails(
        api.profiles.ListUserSkills(pb.ListUserSkillsRequest(user_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
    )
    await fails(
        api.profiles.ListUserSkills(pb.ListUserSkillsRequest(user_id="me")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await fails(
        api.profiles.ListUserSkills(pb.ListUserSkillsRequest(user_id="x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="user_id",
    )
    # verifying a private user's skill is NOT_FOUND too (an admin may)
    await fails(verify(api, api.user(other), owner, "python"), grpc.StatusCode.NOT_FOUND)
    assert (await verify(api, api.admin, owner, "python")).verified


# --- verification ---------------------------------------------------------------------------


async def test_who_may_verify(api: Api, db: Database) -> None:
    await create_skill(api, "python")
    alice, bob, carol, dave = [await api.register(n) for n in ("A", "B", "C", "D")]
    await declare(api, alice, "python", 4)
    await declare(api, bob, "python", 3)
    await declare(api, carol, "python", 5)
    # nobody verifies themselves, not even an admin
    await fails(verify(api, api.user(alice), alice, "python"), grpc.StatusCode.PERMISSION_DENIED)
    await fails(
        verify(api, api.user(alice, "user", "admin"), alice, "python"),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    # an unverified level qualifies nobody
    await fails(verify(api, api.user(carol), bob, "python"), grpc.StatusCode.PERMISSION_DENIED)
    # the admin verifies alice at 4; alice then may verify bob (3 <= 4), not carol (5 > 4)
    by_admin = await verify(api, api.admin, alice, "python")
    assert by_admin.verified and by_admin.verified_by and by_admin.HasField("verified_at")
    by_alice = await verify(api, api.user(alice), bob, "python")
    assert by_alice.verified and by_alice.verified_by == alice
    await fails(verify(api, api.user(alice), carol, "python"), grpc.StatusCode.PERMISSION_DENIED)
    # dave declared nothing: a qualified verifier needs a verified level
    await fails(verify(api, api.user(dave), carol, "python"), grpc.StatusCode.PERMISSION_DENIED)
    # verifying again returns it unchanged
    again = await verify(api, api.admin, alice, "python")
    assert again.verified_at == by_admin.verified_at
    # expected_level guards a concurrent re-declaration
    await fails(
        verify(api, api.admin, carol, "python", expected=4),
        grpc.StatusCode.ABORTED,
        "CONCURRENT_MODIFICATION",
    )
    await fails(
        verify(api, api.admin, carol, "python", expected=9),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="expected_level",
    )
    assert (await verify(api, api.admin, carol, "python", expected=5)).verified
    # not declared / unknown skill / unknown user
    await fails(verify(api, api.admin, dave, "python"), grpc.StatusCode.NOT_FOUND)
    await fails(verify(api, api.admin, alice, "cobol"), grpc.StatusCode.NOT_FOUND)
    await fails(verify(api, api.admin, str(uuid.uuid4()), "python"), grpc.StatusCode.NOT_FOUND)
    # changing level or evidence clears the verification
    changed = await declare(api, bob, "python", 3, "https://example.com/new")
    assert not changed.verified and changed.verified_by == ""
    verified = await api.profiles.ListUserSkills(
        pb.ListUserSkillsRequest(user_id=carol, verified_only=True)
    )
    assert [s.skill_slug for s in verified.skills] == ["python"]
    assert (
        await sql_value(db, "SELECT count(*) FROM audit_events WHERE action = 'skill.verified'")
        == 3
    )
