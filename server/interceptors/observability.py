"""Request id, log context, one access log line and Prometheus metrics per call.

Outermost interceptor: it sees the final status of every call, including auth and rate-limit
refusals, and binds the log context everything below it logs with.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import grpc.aio
import structlog
from prometheus_client import Counter, Gauge, Histogram

from server.interceptors._wrap import AroundInterceptor, Context, metadata_value
from server.interceptors.context import CallState, reset_call, set_call

log = structlog.get_logger("smartstart.access")

REQUEST_ID_KEY = "x-request-id"
# Accept a caller's id only if it is short and plain, so it cannot forge log fields.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

RPC_TOTAL = Counter(
    "smartstart_rpc_total", "RPCs served, by method and status code", ["method", "code"]
)
RPC_SECONDS = Histogram(
    "smartstart_rpc_duration_seconds",
    "RPC latency in seconds, by method",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Summed over worker processes that are alive (a dead worker's calls are not in flight).
RPC_IN_FLIGHT = Gauge(
    "smartstart_rpc_in_flight",
    "RPCs being served now, by method",
    ["method"],
    multiprocess_mode="livesum",
)

_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _status_code(context: Context) -> grpc.StatusCode:
    code: object = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpc.aio reports the raw integer code
        return _CODES_BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.OK


def request_id_of(context: Context) -> str:
    given = metadata_value(context, REQUEST_ID_KEY)
    if given and _REQUEST_ID_RE.match(given):
        return given
    return uuid.uuid4().hex


class _MethodMetrics:
    """One method's metric children, looked up once (labels() takes a lock and hashes)."""

    __slots__ = ("counters", "ended", "method", "observe", "started")

    def __init__(self, method: str) -> None:
        self.method = method
        self.observe = RPC_SECONDS.labels(method).observe
        in_flight = RPC_IN_FLIGHT.labels(method)
        self.started, self.ended = in_flight.inc, in_flight.dec
        self.counters: dict[grpc.StatusCode, Callable[[], None]] = {}

    def count(self, code: grpc.StatusCode) -> None:
        inc = self.counters.get(code)
        if inc is None:
            inc = self.counters[code] = RPC_TOTAL.labels(self.method, code.name).inc
        inc()


class ObservabilityInterceptor(AroundInterceptor):
    def __init__(self) -> None:
        self._metrics: dict[str, _MethodMetrics] = {}

    @asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        started = time.perf_counter()
        metrics = self._metrics.get(method)
        if metrics is None:
            metrics = self._metrics[method] = _MethodMetrics(method)
        state = CallState(request_id=request_id_of(context), method=method, peer=context.peer())
        # Headers go out now, so callers get the id even when the call fails.
        await context.send_initial_metadata(((REQUEST_ID_KEY, state.request_id),))
        # Log lines carry the call's context from this state (server/logging.py _add_call).
        token = set_call(state)
        code = grpc.StatusCode.OK
        metrics.started()
        try:
            yield
            code = _status_code(context)
        except grpc.aio.AbortError:
            code = _status_code(context)
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except BaseException:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.ended()
            metrics.count(code)
            metrics.observe(elapsed)
            log.info("rpc", code=code.name, duration_ms=round(elapsed * 1000, 3))
            reset_call(token)
