"""Regression tests for what the fuzz suite (tests/fuzz) found, one per class, through the
gRPC API: control characters in text, timestamps out of range, undecodable bytes, errors that
echoed unbounded input, and the call-context reset of an abandoned stream."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from smartstart.document.v1 import document_service_pb2 as doc_pb2
from smartstart.document.v1 import document_service_pb2_grpc as doc_grpc
from smartstart.profile.v1 import profile_service_pb2 as pb
from smartstart.profile.v1 import profile_service_pb2_grpc as pb_grpc
from smartstart.wallet.v1 import wallet_service_pb2 as wallet_pb
from smartstart.wallet.v1 import wallet_service_pb2_grpc as wallet_grpc

from server.services import Services
from tests.fixtures_server import MintToken, ServerFactory, bearer, error_info, rpc_status_of

Metadata = tuple[tuple[str, str], ...]


@pytest.fixture
def system(mint_token: MintToken) -> Metadata:
    return bearer(mint_token("system", roles=["system", "admin"]))


async def _invalid(call: Any, field: str | None) -> grpc.aio.AioRpcError:
    """The call fails INVALID_ARGUMENT with reason INVALID_ARGUMENT, naming `field`."""
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    error = failure.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    info = error_info(error)
    assert info is not None and info.reason == "INVALID_ARGUMENT"
    if field is not None:
        bad = error_details_pb2.BadRequest()
        assert any(d.Unpack(bad) for d in rpc_status_of(error).details)
        assert [v.field for v in bad.field_violations] == [field]
    return error


def _register(**fields: Any) -> pb.RegisterUserRequest:
    base: dict[str, Any] = {
        "request_id": "r-1",
        "external_id": "ada",
        "email": "ada@example.com",
        "display_name": "Ada",
    }
    return pb.RegisterUserRequest(**{**base, **fields})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("external_id", "ada\x00"),
        ("display_name", "A\x00da"),
        ("email", "ada@exa\x00mple.com"),
        ("display_name", "Ada\x1b[31m"),
        ("display_name", "Ada\x85"),
    ],
)
async def test_control_characters_are_refused_before_the_database(
    channel: grpc.aio.Channel, system: Metadata, field: str, value: str
) -> None:
    stub = pb_grpc.ProfileServiceStub(channel)
    await _invalid(stub.RegisterUser(_register(**{field: value}), metadata=system), field)
    # nothing was written: the same request id, clean, registers the user
    user = await stub.RegisterUser(_register(), metadata=system)
    assert user.external_id == "ada"


async def test_control_characters_in_lookups_and_nested_fields(
    channel: grpc.aio.Channel, system: Metadata, mint_token: MintToken
) -> None:
    stub = pb_grpc.ProfileServiceStub(channel)
    await _invalid(
        stub.GetUser(pb.GetUserRequest(external_id="\x00"), metadata=system), "external_id"
    )
    user = await stub.RegisterUser(_register(), metadata=system)
    update = pb.UpdateMyProfileRequest(
        profile=pb.Profile(bio="line one\nline \x00two"), update_mask=FieldMask(paths=["bio"])
    )
    me = bearer(mint_token(user.user_id))
    await _invalid(stub.UpdateMyProfile(update, metadata=me), "profile.bio")
    # a multi-line bio is fine; a single-line field is not
    update.profile.bio = "line one\nline two"
    assert (await stub.UpdateMyProfile(update, metadata=me)).bio == "line one\nline two"
    two_lines = pb.UpdateMyProfileRequest(
        profile=pb.Profile(nickname="two\nlines"), update_mask=FieldMask(paths=["nickname"])
    )
    await _invalid(stub.UpdateMyProfile(two_lines, metadata=me), "nickname")


@pytest.mark.parametrize(
    "timestamp",
    [
        Timestamp(seconds=253_402_300_800),  # 10000-01-01
        Timestamp(seconds=-62_135_596_801),  # before 0001-01-01
        Timestamp(seconds=1_700_000_000, nanos=-1),
        Timestamp(seconds=1_700_000_000, nanos=1_000_000_000),
        Timestamp(seconds=2**63 - 1),
    ],
)
async def test_timestamps_outside_their_range_are_invalid(
    channel: grpc.aio.Channel, system: Metadata, timestamp: Timestamp
) -> None:
    profiles = pb_grpc.ProfileServiceStub(channel)
    wallets = wallet_grpc.WalletServiceStub(channel)
    await _invalid(
        profiles.RegisterUser(_register(joined_at=timestamp), metadata=system), "joined_at"
    )
    user = await profiles.RegisterUser(_register(), metadata=system)
    await _invalid(
        profiles.ReportDevicePosture(
            pb.ReportDevicePostureRequest(
                request_id="p-1", user_id=user.user_id, compliant=True, reported_at=timestamp
            ),
            metadata=system,
        ),
        "reported_at",
    )
    await _invalid(
        wallets.RecordTaskAccepted(
            wallet_pb.RecordTaskAcceptedRequest(
                task_id="t-1",
                user_id=user.user_id,
                tier=wallet_pb.TASK_TIER_C,
                quality=3,
                reviewer_ids=["00000000-0000-0000-0000-000000000001"],
                venture_id="00000000-0000-0000-0000-000000000002",
                accepted_at=timestamp,
            ),
            metadata=system,
        ),
        "accepted_at",
    )


@pytest.mark.parametrize(
    "path",
    [
        "/smartstart.profile.v1.ProfileService/GetProfile",  # public
        "/smartstart.wallet.v1.WalletService/RecordTaskAccepted",  # batched
        "/smartstart.conversion.v1.ConversionService/GetVenture",  # whatever it answers today
        "/grpc.health.v1.Health/Check",
    ],
)
async def test_undecodable_bytes_are_invalid_argument_on_every_kind_of_method(
    channel: grpc.aio.Channel, system: Metadata, path: str
) -> None:
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    error = await _invalid(call(b"\x0a\xff\xff\xff\xff\x0f", metadata=system), None)
    assert "does not decode" in (error.details() or "")


async def test_undecodable_bytes_in_streams(channel: grpc.aio.Channel, system: Metadata) -> None:
    download = channel.unary_stream(
        "/smartstart.document.v1.DocumentService/DownloadDocument",
        request_serializer=None,
        response_deserializer=None,
    )

    async def drain() -> None:
        async for _ in download(b"\xff", metadata=system):
            pass

    await _invalid(drain(), None)
    upload = channel.stream_unary(
        "/smartstart.document.v1.DocumentService/UploadDocument",
        request_serializer=None,
        response_deserializer=None,
    )

    async def chunks() -> AsyncIterator[bytes]:
        yield b"\x0a\x02\xc3\x28"  # a string with invalid UTF-8

    # An UNIMPLEMENTED servicer may answer before it reads; both are fine, never UNKNOWN.
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(chunks(), metadata=system)
    assert failure.value.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    )


async def test_errors_quote_input_only_up_to_a_bound(
    channel: grpc.aio.Channel, system: Metadata, mint_token: MintToken
) -> None:
    stub = pb_grpc.ProfileServiceStub(channel)
    user = await stub.RegisterUser(_register(), metadata=system)
    huge = "x" * 100_000
    error = await _invalid(
        stub.UpdateMyProfile(
            pb.UpdateMyProfileRequest(update_mask=FieldMask(paths=[huge])),
            metadata=bearer(mint_token(user.user_id)),
        ),
        "update_mask",
    )
    details = error.details() or ""
    trailers = sum(len(k) + len(v) for k, v in error.trailing_metadata() or ())
    assert len(details) <= 512 and details.endswith("…")
    assert trailers < 4096


# --- an abandoned stream ------------------------------------------------------------------


class _EndlessDownload(doc_grpc.DocumentServiceServicer):  # type: ignore[misc]
    async def DownloadDocument(self, request: Any, context: Any) -> AsyncIterator[Any]:
        while True:
            yield doc_pb2.DownloadDocumentResponse(chunk=b"x" * 65_536)


def _register_endless(server: grpc.aio.Server, services: Services) -> Sequence[str]:
    doc_grpc.add_DocumentServiceServicer_to_server(_EndlessDownload(), server)
    return ["smartstart.document.v1.DocumentService"]


async def test_abandoned_streams_leave_no_error_behind(
    server_factory: ServerFactory, mint_token: MintToken
) -> None:
    """Streams that clients drop while the server is writing are finalised by asyncio in a
    task of their own; resetting the call context there used to raise "created in a different
    Context". Nothing may reach the loop's exception handler, and the server keeps serving."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        running = await server_factory(extra_registrars=[_register_endless])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            docs = doc_grpc.DocumentServiceStub(ch)
            token = bearer(mint_token("reader"))

            async def read_one_and_drop() -> None:
                stream = docs.DownloadDocument(doc_pb2.DownloadDocumentRequest(), metadata=token)
                async for _ in stream:
                    break
                stream.cancel()

            for _ in range(5):
                await asyncio.gather(*(read_one_and_drop() for _ in range(20)))
                gc.collect()
                await asyncio.sleep(0.05)
            health = health_pb2_grpc.HealthStub(ch)
            reply = await health.Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        gc.collect()
        await asyncio.sleep(0.1)
    finally:
        loop.set_exception_handler(previous)
    assert not [c for c in reported if "Context" in str(c.get("exception", c.get("message")))]
    assert not reported, reported[:3]
