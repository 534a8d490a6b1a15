"""Server runtime: health, reflection, request ids, error mapping, rate limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from smartstart.document.v1 import document_service_pb2 as doc_pb2
from smartstart.document.v1 import document_service_pb2_grpc as doc_grpc
from smartstart.profile.v1 import profile_service_pb2 as profile_pb2
from smartstart.profile.v1 import profile_service_pb2_grpc as profile_grpc

from server.app import RunningServer
from server.core.errors import FieldViolation, InvalidArgument, Reason, ResourceExhausted
from server.interceptors import current_context, to_rpc_status
from server.interceptors.errors import INTERNAL_MESSAGE
from server.services import Services
from tests.fixtures_server import MintToken, ServerFactory, bearer, error_info, rpc_status_of

PROFILE = "smartstart.profile.v1.ProfileService"
DOCUMENT = "smartstart.document.v1.DocumentService"


async def test_every_service_is_serving(
    channel: grpc.aio.Channel, grpc_server: RunningServer
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    assert len(grpc_server.service_names) >= 3
    for name in ["", *grpc_server.service_names]:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_reflection_lists_every_service(
    channel: grpc.aio.Channel, grpc_server: RunningServer
) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    listed: set[str] = set()
    async for reply in stub.ServerReflectionInfo(ask()):
        listed |= {s.name for s in reply.list_services_response.service}
    assert set(grpc_server.service_names) <= listed
    assert "grpc.health.v1.Health" in listed


async def test_request_id_is_echoed_or_made(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    call = stub.Check(health_pb2.HealthCheckRequest(), metadata=(("x-request-id", "req-42"),))
    await call
    assert ("x-request-id", "req-42") in tuple(await call.initial_metadata())
    call = stub.Check(health_pb2.HealthCheckRequest())
    await call
    made = dict(await call.initial_metadata())["x-request-id"]
    assert isinstance(made, str)
    assert len(made) == 32


def test_domain_error_maps_to_status_with_details() -> None:
    err = InvalidArgument(
        "bad input",
        reason=Reason.DAILY_CAP_REACHED,
        metadata={"cap": "2000"},
        violations=(FieldViolation("amount", "must be positive"),),
        retry_after_s=1.5,
    )
    status = to_rpc_status(err)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.message == "bad input"
    info, bad, retry = (
        error_details_pb2.ErrorInfo(),
        error_details_pb2.BadRequest(),
        error_details_pb2.RetryInfo(),
    )
    assert status.details[0].Unpack(info)
    assert status.details[1].Unpack(bad)
    assert status.details[2].Unpack(retry)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "DAILY_CAP_REACHED",
        "smartstart.core",
        {"cap": "2000"},
    )
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("amount", "must be positive")
    ]
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 500_000_000)


class _ProbeProfiles(profile_grpc.ProfileServiceServicer):  # type: ignore[misc]
    """GetProfile fails per user_id; GetMyProfile echoes the caller from current_context()."""

    async def GetProfile(self, request: Any, context: Any) -> Any:
        if request.user_id == "bad":
            raise InvalidArgument.field("user_id", "must be a UUID")
        raise RuntimeError("secret database password in here")

    async def GetMyProfile(self, request: Any, context: Any) -> Any:
        ctx = current_context()
        return profile_pb2.Profile(user_id=ctx.actor_id or "", display_name=ctx.request_id)


class _ProbeDocuments(doc_grpc.DocumentServiceServicer):  # type: ignore[misc]
    async def DownloadDocument(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield doc_pb2.DownloadDocumentResponse(chunk=b"first")
        raise ResourceExhausted("slow down", retry_after_s=2)


def _register_probes(server: grpc.aio.Server, services: Services) -> Sequence[str]:
    profile_grpc.add_ProfileServiceServicer_to_server(_ProbeProfiles(), server)
    doc_grpc.add_DocumentServiceServicer_to_server(_ProbeDocuments(), server)
    return [PROFILE, DOCUMENT]


async def test_errors_context_and_streams_through_a_servicer(
    server_factory: ServerFactory, mint_token: MintToken
) -> None:
    running = await server_factory(extra_registrars=[_register_probes])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        profiles = profile_grpc.ProfileServiceStub(ch)

        with pytest.raises(grpc.aio.AioRpcError) as bad_input:
            await profiles.GetProfile(profile_pb2.GetProfileRequest(user_id="bad"))
        assert bad_input.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(bad_input.value)
        assert info is not None
        assert info.reason == "INVALID_ARGUMENT"
        bad = error_details_pb2.BadRequest()
        assert rpc_status_of(bad_input.value).details[1].Unpack(bad)
        assert bad.field_violations[0].field == "user_id"

        with pytest.raises(grpc.aio.AioRpcError) as internal:
            await profiles.GetProfile(profile_pb2.GetProfileRequest(user_id="boom"))
        assert internal.value.code() == grpc.StatusCode.INTERNAL
        assert internal.value.details() == INTERNAL_MESSAGE

        me = await profiles.GetMyProfile(
            profile_pb2.GetMyProfileRequest(),
            metadata=(*bearer(mint_token("user-7")), ("x-request-id", "rid-1")),
        )
        assert (me.user_id, me.display_name) == ("user-7", "rid-1")

        docs = doc_grpc.DocumentServiceStub(ch)
        received: list[bytes] = []
        stream = docs.DownloadDocument(
            doc_pb2.DownloadDocumentRequest(), metadata=bearer(mint_token("user-7"))
        )

        async def drain() -> None:
            async for msg in stream:
                received.append(msg.chunk)

        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await drain()
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert received == [b"first"]
        retry = error_details_pb2.RetryInfo()
        assert rpc_status_of(limited.value).details[1].Unpack(retry)
        assert retry.retry_delay.seconds == 2


async def test_rate_limit(server_factory: ServerFactory, mint_token: MintToken) -> None:
    running = await server_factory(rate_limit_anonymous=3, rate_limit_authenticated=5)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        profiles = profile_grpc.ProfileServiceStub(ch)

        async def code_of(metadata: Any = ()) -> grpc.StatusCode:
            call = profiles.GetProfile(profile_pb2.GetProfileRequest(), metadata=metadata)
            try:
                await call
            except grpc.aio.AioRpcError as err:
                failure = err
            else:
                return grpc.StatusCode.OK
            if failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                info = error_info(failure)
                retry = error_details_pb2.RetryInfo()
                has_retry = any(d.Unpack(retry) for d in rpc_status_of(failure).details)
                assert info is not None
                assert info.reason == "RATE_LIMITED"
                assert has_retry
                assert retry.retry_delay.seconds + retry.retry_delay.nanos > 0
            return failure.code()

        anonymous = [await code_of() for _ in range(4)]
        assert grpc.StatusCode.RESOURCE_EXHAUSTED not in anonymous[:3]
        assert anonymous[3] == grpc.StatusCode.RESOURCE_EXHAUSTED

        # An authenticated caller has its own, larger budget.
        user = bearer(mint_token("rate-user"))
        authed = [await code_of(user) for _ in range(6)]
        assert grpc.StatusCode.RESOURCE_EXHAUSTED not in authed[:5]
        assert authed[5] == grpc.StatusCode.RESOURCE_EXHAUSTED

        # Health probes are never limited.
        health = health_pb2_grpc.HealthStub(ch)
        for _ in range(10):
            await health.Check(health_pb2.HealthCheckRequest())


def test_sliding_window_limiter() -> None:
    from server.interceptors.ratelimit import SlidingWindowLimiter, peer_host

    now = [1000.0]
    limiter = SlidingWindowLimiter(100, clock=lambda: now[0])
    assert [limiter.hit("a", 2) for _ in range(2)] == [None, None]
    retry = limiter.hit("a", 2)
    assert retry is not None
    assert 0 < retry <= 100
    assert limiter.hit("b", 2) is None  # callers are independent
    now[0] = 1150.0  # half of the previous window still overlaps: 2 * 0.5 = 1 counted
    assert limiter.hit("a", 2) is None
    assert limiter.hit("a", 2) is not None
    now[0] = 1400.0  # long idle: a fresh budget
    assert limiter.hit("a", 2) is None
    assert peer_host("ipv4:10.1.2.3:5555") == "ipv4:10.1.2.3"
    assert peer_host("ipv6:[::1]:5555") == "ipv6:[::1]"
