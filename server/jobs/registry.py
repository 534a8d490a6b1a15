"""Job definitions: what runs, when (cron, UTC), and how a run is keyed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from server.context import RequestContext

if TYPE_CHECKING:
    from server.deps import Deps


class Trigger(StrEnum):
    SCHEDULE = "SCHEDULE"
    MANUAL = "MANUAL"


class Outcome(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job body gets: the shared deps, why and when it runs, and a system caller."""

    deps: Deps
    job: str
    trigger: Trigger
    run_key: str | None
    now: datetime  # UTC time the run started
    request: RequestContext  # principal `system`; request id names the run (for audit events)


Counts = dict[str, int]
JobBody = Callable[[JobContext], Awaitable[Counts]]
RunKey = Callable[[datetime], str]


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    cron: str  # five-field cron expression, evaluated in UTC
    body: JobBody
    description: str = ""
    # A run with a key succeeds at most once per key (the daily job: its UTC date), so a
    # second replica, a restart or a manual trigger on the same day does not repeat it.
    run_key: RunKey | None = None


def utc_date_key(now: datetime) -> str:
    return now.date().isoformat()
