"""A small typed asyncio client for SmartStart Core.

`Client` owns one grpc.aio channel and exposes the generated async stubs of every service
(`profile`, `wallet`, `conversion`, `document`, `audit`, `ops`). On every call it adds the
bearer token (a fixed string, or a provider called per call so tokens can refresh), an
`x-request-id` (unless the call already has one) and a default deadline; the channel's gRPC
service config retries UNAVAILABLE. Retries ride out a dropped or recycled connection, not
a server that is down for longer than ~1 s: pass `wait_for_ready=True` to a call to wait
(within its deadline) for a server that is still starting.

Usage::

    from smartstart.profile.v1 import profile_service_pb2 as profile_pb
    from smartstart.sdk import ApiError, Client, new_request_id

    async with Client("localhost:50051", token=tokens.current, raise_api_errors=True) as c:
        try:
            user = await c.profile.RegisterUser(
                profile_pb.RegisterUserRequest(
                    request_id=new_request_id(),  # keep it: retry with the same message
                    external_id="ada",
                    email="ada@example.com",
                    display_name="Ada",
                )
            )
        except ApiError as e:
            if e.reason == "IDEMPOTENCY_CONFLICT":
                ...
            print(e.code, e.field_violations, e.retry_after_s, e.request_id)

        # The server's x-request-id (for support tickets) is in the call's initial metadata:
        call = c.profile.GetProfile(profile_pb.GetProfileRequest(user_id=user.user_id))
        profile = await call
        request_id = dict(await call.initial_metadata())["x-request-id"]

    # Without raise_api_errors, calls raise grpc.aio.AioRpcError; api_error(err) decodes it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2

from smartstart.audit.v1 import audit_service_pb2_grpc as audit_grpc
from smartstart.conversion.v1 import conversion_service_pb2_grpc as conversion_grpc
from smartstart.document.v1 import document_service_pb2_grpc as document_grpc
from smartstart.ops.v1 import ops_service_pb2_grpc as ops_grpc
from smartstart.profile.v1 import profile_service_pb2_grpc as profile_grpc
from smartstart.wallet.v1 import wallet_service_pb2_grpc as wallet_grpc

__all__ = [
    "SERVICES",
    "ApiError",
    "Client",
    "TokenSource",
    "api_error",
    "channel_options",
    "new_request_id",
    "service_config",
]

REQUEST_ID_KEY = "x-request-id"
AUTHORIZATION_KEY = "authorization"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

# Every service the client talks to; the service config's method config names them all.
SERVICES: tuple[str, ...] = (
    "smartstart.profile.v1.ProfileService",
    "smartstart.wallet.v1.WalletService",
    "smartstart.conversion.v1.ConversionService",
    "smartstart.document.v1.DocumentService",
    "smartstart.audit.v1.AuditService",
    "smartstart.ops.v1.OpsService",
)

# Matches the server's default SMARTSTART_MAX_MESSAGE_BYTES.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

TokenSource = str | Callable[[], str]
"""A bearer token, or a function returning the current one (called once per call)."""

_TReq = TypeVar("_TReq")
_TResp = TypeVar("_TResp")


def new_request_id() -> str:
    """A fresh id (uuid4 hex) for `request_id` idempotency keys and `x-request-id`."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """A failed call, decoded from its status and `google.rpc` details.

    `reason`/`domain`/`metadata` come from ErrorInfo (reason is UPPER_SNAKE, e.g.
    `IDEMPOTENCY_CONFLICT`, `KYC_REQUIRED`; `None` when the error has none, as for transport
    errors); `field_violations` from BadRequest as `(field, description)` pairs;
    `retry_after_s` from RetryInfo (sent with RESOURCE_EXHAUSTED); `request_id` is the
    server's `x-request-id` for the call, when it got that far. `rpc_error` is the original.

    Example::

        except ApiError as e:
            if e.code == grpc.StatusCode.INVALID_ARGUMENT:
                for field, why in e.field_violations:
                    ...
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str = "",
        *,
        reason: str | None = None,
        domain: str | None = None,
        metadata: dict[str, str] | None = None,
        field_violations: list[tuple[str, str]] | None = None,
        retry_after_s: float | None = None,
        request_id: str | None = None,
        rpc_error: grpc.aio.AioRpcError | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[tuple[str, str]] = list(field_violations or [])
        self.retry_after_s = retry_after_s
        self.request_id = request_id
        self.rpc_error = rpc_error
        text = f"{code.name}: {message}" if message else code.name
        super().__init__(f"{text} [{reason}]" if reason else text)

    @classmethod
    def from_rpc_error(cls, err: grpc.aio.AioRpcError) -> ApiError:
        """Decode `err` (its code, details and `grpc-status-details-bin` trailer)."""
        trailers = _pairs(err.trailing_metadata())
        status = _status_details(trailers)
        reason: str | None = None
        domain: str | None = None
        metadata: dict[str, str] = {}
        violations: list[tuple[str, str]] = []
        retry_after_s: float | None = None
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = str(info.reason) or None
                domain = str(info.domain) or None
                metadata = {str(k): str(v) for k, v in info.metadata.items()}
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend((str(v.field), str(v.description)) for v in bad.field_violations)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                delay = retry.retry_delay
                retry_after_s = int(delay.seconds) + int(delay.nanos) / 1e9
        message = err.details() or (str(status.message) if status is not None else "")
        return cls(
            err.code(),
            message,
            reason=reason,
            domain=domain,
            metadata=metadata,
            field_violations=violations,
            retry_after_s=retry_after_s,
            request_id=_first(_pairs(err.initial_metadata()), REQUEST_ID_KEY)
            or _first(trailers, REQUEST_ID_KEY),
            rpc_error=err,
        )


