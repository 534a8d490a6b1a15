"""Every RPC the server registers, fuzzed from its descriptor with hostile and valid-looking
values, raw undecodable bytes and oversized messages, as an anonymous caller, a user and a
caller holding every role. No answer may be INTERNAL, UNKNOWN or DATA_LOSS, no call may hang,
error trailers stay small, and the server stays SERVING and logs no error.

RPCs added later are fuzzed with no extra work: the cases come from the descriptors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings

from server.registry import generated_services
from tests.fuzz.conftest import CAMPAIGN, EXAMPLES, MAX_MESSAGE_BYTES, TALLY, FuzzServer
from tests.fuzz.strategies import message, methods_of, raw_bytes

SERVICES = [descriptor_pool.Default().FindServiceByName(s.full_name) for s in generated_services()]
METHODS: dict[str, MethodDescriptor] = dict(methods_of(SERVICES))
CALLERS = ("anonymous", "user", "all_roles")
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
CALL_TIMEOUT_S = 15.0  # far above any answer; reaching it means the call hung
MAX_TRAILER_BYTES = 4096  # what an error may send back (clients accept 8 KiB by default)

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not CAMPAIGN,  # CI runs the same cases every time; a campaign draws new ones
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)


def _identity(data: bytes) -> bytes:
    return data


def call(fuzz: FuzzServer, path: str, payload: bytes, caller: str, kind: str) -> None:
    """Send `payload` (the request's bytes) to `path` as `caller` and check the answer."""
    method = METHODS[path]
    channel = fuzz.channel
    options: dict[str, Any] = {"request_serializer": _identity, "response_deserializer": _identity}
    metadata = fuzz.metadata[caller]
    code = grpc.StatusCode.OK
    try:
        if method.client_streaming:
            stream = (
                channel.stream_stream(path, **options)
                if method.server_streaming
                else channel.stream_unary(path, **options)
            )
            answer = stream(iter([payload, payload]), metadata=metadata, timeout=CALL_TIMEOUT_S)
        else:
            unary = (
                channel.unary_stream(path, **options)
                if method.server_streaming
                else channel.unary_unary(path, **options)
            )
            answer = unary(payload, metadata=metadata, timeout=CALL_TIMEOUT_S)
        if method.server_streaming:
            for _ in answer:
                pass
    except grpc.RpcError as error:
        code = error.code()  # type: ignore[attr-defined]
        details = error.details() or ""  # type: ignore[attr-defined]
        trailers = error.trailing_metadata() or ()  # type: ignore[attr-defined]
        size = len(details.encode()) + sum(len(k) + len(v) for k, v in trailers)
        assert code not in FORBIDDEN, f"{path} as {caller}: {code.name} {details[:300]!r}"
        assert code is not grpc.StatusCode.DEADLINE_EXCEEDED, f"{path} as {caller}: hung"
        assert size <= MAX_TRAILER_BYTES, f"{path} as {caller}: {size} bytes of error trailers"
    TALLY.cases[kind] += 1
    TALLY.codes[code.name] += 1
    TALLY.rpcs.add(path)


def still_serving(fuzz: FuzzServer) -> None:
    health = health_pb2_grpc.HealthStub(fuzz.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_every_registered_rpc_is_fuzzed(fuzz: FuzzServer) -> None:
    """The cases are drawn for the methods the running server lists by reflection."""
    stub = reflection_pb2_grpc.ServerReflectionStub(fuzz.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    def requests() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        yield request

    (reply,) = list(stub.ServerReflectionInfo(requests(), timeout=CALL_TIMEOUT_S))
    listed = {
        s.name for s in reply.list_services_response.service if s.name.startswith("smartstart.")
    }
    assert listed == {s.full_name for s in SERVICES}
    assert len(METHODS) >= 101


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path", sorted(METHODS))
def test_hostile_messages(fuzz: FuzzServer, path: str, caller: str) -> None:
    strategy = message(METHODS[path].input_type, fuzz.pools)

    @FUZZ_SETTINGS
    @given(strategy)
    def run(request: Any) -> None:
        call(fuzz, path, request.SerializeToString(), caller, "messages")

    run()
    still_serving(fuzz)


@pytest.mark.parametrize("path", sorted(METHODS))
def test_undecodable_and_oversized_requests(fuzz: FuzzServer, path: str) -> None:
    @FUZZ_SETTINGS
    @given(raw_bytes())
    def run(payload: bytes) -> None:
        call(fuzz, path, payload, "all_roles", "raw bytes")

    run()
    # Larger than the server accepts: refused by the transport, as RESOURCE_EXHAUSTED.
    call(
        fuzz, path, b"\x0a" + b"\xff\xff\x7f" + b"x" * (MAX_MESSAGE_BYTES + 1), "user", "oversized"
    )
    still_serving(fuzz)
