"""Per-replica rate limit per caller: the authenticated principal, else the peer address.

A sliding-window counter (this window's count plus the previous window's, weighted by how much
of it still overlaps) smooths the burst a fixed window allows at its boundary, in O(1) memory
per caller. Refused calls are not counted, so a caller that backs off recovers.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from server.core.errors import Reason, ResourceExhausted
from server.interceptors._wrap import AroundInterceptor, Context
from server.interceptors.context import current_call
from server.interceptors.policy import PUBLIC_SERVICES


@dataclass(slots=True)
class _Window:
    start: float
    count: int
    previous: int


class SlidingWindowLimiter:
    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = float(window_s)
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._last_sweep = clock()

    def hit(self, key: str, limit: int) -> float | None:
        """Count one call for `key`; None when allowed, else seconds to wait before retrying."""
        now = self._clock()
        self._sweep(now)
        w = self._windows.get(key)
        current_start = now - (now % self._window)
        if w is None:
            w = self._windows[key] = _Window(current_start, 0, 0)
        elif w.start != current_start:
            adjacent = current_start - w.start == self._window
            w.previous, w.count, w.start = (w.count if adjacent else 0), 0, current_start
        overlap = 1.0 - (now - current_start) / self._window
        if w.count + w.previous * overlap + 1 > limit:
            if w.count + 1 > limit or w.previous == 0:
                return max(current_start + self._window - now, 0.001)
            # Wait until enough of the previous window has slid out of the overlap.
            needed = (w.count + w.previous * overlap + 1 - limit) / w.previous
            return max(math.ceil(needed * self._window * 1000) / 1000, 0.001)
        w.count += 1
        return None

    def _sweep(self, now: float) -> None:
        # Forget callers idle for two windows, at most once per window.
        if now - self._last_sweep < self._window:
            return
        self._last_sweep = now
        horizon = now - 2 * self._window
        for key in [k for k, w in self._windows.items() if w.start < horizon]:
            del self._windows[key]


def peer_host(peer: str) -> str:
    """'ipv4:10.0.0.1:5123' → 'ipv4:10.0.0.1': the caller, not its ephemeral port."""
    if peer.startswith(("ipv4:", "ipv6:")):
        host, sep, port = peer.rpartition(":")
        if sep and port.isdigit():
            return host
    return peer


class RateLimitInterceptor(AroundInterceptor):
    def __init__(self, *, anonymous: int, authenticated: int, window_s: float) -> None:
        self._anonymous = anonymous
        self._authenticated = authenticated
        self._limiter = SlidingWindowLimiter(window_s)

    @asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        service = method.lstrip("/").split("/", 1)[0]
        state = current_call()
        if service not in PUBLIC_SERVICES:  # health probes and grpcurl discovery are free
            if state is not None and state.principal is not None:
                key, limit = f"user:{state.principal.user_id}", self._authenticated
            else:
                key, limit = f"peer:{peer_host(context.peer())}", self._anonymous
            retry_after = self._limiter.hit(key, limit)
            if retry_after is not None:
                raise ResourceExhausted(
                    "rate limit exceeded", reason=Reason.RATE_LIMITED, retry_after_s=retry_after
                )
        yield
