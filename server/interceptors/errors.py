"""Error mapping: DomainError → status code + google.rpc details; anything else → INTERNAL.

STATUS_CODES is the one table from a kind of domain error (server/core/errors.py) to its
gRPC status code; a subclass maps as its nearest listed ancestor (IdempotencyConflict is
an AlreadyExists). Auth and rate limiting sit outside this interceptor, so they abort
through `abort_with_error` here too: every error the server produces is built by
`to_rpc_status`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import grpc
import grpc.aio
import structlog
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.core.errors import (
    ERROR_DOMAIN,
    Aborted,
    AlreadyExists,
    DataLoss,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unimplemented,
)
from server.interceptors._wrap import AroundInterceptor, Context

log = structlog.get_logger("smartstart.errors")

INTERNAL_MESSAGE = "internal error"

STATUS_CODES: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Aborted: grpc.StatusCode.ABORTED,
    DataLoss: grpc.StatusCode.DATA_LOSS,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
}


def status_code(err: DomainError) -> grpc.StatusCode:
    """The status code of `err`'s kind: its class or nearest ancestor in STATUS_CODES."""
    for kind in type(err).__mro__:
        code = STATUS_CODES.get(kind)
        if code is not None:
            return code
    return grpc.StatusCode.UNKNOWN


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = math.floor(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))


# Messages and details may quote the caller's input (a field path, an id): each piece is cut
# to a bounded length so an error's trailers stay far below what clients accept (8 KiB by
# default), whatever the request held.
MAX_MESSAGE_CHARS = 512
MAX_DETAIL_CHARS = 256
MAX_METADATA_ENTRIES = 16
MAX_VIOLATIONS = 16


def bounded(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_rpc_status(err: DomainError) -> status_pb2.Status:
    """The google.rpc.Status of a domain error: its code, message and details, bounded."""
    metadata = {
        bounded(k, 64): bounded(v) for k, v in list(err.metadata.items())[:MAX_METADATA_ENTRIES]
    }
    details: list[object] = [
        error_details_pb2.ErrorInfo(
            reason=err.effective_reason.value, domain=ERROR_DOMAIN, metadata=metadata
        )
    ]
    if err.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=bounded(v.field), description=bounded(v.description)
                    )
                    for v in err.violations[:MAX_VIOLATIONS]
                ]
            )
        )
    if err.retry_after_s is not None:
        details.append(error_details_pb2.RetryInfo(retry_delay=_duration(err.retry_after_s)))
    status = status_pb2.Status(
        code=status_code(err).value[0], message=bounded(err.message, MAX_MESSAGE_CHARS)
    )
    for detail in details:
        status.details.add().Pack(detail)
    return status


def to_grpc_status(err: DomainError) -> grpc.Status:
    result: grpc.Status = rpc_status.to_status(to_rpc_status(err))
    return result


async def abort_with_error(context: Context, err: DomainError) -> NoReturn:
    await context.abort_with_status(to_grpc_status(err))
    raise AssertionError("abort_with_status returned")  # pragma: no cover - it always raises


async def abort_internal(context: Context) -> NoReturn:
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE)
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


class ErrorInterceptor(AroundInterceptor):
    @asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:
            raise  # the servicer chose a status itself
        except DomainError as err:
            await abort_with_error(context, err)
        except NotImplementedError:
            # Generated base servicers raise this for RPCs nobody has implemented yet.
            await abort_with_error(context, Unimplemented(f"{method} is not implemented"))
        except Exception:
            log.exception("unhandled exception in servicer")
            await abort_internal(context)
