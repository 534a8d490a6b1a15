"""The Python SDK (`smartstart.sdk`) against the real server, and its retry policy against a
scripted stand-in server (deterministic: it fails exactly the attempts a test tells it to)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from smartstart.document.v1 import document_service_pb2 as doc_pb
from smartstart.profile.v1 import profile_service_pb2 as pb
from smartstart.sdk import (
    SERVICES,
    ApiError,
    Client,
    api_error,
    channel_options,
    new_request_id,
    service_config,
)
from sqlalchemy import text

from server.app import RunningServer
from server.db.session import Database
from tests.fixtures_server import MintToken, ServerFactory

SYSTEM = str(uuid.UUID(int=1))
PROFILE_SERVICE = "smartstart.profile.v1.ProfileService"
DOCUMENT_SERVICE = "smartstart.document.v1.DocumentService"


def target(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


def register_request(external_id: str | None = None, **fields: str) -> pb.RegisterUserRequest:
    ext = external_id or f"ext-{uuid.uuid4().hex[:10]}"
    return pb.RegisterUserRequest(
        request_id=fields.get("request_id", new_request_id()),
        external_id=ext,
        email=fields.get("email", f"{ext}@example.com"),
        display_name=fields.get("display_name", "Ada Lovelace"),
    )


@pytest.fixture
def system_token(mint_token: MintToken) -> str:
    return mint_token(SYSTEM, roles=("system",))


# --------------------------------------------------------------------------- real server


async def test_register_with_system_token_then_get_profile_anonymously(
    grpc_server: RunningServer, system_token: str, db: Database
) -> None:
    async with Client(target(grpc_server), token=system_token) as client:
        user = await client.profile.RegisterUser(register_request("ext-sdk-ada"))
    assert uuid.UUID(user.user_id) and user.display_name == "Ada Lovelace"

    async with Client(target(grpc_server)) as anonymous:
        profile = await anonymous.profile.GetProfile(pb.GetProfileRequest(user_id=user.user_id))
        assert (profile.user_id, profile.level) == (user.user_id, 1)
        # Without a token an AUTHENTICATED RPC is refused.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await anonymous.profile.GetUser(pb.GetUserRequest(user_id=user.user_id))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    async with db.transaction() as session:
        users = (await session.execute(text("SELECT count(*) FROM users"))).scalar_one()
    assert users == 1


async def test_token_provider_is_called_per_call_so_tokens_can_refresh(
    grpc_server: RunningServer, system_token: str, mint_token: MintToken
) -> None:
    calls: list[int] = []
    # First an expired token, then the fresh one: the provider's refresh takes effect at once.
    tokens = [mint_token(SYSTEM, roles=("system",), ttl=-3600)]

    def provider() -> str:
        calls.append(1)
        return tokens[-1]

    async with Client(target(grpc_server), token=provider, raise_api_errors=True) as client:
        with pytest.raises(ApiError) as err:
            await client.profile.RegisterUser(register_request())
        assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.reason == "TOKEN_EXPIRED"

        tokens.append(system_token)
        user = await client.profile.RegisterUser(register_request())
        for _ in range(3):
            got = await client.profile.GetUser(pb.GetUserRequest(user_id=user.user_id))
            assert got.user_id == user.user_id
    assert len(calls) == 5


async def test_request_id_is_sent_and_echoed(grpc_server: RunningServer) -> None:
    async with Client(target(grpc_server)) as client:
        request = pb.GetProfileRequest(user_id=str(uuid.uuid4()))

        call = client.profile.GetProfile(request, metadata=(("x-request-id", "caller-id-1"),))
        with pytest.raises(grpc.aio.AioRpcError):  # unknown user: NOT_FOUND
            await call
        assert dict(await call.initial_metadata())["x-request-id"] == "caller-id-1"

        seen = set()
        for _ in range(2):
            call = client.profile.GetProfile(request)
            with pytest.raises(grpc.aio.AioRpcError):
                await call
            echoed = dict(await call.initial_metadata())["x-request-id"]
            assert isinstance(echoed, str) and re.fullmatch(r"[0-9a-f]{32}", echoed)
            seen.add(echoed)
        assert len(seen) == 2  # a new id per call


async def test_reused_request_id_raises_api_error_idempotency_conflict(
    grpc_server: RunningServer, system_token: str
) -> None:
    key = new_request_id()
    async with Client(target(grpc_server), token=system_token, raise_api_errors=True) as client:
        first = await client.profile.RegisterUser(register_request("ext-k1", request_id=key))
        # The same message again is a safe retry: the first answer.
        again = await client.profile.RegisterUser(register_request("ext-k1", request_id=key))
        assert again.user_id == first.user_id

        call = client.profile.RegisterUser(register_request("ext-k2", request_id=key))
        with pytest.raises(ApiError) as err:
            await call
    e = err.value
    assert e.code == grpc.StatusCode.ALREADY_EXISTS
    assert e.reason == "IDEMPOTENCY_CONFLICT"
    assert e.domain == "smartstart.core"
    assert e.request_id is not None and re.fullmatch(r"[0-9a-f]{32}", e.request_id)
    assert isinstance(e.rpc_error, grpc.aio.AioRpcError)
    assert isinstance(e.__cause__, grpc.aio.AioRpcError)
    assert "ALREADY_EXISTS" in str(e) and "IDEMPOTENCY_CONFLICT" in str(e)


async def test_invalid_argument_has_field_violations(
    grpc_server: RunningServer, system_token: str
) -> None:
    async with Client(target(grpc_server), token=system_token, raise_api_errors=True) as client:
        with pytest.raises(ApiError) as err:
            await client.profile.RegisterUser(register_request(email="not-an-email"))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == "INVALID_ARGUMENT"
    assert [f for f, _ in err.value.field_violations] == ["email"]
    assert all(description for _, description in err.value.field_violations)


async def test_without_raise_api_errors_api_error_decodes_the_rpc_error(
    grpc_server: RunningServer, system_token: str
) -> None:
    async with Client(target(grpc_server), token=system_token) as client:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.profile.RegisterUser(register_request(display_name="   "))
    decoded = api_error(err.value)
    assert decoded.code == grpc.StatusCode.INVALID_ARGUMENT
    assert decoded.field_violations[0][0] == "display_name"
    assert decoded.retry_after_s is None


async def test_rate_limited_error_carries_retry_after(server_factory: ServerFactory) -> None:
    server = await server_factory(rate_limit_anonymous=1)
    async with Client(target(server), raise_api_errors=True) as client:
        request = pb.GetProfileRequest(user_id=str(uuid.uuid4()))
        with pytest.raises(ApiError) as first:
            await client.profile.GetProfile(request)
        assert first.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(ApiError) as limited:
            await client.profile.GetProfile(request)
    assert limited.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limited.value.reason == "RATE_LIMITED"
    assert limited.value.retry_after_s is not None and limited.value.retry_after_s > 0


# --------------------------------------------------------------------------- scripted server


@dataclass
class Script:
    """What the stand-in server answers: `fail_codes[i]` for attempt i, then success."""

    fail_codes: list[grpc.StatusCode] = field(default_factory=list)
    delay_s: float = 0.0
    attempts: list[tuple[bytes, dict[str, str | bytes], float | None]] = field(default_factory=list)
    stream_metadata: list[dict[str, str | bytes]] = field(default_factory=list)


# gRPC keeps retry-throttle tokens per target for the whole process: a scripted server must
# not reuse the port (target) of an earlier one whose failures spent tokens.
_USED_PORTS: set[int] = set()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Script, str]]:
    """A bare grpc.aio server implementing ProfileService.GetProfile (scripted failures)
    and DocumentService.DownloadDocument (one chunk, then NOT_FOUND with ErrorInfo)."""
    script = Script()

    async def get_profile(
        request: pb.GetProfileRequest,
        context: grpc.aio.ServicerContext[pb.GetProfileRequest, pb.Profile],
    ) -> pb.Profile:
        attempt = len(script.attempts)
        script.attempts.append(
            (
                request.SerializeToString(),
                dict(context.invocation_metadata() or ()),
                context.time_remaining(),
            )
        )
        if script.delay_s:
            await asyncio.sleep(script.delay_s)
        if attempt < len(script.fail_codes):
            # No initial metadata before the abort: a trailers-only answer is retryable.
            await context.abort(script.fail_codes[attempt], f"scripted failure {attempt}")
        return pb.Profile(user_id=request.user_id, level=7)

    async def download(
        request: doc_pb.DownloadDocumentRequest,
        context: grpc.aio.ServicerContext[
            doc_pb.DownloadDocumentRequest, doc_pb.DownloadDocumentResponse
        ],
    ) -> AsyncIterator[doc_pb.DownloadDocumentResponse]:
        script.stream_metadata.append(dict(context.invocation_metadata() or ()))
        yield doc_pb.DownloadDocumentResponse(chunk=b"abc")
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.ErrorInfo(
                reason="NOT_FOUND", domain="smartstart.core", metadata={"id": request.document_id}
            )
        )
        status = status_pb2.Status(code=code_pb2.NOT_FOUND, message="gone", details=[detail])
        await context.abort_with_status(rpc_status.to_status(status))

    async def upload(
        requests: AsyncIterator[doc_pb.UploadDocumentRequest],
        context: grpc.aio.ServicerContext[doc_pb.UploadDocumentRequest, doc_pb.Document],
    ) -> doc_pb.Document:
        script.stream_metadata.append(dict(context.invocation_metadata() or ()))
        size = sum([len(r.chunk) async for r in requests])
        return doc_pb.Document(size_bytes=size)

    handlers = (
        grpc.method_handlers_generic_handler(
            PROFILE_SERVICE,
            {
                "GetProfile": grpc.unary_unary_rpc_method_handler(
                    get_profile,
                    request_deserializer=pb.GetProfileRequest.FromString,
                    response_serializer=pb.Profile.SerializeToString,
                )
            },
        ),
        grpc.method_handlers_generic_handler(
            DOCUMENT_SERVICE,
            {
                "DownloadDocument": grpc.unary_stream_rpc_method_handler(
                    download,
                    request_deserializer=doc_pb.DownloadDocumentRequest.FromString,
                    response_serializer=doc_pb.DownloadDocumentResponse.SerializeToString,
                ),
                "UploadDocument": grpc.stream_unary_rpc_method_handler(
                    upload,
                    request_deserializer=doc_pb.UploadDocumentRequest.FromString,
                    response_serializer=doc_pb.Document.SerializeToString,
                ),
            },
        ),
    )
    discarded: list[grpc.aio.Server] = []
    while True:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(handlers)
        port = server.add_insecure_port("127.0.0.1:0")
        if port not in _USED_PORTS:
            break
        discarded.append(server)  # keeps the port bound until a fresh one is found
    for old in discarded:
        await old.stop(None)
    _USED_PORTS.add(port)
    await server.start()
    try:
        yield script, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_unavailable_is_retried_with_the_same_message_and_metadata(
    scripted: tuple[Script, str],
) -> None:
    script, addr = scripted
    script.fail_codes = [grpc.StatusCode.UNAVAILABLE] * 3
    async with Client(addr, token="tok-1") as client:
        profile = await client.profile.GetProfile(pb.GetProfileRequest(user_id="u-1"))
    assert profile.level == 7
    assert len(script.attempts) == 4  # 3 failures + the success: maxAttempts 4
    messages = {message for message, _, _ in script.attempts}
    request_ids = {md["x-request-id"] for _, md, _ in script.attempts}
    authorizations = {md["authorization"] for _, md, _ in script.attempts}
    assert len(messages) == 1 and len(request_ids) == 1
    assert authorizations == {"Bearer tok-1"}


async def test_retries_stop_after_four_attempts(scripted: tuple[Script, str]) -> None:
    script, addr = scripted
    script.fail_codes = [grpc.StatusCode.UNAVAILABLE] * 10
    async with Client(addr, raise_api_errors=True) as client:
        with pytest.raises(ApiError) as err:
            await client.profile.GetProfile(pb.GetProfileRequest(user_id="u-1"))
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert err.value.reason is None  # no ErrorInfo: a transport-level error
    assert len(script.attempts) == 4


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ALREADY_EXISTS,
    ],
)
async def test_other_codes_are_not_retried(
    scripted: tuple[Script, str], code: grpc.StatusCode
) -> None:
    script, addr = scripted
    script.fail_codes = [code]
    async with Client(addr) as client:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.profile.GetProfile(pb.GetProfileRequest(user_id="u-1"))
    assert err.value.code() == code
    assert len(script.attempts) == 1


async def test_retry_false_does_not_retry(scripted: tuple[Script, str]) -> None:
    script, addr = scripted
    script.fail_codes = [grpc.StatusCode.UNAVAILABLE]
    async with Client(addr, retry=False) as client:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.profile.GetProfile(pb.GetProfileRequest(user_id="u-1"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(script.attempts) == 1


async def test_wait_for_ready_rides_out_a_server_that_starts_late() -> None:
    """Retries alone do not cover a server that is down for a while (gRPC waits ~1 s before
    reconnecting, longer than 4 attempts take); `wait_for_ready=True` does, within the
    deadline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    late = grpc.aio.server()
    late.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                PROFILE_SERVICE,
                {
                    "GetProfile": grpc.unary_unary_rpc_method_handler(
                        _late_profile,
                        request_deserializer=pb.GetProfileRequest.FromString,
                        response_serializer=pb.Profile.SerializeToString,
                    )
                },
            ),
        )
    )

    async def start_later() -> None:
        await asyncio.sleep(0.3)
        late.add_insecure_port(f"127.0.0.1:{port}")
        await late.start()

    starter = asyncio.create_task(start_later())
    try:
        async with Client(f"127.0.0.1:{port}", timeout_s=5) as client:
            profile = await client.profile.GetProfile(
                pb.GetProfileRequest(user_id="u"), wait_for_ready=True
            )
        assert profile.level == 42
    finally:
        await starter
        await late.stop(0)