def api_error(err: grpc.aio.AioRpcError) -> ApiError:
    """`ApiError.from_rpc_error(err)`: for callers that keep `raise_api_errors=False`."""
    return ApiError.from_rpc_error(err)


def _pairs(metadata: Iterable[tuple[str, str | bytes]] | None) -> list[tuple[str, str | bytes]]:
    return [(str(k), v) for k, v in metadata or ()]


def _first(pairs: Sequence[tuple[str, str | bytes]], key: str) -> str | None:
    for k, v in pairs:
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None


def _status_details(pairs: Sequence[tuple[str, str | bytes]]) -> Any:
    """The google.rpc.Status of the trailer, or None (absent or unparsable)."""
    for k, v in pairs:
        if k == STATUS_DETAILS_KEY and isinstance(v, bytes):
            try:
                return status_pb2.Status.FromString(v)
            except Exception:  # a malformed trailer must not hide the real error
                return None
    return None


# --------------------------------------------------------------------------- channel config


def service_config(*, retry: bool = True) -> dict[str, Any]:
    """The gRPC service config `Client` installs on its channel.

    - `retryPolicy` (when `retry`): up to 4 attempts, backoff random(0, 0.1 s · 2ⁿ) capped at
      2 s, for UNAVAILABLE only. UNAVAILABLE is what the transport reports when a replica is
      unreachable, draining (SIGTERM) or recycling the connection (`max_connection_age`):
      the one code that means "try again elsewhere/later", and the server never sends it
      itself. Retrying is safe because gRPC resends the *same* request message (and the
      same metadata, so the same `x-request-id`): creates and money-moving calls carry an
      idempotency key in the message (`request_id`, or `event_id`/`task_id`), so a replay of
      one that did commit returns the first answer instead of applying it twice; updates set
      values; reads change nothing. (A replayed Delete/Revoke whose first attempt committed
      may answer NOT_FOUND.) Not retried: DEADLINE_EXCEEDED (the caller's budget is spent),
      RESOURCE_EXHAUSTED (rate limited: honour `ApiError.retry_after_s` instead of
      hammering), ABORTED/INTERNAL/UNKNOWN (outcome unknown or a bug), and every business
      error (deterministic). gRPC never retries once the server has sent response headers,
      nor a client-streaming upload that outgrew its 256 KiB replay buffer.
    - `retryThrottling`: retries stop while most recent calls fail, so an outage does not
      become a retry storm (gRPC's token bucket: 10 tokens, +0.1 per success).
    - No `timeout`: grpc Python starts the service-config deadline from a stale clock, so
      calls fail DEADLINE_EXCEEDED early or at once (grpc/grpc#34547, #40633; reproduced on
      grpcio 1.85). `Client` sets its default deadline per call instead (see `timeout_s`).
    """
    method_config: dict[str, Any] = {"name": [{"service": name} for name in SERVICES]}
    config: dict[str, Any] = {"methodConfig": [method_config]}
    if retry:
        method_config["retryPolicy"] = {
            "maxAttempts": 4,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
        config["retryThrottling"] = {"maxTokens": 10, "tokenRatio": 0.1}
    return config


def channel_options(*, retry: bool = True) -> list[tuple[str, Any]]:
    """Channel arguments of `Client`: service config, keepalive and message limits.

    The server recycles connections after `max_connection_age` (GOAWAY, then a grace for
    calls in flight) and tolerates client pings every 10 s or more. The client pings every
    30 s, also when idle, so a dead peer (a vanished replica, a dropped NAT/LB mapping) is
    noticed within ~40 s instead of at the next call; after a GOAWAY the channel re-resolves
    and reconnects by itself, and a call that races the GOAWAY fails UNAVAILABLE, which the
    retry policy replays.
    """
    return [
        ("grpc.service_config", json.dumps(service_config(retry=retry))),
        ("grpc.service_config_disable_resolution", 1),  # this config is authoritative
        ("grpc.enable_retries", 1 if retry else 0),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.primary_user_agent", "smartstart-sdk-python/0.1"),
    ]


# --------------------------------------------------------------------------- interceptor


async def _translate_errors(responses: AsyncIterable[_TResp]) -> AsyncIterator[_TResp]:
    try:
        async for response in responses:
            yield response
    except grpc.aio.AioRpcError as err:
        raise ApiError.from_rpc_error(err) from err


class _CallMetadata:
    """Adds `authorization` and `x-request-id` to a call's metadata, and the default deadline.

    A call's own `authorization` or `x-request-id` metadata wins over the client's. With
    `raise_api_errors`, unary and response-streaming calls raise ApiError; client-streaming
    calls (UploadDocument) keep raising AioRpcError: decode it with `api_error(err)`.
    """

    def __init__(
        self, token: TokenSource | None, *, timeout_s: float, raise_api_errors: bool
    ) -> None:
        self._token = token
        self._timeout_s = timeout_s
        self._raise_api_errors = raise_api_errors

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata()
        for key, value in details.metadata or ():
            metadata.add(key, value)
        if self._token is not None and metadata.get(AUTHORIZATION_KEY) is None:
            token = self._token() if callable(self._token) else self._token
            if token:
                metadata.add(AUTHORIZATION_KEY, f"Bearer {token}")
        if metadata.get(REQUEST_ID_KEY) is None:
            metadata.add(REQUEST_ID_KEY, new_request_id())
        return grpc.aio.ClientCallDetails(
            details.method,
            self._timeout_s if details.timeout is None else details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
        )


# grpc.aio files an interceptor under the *first* of the four interfaces it implements, so
# each call shape needs its own interceptor object.


class _UnaryUnary(_CallMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _TReq], Awaitable[grpc.aio.UnaryUnaryCall[_TReq, _TResp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _TReq,
    ) -> _TResp | grpc.aio.UnaryUnaryCall[_TReq, _TResp]:
        call = await continuation(self._details(client_call_details), request)
        if not self._raise_api_errors:
            return call
        try:
            await call
        except grpc.aio.AioRpcError as err:
            raise ApiError.from_rpc_error(err) from err
        # The finished call, not its response: callers can still read its metadata.
        return call


class _UnaryStream(_CallMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _TReq], Awaitable[grpc.aio.UnaryStreamCall[_TReq, _TResp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _TReq,
    ) -> AsyncIterator[_TResp] | grpc.aio.UnaryStreamCall[_TReq, _TResp]:
        call = await continuation(self._details(client_call_details), request)
        if not self._raise_api_errors:
            return call
        # grpc.aio keeps `call` behind the iterator for metadata, code and cancel().
        return _translate_errors(call)


class _StreamUnary(_CallMetadata, grpc.aio.StreamUnaryClientInterceptor):
    # No ApiError translation: awaiting the response here would deadlock `call.write()`
    # callers (grpc.aio feeds their writes only once the interceptors are done).
    async def intercept_stream_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, AsyncIterable[_TReq] | Iterable[_TReq]],
            Awaitable[grpc.aio.StreamUnaryCall[_TReq, _TResp]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[_TReq] | Iterable[_TReq],
    ) -> _TResp | grpc.aio.StreamUnaryCall[_TReq, _TResp]:
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStream(_CallMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, AsyncIterable[_TReq] | Iterable[_TReq]],
            Awaitable[grpc.aio.StreamStreamCall[_TReq, _TResp]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[_TReq] | Iterable[_TReq],
    ) -> AsyncIterator[_TResp] | grpc.aio.StreamStreamCall[_TReq, _TResp]:
        call = await continuation(self._details(client_call_details), request_iterator)
        if not self._raise_api_errors:
            return call
        return _translate_errors(call)


# --------------------------------------------------------------------------- client


class Client:
    """One channel to SmartStart Core and the typed async stubs of its services.

    Args:
        target: `host:port` or any gRPC target (`dns:///core.internal:50051`).
        token: bearer token, or a function returning the current token (called per call,
            so it can refresh); `None` for anonymous calls (PUBLIC RPCs only).
        tls: use TLS (implied by `root_certificates`); system roots unless given.
        root_certificates: PEM CA bundle that signed the server certificate.
        retry: retry UNAVAILABLE (see `service_config` for why that is safe).
        timeout_s: deadline of every call that has no `timeout=` of its own (it covers all
            retry attempts of the call).
        raise_api_errors: raise `ApiError` instead of `grpc.aio.AioRpcError` (unary and
            response-streaming calls).
        options: extra gRPC channel arguments, appended to `channel_options(...)`.

    Example::

        async with Client("localhost:50051", token=system_token) as client:
            wallet = await client.wallet.GetMyWallet(wallet_pb.GetMyWalletRequest())
    """

    def __init__(
        self,
        target: str,
        *,
        token: TokenSource | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        retry: bool = True,
        timeout_s: float = 10.0,
        raise_api_errors: bool = False,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.target = target
        interceptors: list[grpc.aio.ClientInterceptor] = [
            kind(token, timeout_s=timeout_s, raise_api_errors=raise_api_errors)
            for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)
        ]
        opts = [*channel_options(retry=retry), *options]
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self.channel = grpc.aio.secure_channel(
                target, credentials, options=opts, interceptors=interceptors
            )
        else:
            self.channel = grpc.aio.insecure_channel(
                target, options=opts, interceptors=interceptors
            )
        self.profile: profile_grpc.ProfileServiceAsyncStub = profile_grpc.ProfileServiceStub(
            self.channel
        )
        self.wallet: wallet_grpc.WalletServiceAsyncStub = wallet_grpc.WalletServiceStub(
            self.channel
        )
        self.conversion: conversion_grpc.ConversionServiceAsyncStub = (
            conversion_grpc.ConversionServiceStub(self.channel)
        )
        self.document: document_grpc.DocumentServiceAsyncStub = document_grpc.DocumentServiceStub(
            self.channel
        )
        self.audit: audit_grpc.AuditServiceAsyncStub = audit_grpc.AuditServiceStub(self.channel)
        self.ops: ops_grpc.OpsServiceAsyncStub = ops_grpc.OpsServiceStub(self.channel)

    async def close(self, grace: float | None = None) -> None:
        """Close the channel; calls in flight get `grace` seconds (None: cancelled now)."""
        await self.channel.close(grace)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
