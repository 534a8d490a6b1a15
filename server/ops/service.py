"""OpsService use cases: job health and runs (over the Scheduler the composition root made),
business settings (typed, validated, etag-guarded, audited) and the system status.

Access is the contract's role list, enforced by the interceptor; nothing here is per-user.
A settings change invalidates this process's parameter cache at once; every other process
and replica reloads within its SMARTSTART_SETTINGS_TTL_S (server/core/params_cache.py).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.core import idempotency
from server.core.clock import Clock, system_clock
from server.core.context import RequestContext
from server.core.errors import Aborted, InvalidArgument, NotFound
from server.core.pagination import Page, PageTokens, page_size
from server.core.params_cache import Parameters
from server.core.settings_defaults import SETTINGS_DEFAULTS
from server.core.validation import request_key, text
from server.db.session import Database
from server.jobs import queries as job_queries
from server.jobs.registry import Outcome, RunRecord
from server.jobs.runner import INSTANCE, ManualRun
from server.jobs.scheduler import DEFAULT_LOCK_WAIT_S, Scheduler
from server.ops import metrics, queries, settings
from server.ops.domain import (
    MAX_DESCRIPTION_LENGTH,
    MAX_KEY_LENGTH,
    MAX_REASON_LENGTH,
    ComponentView,
    IntegrityView,
    JobHealth,
    SettingView,
    SystemStatusView,
    job_health,
    setting_view,
)

RPC = "smartstart.ops.v1.OpsService"
WORM_JOB = "worm_maintenance"  # the job that verifies the chains (server/services.py)
EDITABLE = ("value", "description")


T = TypeVar("T")
# A manual run stops waiting for a run in progress this long before the call's deadline, so
# the caller hears why (FAILED_PRECONDITION) rather than only DEADLINE_EXCEEDED.
DEADLINE_MARGIN_S = 0.25


class _Replayed(Exception):
    """A concurrent call with the same request id recorded its run first."""


def _version() -> str:
    try:
        return metadata.version("smartstart-core")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed
        return "unknown"


class OpsService:
    def __init__(
        self,
        database: Database,
        params: Parameters,
        page_tokens: PageTokens,
        scheduler: Scheduler[Any],
        *,
        blob_dir: Path,
        clock: Clock = system_clock,
    ) -> None:
        self._db = database
        self._params = params
        self._tokens = page_tokens
        self._scheduler = scheduler
        self._blob_dir = blob_dir
        self._clock = clock
        self.gauges_refreshed = asyncio.Event()  # set by the first refresh_gauges

    # --- jobs -------------------------------------------------------------------------------------

    async def _health(self) -> list[JobHealth]:
        statuses = sorted(await self._scheduler.status(), key=lambda s: s.name)
        return [job_health(s) for s in statuses]

    async def list_jobs(
        self, ctx: RequestContext, *, page_size_requested: int, page_token: str
    ) -> Page[JobHealth]:
        size = page_size(page_size_requested)
        keyset = self._tokens.decode(page_token, "jobs")
        after = str(keyset[0]) if keyset else ""
        jobs = [j for j in await self._health() if j.status.name > after]
        more = len(jobs) > size
        jobs = jobs[:size]
        token = self._tokens.encode([jobs[-1].status.name], "jobs") if more else ""
        return Page(jobs, token)

    async def get_job_health(self, ctx: RequestContext, name: str) -> JobHealth:
        name = self._scheduler.job(_job_name(name)).name
        return next(j for j in await self._health() if j.status.name == name)

    async def run_job(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        name: str,
        wait: bool,
        time_left_s: float | None,
    ) -> RunRecord:
        """Start (or, with `wait`, run to its end) a manual run; see the contract."""
        request_key(request_id)
        name = self._scheduler.runnable(_job_name(name)).name
        scope = idempotency.scope_for(f"{RPC}/RunJob", ctx.actor_id)
        async with self._db.transaction() as session:
            stored = await idempotency.lookup(session, scope, request_id, fingerprint)
        if stored is not None:
            return await self._run(uuid.UUID(stored["run_id"]))

        async def record(session: AsyncSession, run_id: uuid.UUID, outcome: Outcome) -> None:
            if await idempotency.claim(session, scope, request_id, fingerprint) is not None:
                raise _Replayed
            await append(
                session,
                ctx,
                AuditEvent(
                    action="job.run_started",
                    scope="job",
                    ref_id=name,
                    details={"run_id": str(run_id), "outcome": outcome.value, "wait": wait},
                ),
            )
            await idempotency.complete(session, scope, request_id, {"run_id": str(run_id)})

        started: asyncio.Future[uuid.UUID] = asyncio.get_running_loop().create_future()

        def on_start(run_id: uuid.UUID) -> None:
            if not started.done():
                started.set_result(run_id)

        manual = ManualRun(
            lock_wait_s=DEFAULT_LOCK_WAIT_S
            if time_left_s is None
            else max(0.01, time_left_s - DEADLINE_MARGIN_S),
            record=record,
            on_start=on_start,
        )
        task = self._scheduler.start_manual(name, triggered_by=ctx.actor_id, manual=manual)
        # Cancelled (the deadline passed): the task goes on, bounded by its lock wait.
        either: set[asyncio.Future[Any]] = {started, task}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            if wait:
                await asyncio.shield(task)
            return await self._run(started.result())
        try:
            result = task.result()  # SKIPPED, or the run in progress did not end in time
        except _Replayed:
            return await self.run_job(
                ctx,
                request_id=request_id,
                fingerprint=fingerprint,
                name=name,
                wait=wait,
                time_left_s=time_left_s,
            )
        assert result.run_id is not None  # a manual run is always recorded
        return await self._run(result.run_id)

    async def _run(self, run_id: uuid.UUID) -> RunRecord:
        found = await job_queries.load_run(self._db, run_id)
        if found is None:  # pragma: no cover - runs are never deleted
            raise NotFound("job run not found", metadata={"run_id": str(run_id)})
        return found

    async def list_job_runs(
        self,
        ctx: RequestContext,
        *,
        job_name: str,
        outcome: Outcome | None,
        start: datetime | None,
        end: datetime | None,
        page_size_requested: int,
        page_token: str,
    ) -> Page[RunRecord]:
        job = text(job_name, "job_name", max_length=MAX_KEY_LENGTH) or None
        if start is not None and end is not None and start > end:
            raise InvalidArgument.field("start_time", "must not be after end_time")
        size = page_size(page_size_requested)
        filters = {"job": job, "outcome": outcome, "start": start, "end": end}
        keyset = self._tokens.decode(page_token, filters)
        after = (datetime.fromisoformat(keyset[0]), uuid.UUID(keyset[1])) if keyset else None
        runs = await job_queries.list_runs(
            self._db, job=job, outcome=outcome, start=start, end=end, after=after, limit=size + 1
        )
        more = len(runs) > size
        runs = runs[:size]
        last = runs[-1] if runs else None
        token = (
            self._tokens.encode([last.started_at.isoformat(), str(last.run_id)], filters)
            if more and last
            else ""
        )
        return Page(runs, token)

    # --- settings ---------------------------------------------------------------------------------

    async def list_settings(
        self, ctx: RequestContext, *, key_prefix: str, page_size_requested: int, page_token: str
    ) -> Page[SettingView]:
        prefix = text(key_prefix, "key_prefix", max_length=MAX_KEY_LENGTH)
        size = page_size(page_size_requested)
        filters = {"key_prefix": prefix}
        keyset = self._tokens.decode(page_token, filters)
        after = str(keyset[0]) if keyset else ""
        keys = sorted(k for k in SETTINGS_DEFAULTS if k.startswith(prefix) and k > after)
        async with self._db.transaction() as session:
            rows = await queries.all_settings(session)
        views = [setting_view(k, SETTINGS_DEFAULTS[k], rows.get(k)) for k in keys[: size + 1]]
        more = len(views) > size
        views = views[:size]
        token = self._tokens.encode([views[-1].key], filters) if more else ""
        return Page(views, token)

    async def get_setting(self, ctx: RequestContext, key: str) -> SettingView:
        settings.setting_default(key)  # NOT_FOUND without a round trip
        async with self._db.transaction() as session:
            return await settings.current(session, key)

    async def update_setting(
        self,
        ctx: RequestContext,
        *,
        key: str,
        etag: str,
        changes: Mapping[str, Any],
        reason: str,
    ) -> SettingView:
        """Change a setting's value and/or description under its row lock: checked by type
        and range, refused over a stale etag, audited with old and new value."""
        if not changes:
            raise InvalidArgument.field("update_mask", "must name at least one field")
        unknown = [path for path in changes if path not in EDITABLE]
        if unknown:
            raise InvalidArgument.field("update_mask", f"`{unknown[0]}` cannot be updated")
        settings.setting_default(key)  # NOT_FOUND before any other check
        reason = text(reason, "reason", max_length=MAX_REASON_LENGTH, multiline=True)
        description = (
            text(
                changes["description"],
                "description",
                max_length=MAX_DESCRIPTION_LENGTH,
                multiline=True,
            )
            if "description" in changes
            else None
        )

        async def tx(session: AsyncSession) -> SettingView:
            locked = await settings.lock(session, key)
            if etag and etag != locked.view.etag:
                raise Aborted(
                    "the setting changed since it was read: read it again",
                    metadata={"key": key, "etag": locked.view.etag},
                )
            return await settings.write(
                session,
                ctx,
                locked,
                reason=reason,
                value=changes.get("value", settings.UNCHANGED),
                description=description,
            )

        view = await self._db.run(tx)
        self._params.invalidate()
        return view

    # --- system status ----------------------------------------------------------------------------

    async def system_status(self, ctx: RequestContext) -> SystemStatusView:
        database = await self._database_status()
        jobs: list[JobHealth] = []
        integrity = IntegrityView(None, None, 0, None)
        if database.healthy:
            jobs = await self._health()
            integrity = await self._integrity(jobs)
        status = SystemStatusView(
            checked_at=self._clock(),
            instance=INSTANCE,
            version=_version(),
            database=database,
            blob_store=await asyncio.to_thread(_blob_store_status, self._blob_dir),
            jobs=jobs,
            integrity=integrity,
        )
        metrics.record_integrity(integrity)
        return status

    async def refresh_gauges(self) -> None:
        """Set the integrity gauges from the database (the server calls this periodically)."""
        metrics.record_integrity(await self._integrity(await self._health()))
        self.gauges_refreshed.set()

    async def _database_status(self) -> ComponentView:
        try:
            await queries.ping(self._db)
        except Exception as exc:  # the status reports it instead of failing
            return ComponentView(False, f"query failed: {type(exc).__name__}")
        return ComponentView(True, "query answered")

    async def _integrity(self, jobs: list[JobHealth]) -> IntegrityView:
        checkpoint_at, open_incidents, oldest = await queries.integrity_summary(self._db)
        worm = next((j.status.last_run for j in jobs if j.status.name == WORM_JOB), None)
        return IntegrityView(worm, checkpoint_at, open_incidents, oldest)


def _job_name(name: str) -> str:
    return text(name, "name", min_length=1, max_length=MAX_KEY_LENGTH)


def _blob_store_status(blob_dir: Path) -> ComponentView:
    """The blob folder exists and is writable, or will be created under a writable parent
    at the first upload."""
    folder = blob_dir.resolve()
    if folder.exists() and not folder.is_dir():
        return ComponentView(False, f"{folder} is not a folder")
    if folder.is_dir():
        if os.access(folder, os.W_OK | os.X_OK):
            return ComponentView(True, f"{folder} is writable")
        return ComponentView(False, f"{folder} is not writable")
    parent = next((p for p in folder.parents if p.exists()), None)
    if parent is not None and parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return ComponentView(True, f"{folder} will be created at the first upload")
    return ComponentView(False, f"{folder} does not exist and cannot be created")