async def _late_profile(
    request: pb.GetProfileRequest,
    context: grpc.aio.ServicerContext[pb.GetProfileRequest, pb.Profile],
) -> pb.Profile:
    return pb.Profile(user_id=request.user_id, level=42)


async def test_default_deadline_applies_to_calls_without_a_timeout(
    scripted: tuple[Script, str],
) -> None:
    script, addr = scripted
    script.delay_s = 2.0
    async with Client(addr, timeout_s=0.3) as client:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.profile.GetProfile(pb.GetProfileRequest(user_id="u-1"))
        elapsed = time.monotonic() - started
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 1.5
    remaining = script.attempts[0][2]
    assert remaining is not None and 0 < remaining <= 0.35  # sent to the server too

    # A call's own timeout wins, longer or shorter.
    script.attempts.clear()
    script.delay_s = 0.5
    async with Client(addr, timeout_s=0.3) as client:
        profile = await client.profile.GetProfile(pb.GetProfileRequest(user_id="u"), timeout=5)
    assert profile.level == 7
    remaining = script.attempts[0][2]
    assert remaining is not None and 4 < remaining <= 5.05


async def test_stream_errors_become_api_errors_and_keep_call_metadata(
    scripted: tuple[Script, str],
) -> None:
    _, addr = scripted
    async with Client(addr, raise_api_errors=True) as client:
        call = client.document.DownloadDocument(doc_pb.DownloadDocumentRequest(document_id="d-1"))
        chunks: list[bytes] = []

        async def read_all() -> None:
            async for message in call:
                chunks.append(message.chunk)

        with pytest.raises(ApiError) as err:
            await read_all()
        assert chunks == [b"abc"]
        assert await call.code() == grpc.StatusCode.NOT_FOUND
    e = err.value
    assert (e.code, e.message, e.reason, e.domain) == (
        grpc.StatusCode.NOT_FOUND,
        "gone",
        "NOT_FOUND",
        "smartstart.core",
    )
    assert e.metadata == {"id": "d-1"}


