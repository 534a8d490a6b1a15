"""Authentication and the access policy, including a walk over every SmartStart RPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.app import RunningServer
from server.core.context import KNOWN_ROLES
from server.core.errors import Reason
from server.interceptors.policy import Level, method_path, policy_of
from tests.fixtures_server import MintToken, bearer, error_info

# A unary AUTHENTICATED RPC, called with an empty request, to probe the auth layer.
GET_MY_PROFILE = "/smartstart.profile.v1.ProfileService/GetMyProfile"
# A PUBLIC RPC.
GET_PROFILE = "/smartstart.profile.v1.ProfileService/GetProfile"


def smartstart_methods(server: RunningServer) -> list[MethodDescriptor]:
    pool = descriptor_pool.Default()
    return [
        method for name in server.service_names for method in pool.FindServiceByName(name).methods
    ]


async def _one(request: Any) -> AsyncIterator[Any]:
    yield request


async def call(
    channel: grpc.aio.Channel, method: MethodDescriptor, metadata: Any = ()
) -> grpc.StatusCode:
    """Call `method` with an empty request (of the right shape); the status code it ends with."""
    request = message_factory.GetMessageClass(method.input_type)()
    kwargs: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": lambda b: b,
    }
    path = method_path(method)
    try:
        if method.client_streaming and method.server_streaming:
            stream = channel.stream_stream(path, **kwargs)(_one(request), metadata=metadata)
            async for _ in stream:
                pass
        elif method.client_streaming:
            await channel.stream_unary(path, **kwargs)(_one(request), metadata=metadata)
        elif method.server_streaming:
            async for _ in channel.unary_stream(path, **kwargs)(request, metadata=metadata):
                pass
        else:
            await channel.unary_unary(path, **kwargs)(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def call_path(
    channel: grpc.aio.Channel, path: str, token: str | None = None
) -> grpc.aio.AioRpcError | None:
    service, name = path.lstrip("/").split("/")
    method = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    request = message_factory.GetMessageClass(method.input_type)()
    try:
        await channel.unary_unary(
            path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=None
        )(request, metadata=bearer(token) if token else ())
    except grpc.aio.AioRpcError as err:
        return err
    return None


async def test_no_token_is_unauthenticated(channel: grpc.aio.Channel) -> None:
    err = await call_path(channel, GET_MY_PROFILE)
    assert err is not None
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    info = error_info(err)
    assert info is not None
    assert info.reason == Reason.UNAUTHENTICATED
    assert info.domain == "smartstart.core"


async def test_expired_token(channel: grpc.aio.Channel, mint_token: MintToken) -> None:
    err = await call_path(channel, GET_MY_PROFILE, mint_token("u1", ttl=-3600))
    assert err is not None
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    info = error_info(err)
    assert info is not None
    assert info.reason == Reason.TOKEN_EXPIRED


async def test_wrong_signature(
    channel: grpc.aio.Channel, mint_token: MintToken, foreign_key: Any
) -> None:
    err = await call_path(channel, GET_MY_PROFILE, mint_token("u1", key=foreign_key))
    assert err is not None
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    info = error_info(err)
    assert info is not None
    assert info.reason == Reason.UNAUTHENTICATED


async def test_garbage_token_and_scheme(channel: grpc.aio.Channel) -> None:
    err = await call_path(channel, GET_MY_PROFILE, "not-a-jwt")
    assert err is not None
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    path = GET_MY_PROFILE
    service, name = path.lstrip("/").split("/")
    method = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    code = await call(channel, method, (("authorization", "Basic dXNlcjpwYXNz"),))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_missing_role_is_permission_denied(
    channel: grpc.aio.Channel, grpc_server: RunningServer, mint_token: MintToken
) -> None:
    roles_rpcs = [m for m in smartstart_methods(grpc_server) if policy_of(m).level is Level.ROLES]
    assert roles_rpcs, "expected at least one role-restricted RPC"
    method = roles_rpcs[0]
    lacking = KNOWN_ROLES - policy_of(method).roles
    err = await call_path(channel, method_path(method), mint_token("u1", roles=lacking))
    assert err is not None
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(err)
    assert info is not None
    assert info.reason == Reason.PERMISSION_DENIED


async def test_public_rpc_works_anonymously(channel: grpc.aio.Channel) -> None:
    err = await call_path(channel, GET_PROFILE)
    # Past auth: the servicer answers (UNIMPLEMENTED until the profile service lands).
    assert err is None or err.code() not in {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_public_rpc_rejects_an_invalid_token(
    channel: grpc.aio.Channel, mint_token: MintToken, foreign_key: Any
) -> None:
    err = await call_path(channel, GET_PROFILE, mint_token("u1", key=foreign_key))
    assert err is not None
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_unknown_roles_are_dropped(
    channel: grpc.aio.Channel, grpc_server: RunningServer, mint_token: MintToken
) -> None:
    admin_only = next(
        m
        for m in smartstart_methods(grpc_server)
        if policy_of(m).level is Level.ROLES and policy_of(m).roles == {"admin"}
    )
    err = await call_path(channel, method_path(admin_only), mint_token("u1", ["superuser"]))
    assert err is not None
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.slow
async def test_every_rpc_is_policed(
    channel: grpc.aio.Channel, grpc_server: RunningServer, mint_token: MintToken
) -> None:
    methods = smartstart_methods(grpc_server)
    services = {m.containing_service.full_name for m in methods}
    # The walk must cover the whole contract, not just what happened to be imported.
    assert {
        "smartstart.profile.v1.ProfileService",
        "smartstart.ops.v1.OpsService",
        "smartstart.audit.v1.AuditService",
    } <= services
    all_roles = mint_token("walker", roles=sorted(KNOWN_ROLES))
    refused = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
    problems: list[str] = []
    for method in methods:
        path = method_path(method)
        policy = policy_of(method)
        if policy.level is Level.DENY:
            problems.append(f"{path}: no access policy")
            continue
        anonymous = await call(channel, method)
        if policy.level is Level.PUBLIC:
            if anonymous in refused:
                problems.append(f"{path}: PUBLIC but anonymous call got {anonymous.name}")
        elif anonymous != grpc.StatusCode.UNAUTHENTICATED:
            problems.append(f"{path}: anonymous call got {anonymous.name}")
        if policy.level is Level.ROLES:
            lacking = mint_token("walker", roles=sorted(KNOWN_ROLES - policy.roles))
            code = await call(channel, method, bearer(lacking))
            if code != grpc.StatusCode.PERMISSION_DENIED:
                problems.append(f"{path}: caller without {set(policy.roles)} got {code.name}")
        code = await call(channel, method, bearer(all_roles))
        if code in refused:
            problems.append(f"{path}: caller with every role got {code.name}")
    assert not problems, "\n".join(problems)
