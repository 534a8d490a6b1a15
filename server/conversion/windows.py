"""ConversionService use cases of windows: create (opening at once when due), change the
rate, read and list, finalize, the board's default rate, and the conversion_windows job.

Time moves a window SCHEDULED → OPEN → CLOSED (domain.window_status_at), the board moves
it CLOSED → FINALIZED. Every move is a conditional UPDATE from the status it was read in, so
a move happens once however many job runs, replicas or board calls race for it; each move
is audited in its own transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append, append_many
from server.conversion import queries, request_queries
from server.conversion.conversions import settle
from server.conversion.domain import (
    JOB_CREATOR,
    MAX_REASON_LENGTH,
    RPC,
    DefaultRateChange,
    DefaultRateView,
    Finalized,
    WindowStatus,
    WindowView,
    check_rate,
    invalid_state,
    opened_window,
    quarter_bounds,
    quarter_label,
    window_label,
    window_status_at,
)
from server.core import idempotency
from server.core.clock import Clock
from server.core.context import RequestContext
from server.core.errors import AlreadyExists, InvalidArgument
from server.core.pagination import Page, PageTokens, page_size, time_key
from server.core.params import BusinessParams
from server.core.params_cache import Parameters
from server.core.validation import parse_uuid, request_key, required_time, text
from server.db.session import Database
from server.jobs.registry import Counts, JobContext
from server.ops import settings
from server.ops.domain import SettingView
from server.wallet import queries as wallets

_log = logging.getLogger(__name__)

DEFAULT_RATE_KEY = "conversion.default_rate_bps"
_STATUSES = frozenset(WindowStatus)
_MOVED_BY_TIME = {WindowStatus.OPEN: "opened", WindowStatus.CLOSED: "closed"}


class WindowsJobIncomplete(Exception):
    """Some window transitions of a run failed; the run is recorded FAILED and the next one
    retries them (every transition is conditional, so redoing the rest is harmless)."""


def _window_event(window: WindowView, action: str, **details: Any) -> AuditEvent:
    return AuditEvent(
        action=f"conversion_window.{action}",
        scope="conversion_window",
        ref_id=str(window.id),
        details=details,
    )


def _created(window: WindowView) -> list[AuditEvent]:
    """The events of a new window: created, and opened when it opened at once."""
    events = [
        _window_event(
            window,
            "created",
            label=window.label,
            opens_at=window.opens_at.isoformat(),
            closes_at=window.closes_at.isoformat(),
            equity_rate_bps=window.equity_rate_bps,
            created_by=window.created_by,
        )
    ]
    if window.status is WindowStatus.OPEN:
        events.append(_window_event(window, "opened", **{"from": WindowStatus.SCHEDULED}))
    return events


def _default_rate(setting: SettingView) -> DefaultRateView:
    return DefaultRateView(
        equity_rate_bps=BusinessParams.decode(
            {DEFAULT_RATE_KEY: setting.value}
        ).conversion.default_rate_bps,
        updated_at=setting.updated_at,
        updated_by=setting.updated_by,
    )


class WindowCases:
    _db: Database
    _params: Parameters
    _tokens: PageTokens
    _clock: Clock

    async def create_window(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        label: str,
        opens_at: datetime | None,
        closes_at: datetime | None,
        rate_bps: int | None,
    ) -> WindowView:
        request_key(request_id)
        label = window_label(label)
        opens = required_time(opens_at, "opens_at")
        closes = required_time(closes_at, "closes_at")
        if rate_bps is None:
            rate_bps = (await self._params.current()).conversion.default_rate_bps
        check_rate(rate_bps)
        opens, status = opened_window(opens, closes, self._clock())
        scope = idempotency.scope_for(f"{RPC}/CreateWindow", ctx.actor_id)

        async def tx(session: AsyncSession) -> WindowView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await queries.load_window(session, uuid.UUID(stored["window_id"]))
            window = await queries.insert_window(
                session,
                label=label,
                opens_at=opens,
                closes_at=closes,
                rate_bps=rate_bps,
                status=status,
                created_by=ctx.actor_id or "",
            )
            if window is None:  # pragma: no cover - only a caller named like the job
                raise AlreadyExists("the job's window for this quarter exists")
            await append_many(session, ctx, _created(window))
            await idempotency.complete(session, scope, request_id, {"window_id": str(window.id)})
            return window

        return await self._db.run(tx)

    async def update_window_rate(
        self, ctx: RequestContext, *, window_id: str, rate_bps: int
    ) -> WindowView:
        target = parse_uuid(window_id, "window_id")
        check_rate(rate_bps)
        now = self._clock()

        async def tx(session: AsyncSession) -> WindowView:
            current = await queries.load_window(session, target)
            if current.equity_rate_bps == rate_bps:
                return current
            changed = await queries.set_window_rate(session, target, rate_bps, now)
            if changed is None:
                latest = await queries.load_window(session, target)
                status = window_status_at(latest.status, latest.opens_at, latest.closes_at, now)
                raise invalid_state("window", status)
            window, previous = changed
            await append(
                session,
                ctx,
                _window_event(window, "rate_changed", **{"from": previous, "to": rate_bps}),
            )
            return window

        return await self._db.run(tx)

    async def get_window(self, ctx: RequestContext, window_id: str) -> WindowView:
        target = parse_uuid(window_id, "window_id")
        async with self._db.transaction() as session:
            return await queries.load_window(session, target)

    async def list_windows(
        self,
        ctx: RequestContext,
        *,
        statuses: Sequence[str],
        page_size_requested: int,
        page_token: str,
    ) -> Page[WindowView]:
        if any(s not in _STATUSES for s in statuses):
            raise InvalidArgument.field("statuses", "must be known statuses, not UNSPECIFIED")
        wanted = sorted(set(statuses))
        size = page_size(page_size_requested)
        filters = {"statuses": wanted}
        keyset = self._tokens.decode(page_token, filters)
        before = (datetime.fromisoformat(keyset[0]), uuid.UUID(keyset[1])) if keyset else None
        async with self._db.transaction() as session:
            found = await queries.list_windows(
                session, statuses=wanted, before=before, limit=size + 1
            )
        return self._tokens.page(found, size, filters, lambda w: time_key(w.opens_at, w.id))

    async def active_windows(self, ctx: RequestContext) -> list[WindowView]:
        async with self._db.transaction() as session:
            return await queries.open_windows(session)

    async def finalize_window(
        self, ctx: RequestContext, *, request_id: str, fingerprint: str, window_id: str
    ) -> Finalized:
        """CLOSED → FINALIZED; every request still PENDING becomes EXPIRED and is unlocked,
        in one transaction (wallets locked first, in ascending id)."""
        request_key(request_id)
        target = parse_uuid(window_id, "window_id")
        scope = idempotency.scope_for(f"{RPC}/FinalizeWindow", ctx.actor_id)
        now = self._clock()

        async def tx(session: AsyncSession) -> Finalized:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                window = await queries.load_window(session, target)
                return Finalized(window, int(stored["expired_count"]), int(stored["buz_unlocked"]))
            current = await queries.load_window(session, target)
            if current.status is not WindowStatus.CLOSED:
                raise invalid_state("window", current.status)
            # No request can be made in a CLOSED window, so the owners read here are all
            # there will be (fewer, if some are decided meanwhile).
            states = await wallets.lock_wallets(
                session, await request_queries.pending_owners(session, target)
            )
            finalized = await queries.move_window(
                session,
                target,
                WindowStatus.CLOSED,
                WindowStatus.FINALIZED,
                finalized_at=now,
                finalized_by=ctx.actor_id,
            )
            if finalized is None:
                raise invalid_state("window", (await queries.load_window(session, target)).status)
            expired = await request_queries.expire_pending(session, target, now)
            released: dict[uuid.UUID, int] = defaultdict(int)
            events = [_window_event(finalized, "finalized", expired_count=len(expired))]
            for conversion in expired:
                wallet = states.get(conversion.user_id) or await wallets.lock_wallet(
                    session, conversion.user_id
                )
                entry = await settle(session, ctx, conversion, wallet)
                released[conversion.venture_id] += conversion.granted_bps
                events.append(
                    AuditEvent(
                        action="conversion.expired",
                        scope="conversion",
                        ref_id=str(conversion.id),
                        details={
                            "user_id": str(conversion.user_id),
                            "window_id": str(target),
                            "buz": conversion.buz_locked,
                            "ledger_seq": entry.seq,
                        },
                    )
                )
            await queries.release_pools(session, released)
            await append_many(session, ctx, events)
            result = Finalized(finalized, len(expired), sum(c.buz_locked for c in expired))
            await idempotency.complete(
                session,
                scope,
                request_id,
                {"expired_count": result.expired_count, "buz_unlocked": result.buz_unlocked},
            )
            return result

        return await self._db.run(tx)

    # --- the board's default rate -----------------------------------------------------------

    async def get_default_rate(self, ctx: RequestContext) -> DefaultRateView:
        async with self._db.transaction() as session:
            return _default_rate(await settings.current(session, DEFAULT_RATE_KEY))

    async def update_default_rate(
        self, ctx: RequestContext, *, rate_bps: int, reason: str
    ) -> DefaultRateChange:
        """The setting (through the one settings writer, server/ops/settings.py) and the
        job's unopened windows move together (setting row, then window rows, then audit
        heads); this replica's parameters see it at once."""
        check_rate(rate_bps)
        reason = text(reason, "reason", max_length=MAX_REASON_LENGTH)
        now = self._clock()

        async def tx(session: AsyncSession) -> DefaultRateChange:
            locked = await settings.lock(session, DEFAULT_RATE_KEY)
            before = _default_rate(locked.view)
            if before.equity_rate_bps == rate_bps:
                return DefaultRateChange(before, [])
            after = await settings.write(session, ctx, locked, value=rate_bps, reason=reason)
            moved = await queries.set_job_window_rates(session, rate_bps, now)
            await append_many(
                session,
                ctx,
                [
                    _window_event(
                        window,
                        "rate_changed",
                        **{"from": previous, "to": rate_bps},
                        reason=f"{DEFAULT_RATE_KEY} changed",
                    )
                    for window, previous in moved
                ],
            )
            return DefaultRateChange(_default_rate(after), [window for window, _ in moved])

        change = await self._db.run(tx)
        self._params.invalidate()
        return change

    # --- the conversion_windows job ---------------------------------------------------------

    async def run_windows_job(self, job: JobContext[Any]) -> Counts:
        """Move every window time has moved (one transaction each), then make sure the next
        calendar quarter has the job's SCHEDULED window at the default rate."""
        now = job.now
        counts = {"opened": 0, "closed": 0, "scheduled": 0, "failed": 0}
        async with self._db.transaction() as session:
            due = await queries.windows_due(session, now)
        for window in due:
            to = window_status_at(window.status, window.opens_at, window.closes_at, now)
            if to is window.status:
                continue

            async def move(
                session: AsyncSession, w: WindowView = window, t: WindowStatus = to
            ) -> bool:
                return await self._move_by_time(session, job.request, w, t, now)

            try:
                moved = await self._db.run(move)
            except Exception:
                _log.exception("window %s: %s → %s failed", window.id, window.status, to)
                counts["failed"] += 1
                continue
            counts[_MOVED_BY_TIME[to]] += int(moved)
        rate = (await self._params.current()).conversion.default_rate_bps
        opens, closes = quarter_bounds(now)

        async def schedule(session: AsyncSession) -> bool:
            window = await queries.insert_window(
                session,
                label=quarter_label(opens),
                opens_at=opens,
                closes_at=closes,
                rate_bps=rate,
                status=WindowStatus.SCHEDULED,
                created_by=JOB_CREATOR,
            )
            if window is not None:
                await append_many(session, job.request, _created(window))
            return window is not None

        counts["scheduled"] = int(await self._db.run(schedule))
        if counts["failed"]:
            raise WindowsJobIncomplete(
                f"{counts['failed']} window transitions failed (done: {counts});"
                " the next run retries them"
            )
        return counts

    @staticmethod
    async def _move_by_time(
        session: AsyncSession,
        ctx: RequestContext,
        window: WindowView,
        to: WindowStatus,
        now: datetime,
    ) -> bool:
        moved = await queries.move_window(session, window.id, window.status, to)
        if moved is not None:
            await append(
                session,
                ctx,
                _window_event(
                    moved, _MOVED_BY_TIME[to], at=now.isoformat(), **{"from": window.status}
                ),
            )
        return moved is not None