async def test_streaming_calls_carry_token_and_request_id(
    scripted: tuple[Script, str],
) -> None:
    script, addr = scripted
    async with Client(addr, token="tok-2") as client:
        call = client.document.DownloadDocument(doc_pb.DownloadDocumentRequest(document_id="d"))
        with pytest.raises(grpc.aio.AioRpcError):  # raise_api_errors off: the raw error
            async for _ in call:
                pass
        chunks = [doc_pb.UploadDocumentRequest(chunk=b"x" * n) for n in (3, 4)]
        document = await client.document.UploadDocument(iter(chunks))
        assert document.size_bytes == 7

        writer = client.document.UploadDocument()  # the write() style
        await writer.write(doc_pb.UploadDocumentRequest(chunk=b"yy"))
        await writer.done_writing()
        assert (await writer).size_bytes == 2
    assert len(script.stream_metadata) == 3
    for md in script.stream_metadata:
        assert md["authorization"] == "Bearer tok-2"
        assert re.fullmatch(r"[0-9a-f]{32}", str(md["x-request-id"]))


def test_service_config_retries_only_unavailable_with_backoff() -> None:
    options = dict(channel_options(retry=True))
    config = json.loads(options["grpc.service_config"])
    assert config == service_config(retry=True)
    (method,) = config["methodConfig"]
    assert {n["service"] for n in method["name"]} == set(SERVICES)
    assert "timeout" not in method  # grpc/grpc#34547: set per call by the interceptor
    assert method["retryPolicy"] == {
        "maxAttempts": 4,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    assert options["grpc.enable_retries"] == 1
    assert options["grpc.keepalive_time_ms"] >= 10_000  # the server's min ping interval
    no_retry = service_config(retry=False)
    assert "retryPolicy" not in no_retry["methodConfig"][0]


def test_api_error_decodes_retry_info() -> None:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=5 * 10**8))
    )
    status = status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED, message="slow down", details=[detail]
    )
    err = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        initial_metadata=grpc.aio.Metadata(("x-request-id", "rid-1")),
        trailing_metadata=grpc.aio.Metadata(
            ("grpc-status-details-bin", status.SerializeToString())
        ),
        details="slow down",
    )
    decoded = ApiError.from_rpc_error(err)
    assert decoded.retry_after_s == 2.5
    assert decoded.request_id == "rid-1"
    assert (decoded.reason, decoded.field_violations, decoded.metadata) == (None, [], {})


def test_the_sdk_is_its_own_installed_typed_package() -> None:
    """`make` installs clients/python as the `smartstart-client` distribution; the server
    and these tests import the stubs and the SDK from it."""
    from importlib import metadata
    from pathlib import Path

    import smartstart.sdk

    dist = metadata.distribution("smartstart-client")
    assert dist.metadata["Name"] == "smartstart-client"
    requires = " ".join(dist.requires or [])
    assert "grpcio" in requires and "protobuf" in requires
    package = Path(smartstart.sdk.__file__).parent
    assert (package / "py.typed").is_file()
    assert "smartstart-client" in (metadata.requires("smartstart-core") or [])
