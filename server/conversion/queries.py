"""The conversion package's SQL for ventures, windows and the board's default rate
(requests, grants and the cap table: request_queries.py).

SQLAlchemy Core over the models. Every status change is a conditional UPDATE (`WHERE status
= <expected>`) whose RETURNING row says whether this transaction made it; the pool moves by
conditional UPDATEs on the venture row (`granted_bps + pending_bps + bp <= pool_bps`) whose
row count decides, with the venture's CHECKs as the last defence.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.conversion.domain import (
    JOB_CREATOR,
    VentureView,
    WindowStatus,
    WindowView,
)
from server.conversion.models import ConversionWindow, Venture
from server.core.errors import NotFound

# --- ventures -------------------------------------------------------------------------------


def _venture(row: Any) -> VentureView:
    return VentureView(
        id=row.id,
        name=row.name,
        description=row.description,
        pool_bps=int(row.pool_bps),
        granted_bps=int(row.granted_bps),
        pending_bps=int(row.pending_bps),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


_VENTURE = select(Venture.__table__)


async def insert_venture(
    session: AsyncSession, *, name: str, description: str, pool_bps: int
) -> VentureView | None:
    """The new venture, or None when the name is taken (in any case)."""
    row = (
        await session.execute(
            insert(Venture)
            .values(name=name, description=description, pool_bps=pool_bps)
            .on_conflict_do_nothing(index_elements=[func.lower(Venture.name)])
            .returning(*Venture.__table__.c)
        )
    ).first()
    return None if row is None else _venture(row)


async def venture_named(session: AsyncSession, name: str) -> uuid.UUID | None:
    found: uuid.UUID | None = (
        await session.execute(select(Venture.id).where(func.lower(Venture.name) == name.lower()))
    ).scalar()
    return found


async def load_venture(
    session: AsyncSession, venture_id: uuid.UUID, *, lock: bool = False
) -> VentureView:
    """The venture; `lock` holds its row FOR UPDATE to the end of the transaction."""
    query = _VENTURE.where(Venture.id == venture_id)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound("venture not found", metadata={"venture_id": str(venture_id)})
    return _venture(row)


async def update_venture(
    session: AsyncSession, venture_id: uuid.UUID, changes: Mapping[str, Any]
) -> VentureView | None:
    """Apply `changes` (name, description, pool_bps); None when a new pool would be below
    granted + pending (or the venture is unknown)."""
    statement = update(Venture).where(Venture.id == venture_id)
    if "pool_bps" in changes:
        statement = statement.where(
            Venture.granted_bps + Venture.pending_bps <= changes["pool_bps"]
        )
    row = (
        await session.execute(
            statement.values(**changes, updated_at=func.now()).returning(*Venture.__table__.c)
        )
    ).first()
    return None if row is None else _venture(row)


async def list_ventures(
    session: AsyncSession, *, after: tuple[str, uuid.UUID] | None, limit: int
) -> list[VentureView]:
    query = _VENTURE.order_by(Venture.name, Venture.id).limit(limit)
    if after is not None:
        query = query.where(tuple_(Venture.name, Venture.id) > tuple_(*after))
    return [_venture(row) for row in (await session.execute(query)).all()]


async def reserve_pool(session: AsyncSession, venture_id: uuid.UUID, bp: int) -> bool:
    """Reserve `bp` of the pool for a PENDING request, if it fits."""
    moved = await session.execute(
        update(Venture)
        .where(
            Venture.id == venture_id,
            Venture.granted_bps + Venture.pending_bps + bp <= Venture.pool_bps,
        )
        .values(pending_bps=Venture.pending_bps + bp, updated_at=func.now())
        .returning(Venture.id)
    )
    return moved.first() is not None


async def release_pool(
    session: AsyncSession, venture_id: uuid.UUID, bp: int, *, grant: bool
) -> bool:
    """Give a request's reservation back; `grant` turns it into granted equity instead,
    only while the grant stays within the pool."""
    statement = update(Venture).where(Venture.id == venture_id)
    values: dict[str, Any] = {"pending_bps": Venture.pending_bps - bp, "updated_at": func.now()}
    if grant:
        statement = statement.where(Venture.granted_bps + bp <= Venture.pool_bps)
        values["granted_bps"] = Venture.granted_bps + bp
    moved = await session.execute(statement.values(**values).returning(Venture.id))
    return moved.first() is not None


_LOCK_VENTURES = text(
    "SELECT id FROM ventures WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE"
)
_RELEASE_MANY = text(
    "UPDATE ventures v SET pending_bps = v.pending_bps - r.bp, updated_at = now()"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:bps AS integer[])) AS r(id, bp)"
    " WHERE v.id = r.id"
)


async def release_pools(session: AsyncSession, released: Mapping[uuid.UUID, int]) -> None:
    """Give back the reservations of several requests, summed per venture. The rows are
    locked first in ascending id (an UPDATE over a join locks in the plan's order), so two
    such releases over the same ventures cannot deadlock."""
    if not released:
        return
    ordered = sorted(released.items())
    ids = [str(v) for v, _ in ordered]
    await session.execute(_LOCK_VENTURES, {"ids": ids})
    await session.execute(_RELEASE_MANY, {"ids": ids, "bps": [bp for _, bp in ordered]})


# --- windows --------------------------------------------------------------------------------


def _window(row: Any) -> WindowView:
    return WindowView(
        id=row.id,
        label=row.label,
        opens_at=row.opens_at,
        closes_at=row.closes_at,
        equity_rate_bps=int(row.equity_rate_bps),
        status=WindowStatus(row.status),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finalized_at=row.finalized_at,
    )


_WINDOW = select(ConversionWindow.__table__)
_WINDOW_COLUMNS = tuple(ConversionWindow.__table__.c)


async def insert_window(
    session: AsyncSession,
    *,
    label: str,
    opens_at: datetime,
    closes_at: datetime,
    rate_bps: int,
    status: WindowStatus,
    created_by: str,
) -> WindowView | None:
    """The new window. A window of the job (created_by JOB_CREATOR) is one per opens_at:
    None when that quarter's window exists already (another run or replica made it)."""
    statement = insert(ConversionWindow).values(
        label=label,
        opens_at=opens_at,
        closes_at=closes_at,
        equity_rate_bps=rate_bps,
        status=status,
        created_by=created_by,
    )
    if created_by == JOB_CREATOR:
        statement = statement.on_conflict_do_nothing(
            index_elements=[ConversionWindow.opens_at],
            # A literal: the arbiter index's predicate is matched as text, not as a bind.
            index_where=text(f"created_by = '{JOB_CREATOR}'"),
        )
    row = (await session.execute(statement.returning(*_WINDOW_COLUMNS))).first()
    return None if row is None else _window(row)


async def load_window(
    session: AsyncSession, window_id: uuid.UUID, *, share: bool = False
) -> WindowView:
    """The window; `share` holds a FOR SHARE lock to the end of the transaction, so its
    status and rate cannot change under a request being made in it."""
    query = _WINDOW.where(ConversionWindow.id == window_id)
    if share:
        query = query.with_for_update(read=True)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound("window not found", metadata={"window_id": str(window_id)})
    return _window(row)


async def move_window(
    session: AsyncSession,
    window_id: uuid.UUID,
    expected: WindowStatus,
    to: WindowStatus,
    **values: Any,
) -> WindowView | None:
    """expected → to, only if the window is still `expected`; None otherwise."""
    row = (
        await session.execute(
            update(ConversionWindow)
            .where(ConversionWindow.id == window_id, ConversionWindow.status == expected)
            .values(status=to, updated_at=func.now(), **values)
            .returning(*_WINDOW_COLUMNS)
        )
    ).first()
    return None if row is None else _window(row)


def _unopened(now: datetime) -> ColumnElement[bool]:
    """The database's side of domain.rate_changeable (a conditional UPDATE's guard)."""
    return and_(ConversionWindow.status == WindowStatus.SCHEDULED, ConversionWindow.opens_at > now)


async def set_window_rate(
    session: AsyncSession, window_id: uuid.UUID, rate_bps: int, now: datetime
) -> tuple[WindowView, int] | None:
    """(window, previous rate) after setting its rate, only while it has not opened."""
    previous = (
        select(ConversionWindow.id, ConversionWindow.equity_rate_bps.label("previous"))
        .where(ConversionWindow.id == window_id, _unopened(now))
        .with_for_update()
        .cte("previous")
    )
    row = (
        await session.execute(
            update(ConversionWindow)
            .where(ConversionWindow.id == previous.c.id)
            .values(equity_rate_bps=rate_bps, updated_at=func.now())
            .returning(*_WINDOW_COLUMNS, previous.c.previous)
        )
    ).first()
    return None if row is None else (_window(row), int(row.previous))


async def set_job_window_rates(
    session: AsyncSession, rate_bps: int, now: datetime
) -> list[tuple[WindowView, int]]:
    """(window, previous rate) of each of the job's unopened windows moved to `rate_bps`."""
    previous = (
        select(ConversionWindow.id, ConversionWindow.equity_rate_bps.label("previous"))
        .where(
            ConversionWindow.created_by == JOB_CREATOR,
            _unopened(now),
            ConversionWindow.equity_rate_bps != rate_bps,
        )
        .order_by(ConversionWindow.id)
        .with_for_update()
        .cte("previous")
    )
    rows = (
        await session.execute(
            update(ConversionWindow)
            .where(ConversionWindow.id == previous.c.id)
            .values(equity_rate_bps=rate_bps, updated_at=func.now())
            .returning(*_WINDOW_COLUMNS, previous.c.previous)
        )
    ).all()
    return sorted(((_window(r), int(r.previous)) for r in rows), key=lambda w: w[0].opens_at)


async def list_windows(
    session: AsyncSession,
    *,
    statuses: Sequence[str],
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[WindowView]:
    """Latest opens_at first, then id descending; keyset: those before `before`."""
    query = _WINDOW.order_by(ConversionWindow.opens_at.desc(), ConversionWindow.id.desc())
    if statuses:
        query = query.where(ConversionWindow.status.in_(list(statuses)))
    if before is not None:
        query = query.where(
            tuple_(ConversionWindow.opens_at, ConversionWindow.id) < tuple_(*before)
        )
    return [_window(row) for row in (await session.execute(query.limit(limit))).all()]


async def open_windows(session: AsyncSession) -> list[WindowView]:
    query = _WINDOW.where(ConversionWindow.status == WindowStatus.OPEN).order_by(
        ConversionWindow.closes_at, ConversionWindow.id
    )
    return [_window(row) for row in (await session.execute(query)).all()]


async def windows_due(session: AsyncSession, now: datetime) -> list[WindowView]:
    """SCHEDULED and OPEN windows time may have moved: opens_at reached (the job's work)."""
    query = _WINDOW.where(
        ConversionWindow.status.in_([WindowStatus.SCHEDULED, WindowStatus.OPEN]),
        ConversionWindow.opens_at <= now,
    ).order_by(ConversionWindow.opens_at, ConversionWindow.id)
    return [_window(row) for row in (await session.execute(query)).all()]
