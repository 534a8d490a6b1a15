"""The server's sense of "now": one clock, injected, so tests can move time (a job across a
quarter or thirty days) through the same code paths the API uses.

Business time (validation of future skew, device compliance, job runs, window states) reads
the injected clock; record timestamps written by the database (created_at) stay wall time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)
