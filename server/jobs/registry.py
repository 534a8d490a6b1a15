"""Job definitions: what runs, when (cron, UTC), how a run is keyed, and what a body gets.

The jobs package is the machinery (locks, records, timers). Which jobs exist and which use
case each calls is wired in the composition root (server/services.py), so a job body calls
the same service methods as the RPCs; the body receives those services in its JobContext.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, TypeVar

from server.core.context import RequestContext

S = TypeVar("S")


class Trigger(StrEnum):
    SCHEDULE = "SCHEDULE"
    MANUAL = "MANUAL"


class Outcome(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True, slots=True)
class JobContext(Generic[S]):
    """What a job body gets: the services, why and when it runs, and a system caller."""

    services: S
    job: str
    trigger: Trigger
    run_key: str | None
    now: datetime  # UTC time the run started
    request: RequestContext  # principal `system`; request id names the run (for audit events)


Counts = dict[str, int]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One job_runs row as the rest of the server sees it."""

    run_id: uuid.UUID
    job: str
    trigger: Trigger
    triggered_by: str | None
    run_key: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: Outcome
    counts: Mapping[str, int]
    error: str | None
    instance: str


@dataclass(frozen=True, slots=True)
class JobStatus:
    name: str
    cron: str
    description: str
    implemented: bool  # False: no body yet, so never scheduled and not runnable
    scheduler_running: bool  # this process's timers run
    next_run: datetime | None
    last_run: RunRecord | None
    last_success: datetime | None  # end of the latest SUCCEEDED run
    running: bool  # some replica holds the job's lock now
    interval: timedelta  # between two scheduled starts (the next two)
    since: datetime  # when this process's scheduler was made (stands in for a first success)
    now: datetime


JobBody = Callable[[JobContext[S]], Awaitable[Counts]]
RunKey = Callable[[datetime], str]


@dataclass(frozen=True, slots=True)
class Job(Generic[S]):
    name: str
    cron: str  # five-field cron expression, evaluated in UTC
    # None: the job has no body yet. It is not scheduled, a manual run is refused, and job
    # health says so (rather than recording runs that did nothing).
    body: JobBody[S] | None
    description: str = ""
    # A run with a key succeeds at most once per key (the daily job: its UTC date), so a
    # second replica, a restart or a manual trigger on the same day does not repeat it.
    run_key: RunKey | None = None


def utc_date_key(now: datetime) -> str:
    return now.date().isoformat()
