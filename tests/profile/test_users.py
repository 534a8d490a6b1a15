"""RegisterUser, GetUser, KYC, device posture and profiles through the real server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from prometheus_client import REGISTRY
from smartstart.profile.v1 import profile_service_pb2 as pb
from smartstart.profile.v1 import profile_service_pb2_grpc as pb_grpc
from sqlalchemy import text

from server.db.session import Database
from tests.fixtures_server import MintToken, ServerFactory, bearer, error_info, rpc_status_of

SYSTEM = str(uuid.UUID(int=1))
ADMIN = str(uuid.UUID(int=2))

Register = Callable[..., Awaitable[pb.User]]


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.ProfileServiceStub:
    return pb_grpc.ProfileServiceStub(channel)


@pytest.fixture
def system_md(mint_token: MintToken) -> tuple[tuple[str, str], ...]:
    return bearer(mint_token(SYSTEM, roles=("system",)))


@pytest.fixture
def admin_md(mint_token: MintToken) -> tuple[tuple[str, str], ...]:
    return bearer(mint_token(ADMIN, roles=("admin",)))


@pytest.fixture
def register(stub: pb_grpc.ProfileServiceStub, system_md: tuple[tuple[str, str], ...]) -> Register:
    async def call(external_id: str | None = None, **fields: object) -> pb.User:
        ext = external_id or f"ext-{uuid.uuid4().hex[:10]}"
        request = pb.RegisterUserRequest(
            request_id=str(fields.pop("request_id", uuid.uuid4())),
            external_id=ext,
            email=str(fields.pop("email", f"{ext}@example.com")),
            display_name=str(fields.pop("display_name", "Ada Lovelace")),
        )
        return await stub.RegisterUser(request, metadata=system_md)

    return call


async def count(db: Database, sql: str, **params: object) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text(sql), params)).scalar_one())


async def test_register_creates_user_profile_wallet_and_audit_event(
    register: Register, stub: pb_grpc.ProfileServiceStub, db: Database
) -> None:
    user = await register(external_id="ext-ada", display_name="  Ada  ")
    assert uuid.UUID(user.user_id) and uuid.UUID(user.wallet_id)
    assert user.display_name == "Ada"
    assert user.kyc_status == pb.KYC_STATUS_NONE

    profile = await stub.GetProfile(pb.GetProfileRequest(user_id=user.user_id))  # anonymous
    assert (profile.user_id, profile.level, profile.xp, profile.rep) == (user.user_id, 1, 0, 0)
    assert profile.is_public and profile.theme == pb.THEME_AUTO and profile.next_level_xp == 100

    balance = await count(
        db, "SELECT buz_balance + pending_lock FROM wallets WHERE user_id = :u", u=user.user_id
    )
    assert balance == 0
    assert (
        await count(
            db,
            "SELECT count(*) FROM audit_events WHERE action = 'user.registered' AND ref_id = :u",
            u=user.user_id,
        )
        == 1
    )


async def test_register_is_idempotent_on_request_id(
    register: Register,
    system_md: tuple[tuple[str, str], ...],
    stub: pb_grpc.ProfileServiceStub,
    db: Database,
) -> None:
    key = str(uuid.uuid4())
    first = await register(external_id="ext-idem", request_id=key)
    again = await register(external_id="ext-idem", request_id=key)
    assert again.user_id == first.user_id

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await register(external_id="ext-other", request_id=key)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info = error_info(err.value)
    assert info is not None and info.reason == "IDEMPOTENCY_CONFLICT"
    assert await count(db, "SELECT count(*) FROM users") == 1


async def test_concurrent_retries_register_exactly_one_user(
    register: Register, db: Database
) -> None:
    key = str(uuid.uuid4())
    users = await asyncio.gather(
        *(register(external_id="ext-race", request_id=key) for _ in range(20))
    )
    assert len({u.user_id for u in users}) == 1
    assert await count(db, "SELECT count(*) FROM users") == 1
    assert await count(db, "SELECT count(*) FROM wallets") == 1
    assert (
        await count(db, "SELECT count(*) FROM audit_events WHERE action = 'user.registered'") == 1
    )


async def test_duplicate_external_id_or_email_is_already_exists(
    register: Register, db: Database
) -> None:
    first = await register(external_id="ext-dup", email="Dup@Example.com")
    for kwargs in (
        {"external_id": "ext-dup"},
        {"external_id": "ext-new", "email": "dup@example.COM"},
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await register(**kwargs)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        info = error_info(err.value)
        assert info is not None and info.reason == "ALREADY_EXISTS"
        assert info.metadata["user_id"] == first.user_id
    assert await count(db, "SELECT count(*) FROM users") == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "x" * 81}, "display_name"),
        ({"request_id": ""}, "request_id"),
    ],
)
async def test_register_rejects_bad_input_and_writes_nothing(
    register: Register, db: Database, fields: dict[str, str], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await register(**fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = [
        v.field
        for d in rpc_status_of(err.value).details
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)
        for v in _unpack_bad_request(d).field_violations
    ]
    assert violations == [field]
    assert await count(db, "SELECT count(*) FROM users") == 0
    assert await count(db, "SELECT count(*) FROM audit_events") == 0


def _unpack_bad_request(detail: object) -> error_details_pb2.BadRequest:
    out = error_details_pb2.BadRequest()
    detail.Unpack(out)  # type: ignore[attr-defined]
    return out


async def test_register_needs_the_system_role(
    stub: pb_grpc.ProfileServiceStub, mint_token: MintToken
) -> None:
    request = pb.RegisterUserRequest(
        request_id="r1", external_id="x", email="x@y.z", display_name="X"
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterUser(request, metadata=bearer(mint_token(ADMIN, roles=("admin",))))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_kyc_status_is_set_by_admin_and_audited(
    register: Register,
    stub: pb_grpc.ProfileServiceStub,
    admin_md: tuple[tuple[str, str], ...],
    mint_token: MintToken,
    db: Database,
) -> None:
    user = await register()
    request = pb.SetKycStatusRequest(
        request_id="kyc-1", user_id=user.user_id, status=pb.KYC_STATUS_PASSED, note="verified"
    )
    updated = await stub.SetKycStatus(request, metadata=admin_md)
    assert updated.kyc_status == pb.KYC_STATUS_PASSED and updated.HasField("kyc_updated_at")
    assert (await stub.SetKycStatus(request, metadata=admin_md)).kyc_status == pb.KYC_STATUS_PASSED
    assert (
        await count(db, "SELECT count(*) FROM audit_events WHERE action = 'user.kyc_status_set'")
        == 1
    )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SetKycStatus(
            pb.SetKycStatusRequest(request_id="kyc-2", user_id=user.user_id),
            metadata=admin_md,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SetKycStatus(
            pb.SetKycStatusRequest(
                request_id="kyc-3", user_id=str(uuid.uuid4()), status=pb.KYC_STATUS_FAILED
            ),
            metadata=admin_md,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    own = bearer(mint_token(user.user_id))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SetKycStatus(request, metadata=own)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_device_posture_compliance_and_streak(
    register: Register,
    stub: pb_grpc.ProfileServiceStub,
    system_md: tuple[tuple[str, str], ...],
    mint_token: MintToken,
) -> None:
    user = await register()
    own = bearer(mint_token(user.user_id))
    empty = await stub.GetDevicePosture(pb.GetDevicePostureRequest(user_id="me"), metadata=own)
    assert not empty.device_compliant and empty.device_compliant_days == 0

    now = datetime.now(UTC)
    for i, days_ago in enumerate((2, 1, 0)):
        await stub.ReportDevicePosture(
            pb.ReportDevicePostureRequest(
                request_id=f"p{i}",
                user_id=user.user_id,
                compliant=True,
                reported_at=ts(now - timedelta(days=days_ago)),
            ),
            metadata=system_md,
        )
    posture = await stub.GetDevicePosture(pb.GetDevicePostureRequest(user_id="me"), metadata=own)
    assert posture.device_compliant and posture.device_compliant_days == 3
    assert posture.compliant_until.ToDatetime(tzinfo=UTC) > now + timedelta(hours=71)

    # The latest report decides: a non-compliant one now makes the user non-compliant.
    latest = await stub.ReportDevicePosture(
        pb.ReportDevicePostureRequest(
            request_id="p-bad", user_id=user.user_id, compliant=False, reported_at=ts(now)
        ),
        metadata=system_md,
    )
    assert not latest.device_compliant and not latest.last_report_compliant

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ReportDevicePosture(
            pb.ReportDevicePostureRequest(
                request_id="p-future",
                user_id=user.user_id,
                compliant=True,
                reported_at=ts(now + timedelta(hours=1)),
            ),
            metadata=system_md,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    other = await register()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetDevicePosture(pb.GetDevicePostureRequest(user_id=other.user_id), metadata=own)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stale_compliant_report_is_not_compliant(
    register: Register, stub: pb_grpc.ProfileServiceStub, system_md: tuple[tuple[str, str], ...]
) -> None:
    user = await register()
    stale = await stub.ReportDevicePosture(
        pb.ReportDevicePostureRequest(
            request_id="stale",
            user_id=user.user_id,
            compliant=True,
            reported_at=ts(datetime.now(UTC) - timedelta(hours=73)),
        ),
        metadata=system_md,
    )
    assert not stale.device_compliant and stale.last_report_compliant


async def test_private_profile_is_not_found_except_for_owner_and_admin(
    register: Register,
    stub: pb_grpc.ProfileServiceStub,
    mint_token: MintToken,
    admin_md: tuple[tuple[str, str], ...],
) -> None:
    user = await register()
    own = bearer(mint_token(user.user_id))
    updated = await stub.UpdateMyProfile(
        pb.UpdateMyProfileRequest(
            profile=pb.Profile(is_public=False, bio="builder", theme=pb.THEME_DARK),
            update_mask=FieldMask(paths=["is_public", "bio", "theme"]),
        ),
        metadata=own,
    )
    assert not updated.is_public and updated.bio == "builder" and updated.theme == pb.THEME_DARK

    stranger = bearer(mint_token(str(uuid.uuid4())))
    for metadata in ((), stranger):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetProfile(pb.GetProfileRequest(user_id=user.user_id), metadata=metadata)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    unknown = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as err_unknown:
        await stub.GetProfile(pb.GetProfileRequest(user_id=unknown))
    assert err_unknown.value.details() == err.value.details()  # same answer: no hint

    assert (
        await stub.GetProfile(pb.GetProfileRequest(user_id="me"), metadata=own)
    ).bio == "builder"
    assert (await stub.GetMyProfile(pb.GetMyProfileRequest(), metadata=own)).user_id == user.user_id
    assert (
        await stub.GetProfile(pb.GetProfileRequest(user_id=user.user_id), metadata=admin_md)
    ).user_id == user.user_id


@pytest.mark.parametrize(
    ("profile", "paths"),
    [
        (pb.Profile(website_url="javascript:alert(1)"), ["website_url"]),
        (pb.Profile(avatar_url="http://plain.example/a.png"), ["avatar_url"]),
        (pb.Profile(nickname="n" * 41), ["nickname"]),
        (pb.Profile(), ["theme"]),
        (pb.Profile(display_name="me"), ["display_name"]),
        (pb.Profile(), []),
    ],
)
async def test_update_profile_rejects_bad_fields(
    register: Register,
    stub: pb_grpc.ProfileServiceStub,
    mint_token: MintToken,
    profile: pb.Profile,
    paths: list[str],
) -> None:
    user = await register()
    own = bearer(mint_token(user.user_id))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateMyProfile(
            pb.UpdateMyProfileRequest(profile=profile, update_mask=FieldMask(paths=paths)),
            metadata=own,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    unchanged = await stub.GetMyProfile(pb.GetMyProfileRequest(), metadata=own)
    assert (unchanged.website_url, unchanged.nickname, unchanged.theme) == ("", "", pb.THEME_AUTO)


async def test_get_user_is_self_or_privileged(
    register: Register,
    stub: pb_grpc.ProfileServiceStub,
    mint_token: MintToken,
    admin_md: tuple[tuple[str, str], ...],
) -> None:
    user, other = await register(external_id="ext-self"), await register()
    own = bearer(mint_token(user.user_id))
    assert (
        await stub.GetUser(pb.GetUserRequest(user_id="me"), metadata=own)
    ).external_id == "ext-self"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetUser(pb.GetUserRequest(user_id=other.user_id), metadata=own)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetUser(pb.GetUserRequest(external_id="ext-self"), metadata=own)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    found = await stub.GetUser(pb.GetUserRequest(external_id="ext-self"), metadata=admin_md)
    assert found.user_id == user.user_id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetUser(pb.GetUserRequest(user_id="not-a-uuid"), metadata=admin_md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _batched(use_case: str) -> tuple[float, float]:
    """(batches, items) the group-commit batcher of `use_case` has run in this process."""
    labels = {"use_case": use_case}
    count = REGISTRY.get_sample_value("smartstart_batch_size_count", labels) or 0.0
    total = REGISTRY.get_sample_value("smartstart_batch_size_sum", labels) or 0.0
    return count, total


async def test_concurrent_reads_share_statements_and_each_gets_its_own_answer(
    register: Register,
    stub: pb_grpc.ProfileServiceStub,
    mint_token: MintToken,
) -> None:
    users = [await register(display_name=f"User {i}") for i in range(12)]
    private = users[0]
    await stub.UpdateMyProfile(
        pb.UpdateMyProfileRequest(
            profile=pb.Profile(is_public=False), update_mask=FieldMask(paths=["is_public"])
        ),
        metadata=bearer(mint_token(private.user_id)),
    )
    unknown = [str(uuid.uuid4()) for _ in range(3)]
    asked = [u.user_id for u in users] * 3 + unknown
    before = _batched("get_profile")
    answers = await asyncio.gather(
        *(stub.GetProfile(pb.GetProfileRequest(user_id=u)) for u in asked), return_exceptions=True
    )
    after = _batched("get_profile")
    assert after[1] - before[1] == len(asked)  # every read went through the batcher
    assert after[0] - before[0] < len(asked)  # and some shared a statement
    names = {u.user_id: u.display_name for u in users}
    for user_id, answer in zip(asked, answers, strict=True):
        if user_id in unknown or user_id == private.user_id:
            assert isinstance(answer, grpc.aio.AioRpcError), answer
            assert answer.code() == grpc.StatusCode.NOT_FOUND
        else:
            assert isinstance(answer, pb.Profile), answer
            assert (answer.user_id, answer.display_name) == (user_id, names[user_id])


async def test_a_read_sees_the_write_that_finished_before_it(
    register: Register, stub: pb_grpc.ProfileServiceStub, mint_token: MintToken
) -> None:
    user = await register()
    own = bearer(mint_token(user.user_id))
    others = [await register() for _ in range(4)]
    for round_ in range(5):
        # Keep the read batcher busy so the checked read joins a batch already under way.
        noise = [
            asyncio.ensure_future(stub.GetProfile(pb.GetProfileRequest(user_id=o.user_id)))
            for o in others * 5
        ]
        await stub.UpdateMyProfile(
            pb.UpdateMyProfileRequest(
                profile=pb.Profile(bio=f"round {round_}"), update_mask=FieldMask(paths=["bio"])
            ),
            metadata=own,
        )
        seen = await stub.GetProfile(pb.GetProfileRequest(user_id=user.user_id))
        assert seen.bio == f"round {round_}"
        await asyncio.gather(*noise)


async def test_device_compliance_follows_the_server_clock(
    server_factory: ServerFactory, mint_token: MintToken
) -> None:
    """The server's clock is injectable: a report fresh today is stale 73 h later."""
    later = datetime.now(UTC) + timedelta(hours=73)
    for clock, compliant in ((None, True), (lambda: later, False)):
        running = await (server_factory() if clock is None else server_factory(clock=clock))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = pb_grpc.ProfileServiceStub(ch)
            system = bearer(mint_token("system", roles=["system"]))
            user = await stub.RegisterUser(
                pb.RegisterUserRequest(
                    request_id=f"r-{compliant}",
                    external_id=f"ext-{compliant}",
                    email=f"{compliant}@example.com",
                    display_name="Clocked",
                ),
                metadata=system,
            )
            reported = Timestamp()
            reported.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
            posture = await stub.ReportDevicePosture(
                pb.ReportDevicePostureRequest(
                    request_id=f"p-{compliant}",
                    user_id=user.user_id,
                    compliant=True,
                    reported_at=reported,
                ),
                metadata=system,
            )
            assert posture.device_compliant is compliant
