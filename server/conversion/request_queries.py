"""The SQL of conversion requests: gate facts, the request rows and their transitions, the
equity grants and the cap table (ventures, windows and the default rate: queries.py).

Every transition is a conditional UPDATE (`WHERE status = 'PENDING'`) whose RETURNING row
says whether this transaction made it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.conversion.domain import ConversionView, HolderView, RequestStatus, WindowView
from server.conversion.models import ConversionRequest, EquityGrant
from server.core.errors import NotFound
from server.db.statement import sqlalchemy_text
from server.profile.queries import LATEST_DEVICE_REPORTS

# --- requests -------------------------------------------------------------------------------


def _conversion(row: Any) -> ConversionView:
    return ConversionView(
        id=row.id,
        user_id=row.user_id,
        window_id=row.window_id,
        venture_id=row.venture_id,
        status=RequestStatus(row.status),
        buz_requested=int(row.buz_requested),
        equity_rate_bps=int(row.equity_rate_bps),
        granted_bps=int(row.equity_bp),
        buz_locked=int(row.buz_locked),
        decided_by=row.decided_by,
        decision_note=row.decision_note,
        created_at=row.created_at,
        updated_at=row.updated_at,
        resolved_at=row.resolved_at,
    )


_REQUEST = select(ConversionRequest.__table__)
_REQUEST_COLUMNS = tuple(ConversionRequest.__table__.c)

# KYC status, reputation and the latest device report of one user: the facts of the gates
# (the device report by the same statement RecordTaskAccepted and GetDevicePosture read).
_GATE_FACTS = sqlalchemy_text(
    "SELECT u.kyc_status, p.rep_milli, d.compliant, d.reported_at"  # noqa: S608 (constant)
    " FROM users u JOIN profiles p ON p.user_id = u.id"
    f" LEFT JOIN ({LATEST_DEVICE_REPORTS}) d ON d.user_id = u.id"
    " WHERE u.id = {user_id}"
)


async def gate_facts(session: AsyncSession, user_id: uuid.UUID) -> Any:
    row = (await session.execute(_GATE_FACTS, {"user_ids": [user_id], "user_id": user_id})).first()
    if row is None:
        raise NotFound("user not found")
    return row


async def insert_request(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    window: WindowView,
    venture_id: uuid.UUID,
    buz_requested: int,
    granted_bps: int,
    buz_locked: int,
    request_id: str,
) -> ConversionView | None:
    """The new PENDING request, or None when the user has one for this window and venture."""
    row = (
        await session.execute(
            insert(ConversionRequest)
            .values(
                user_id=user_id,
                window_id=window.id,
                venture_id=venture_id,
                buz_requested=buz_requested,
                equity_rate_bps=window.equity_rate_bps,
                buz_locked=buz_locked,
                equity_bp=granted_bps,
                request_id=request_id,
            )
            .on_conflict_do_nothing(
                index_elements=["user_id", "window_id", "venture_id"],
                # A literal: the arbiter index's predicate is matched as text, not as a bind.
                index_where=text(f"status = '{RequestStatus.PENDING}'"),
            )
            .returning(*_REQUEST_COLUMNS)
        )
    ).first()
    return None if row is None else _conversion(row)


async def pending_request(
    session: AsyncSession, user_id: uuid.UUID, window_id: uuid.UUID, venture_id: uuid.UUID
) -> uuid.UUID | None:
    found: uuid.UUID | None = (
        await session.execute(
            select(ConversionRequest.id).where(
                ConversionRequest.user_id == user_id,
                ConversionRequest.window_id == window_id,
                ConversionRequest.venture_id == venture_id,
                ConversionRequest.status == RequestStatus.PENDING,
            )
        )
    ).scalar()
    return found


async def load_conversion(session: AsyncSession, conversion_id: uuid.UUID) -> ConversionView:
    row = (await session.execute(_REQUEST.where(ConversionRequest.id == conversion_id))).first()
    if row is None:
        raise NotFound("conversion not found")
    return _conversion(row)


async def resolve(
    session: AsyncSession,
    conversion_id: uuid.UUID,
    to: RequestStatus,
    *,
    now: datetime,
    decided_by: str | None = None,
    note: str | None = None,
) -> ConversionView | None:
    """PENDING → `to`, only if still PENDING; None otherwise."""
    row = (
        await session.execute(
            update(ConversionRequest)
            .where(
                ConversionRequest.id == conversion_id,
                ConversionRequest.status == RequestStatus.PENDING,
            )
            .values(
                status=to,
                decided_by=decided_by,
                decision_note=note,
                resolved_at=now,
                updated_at=func.now(),
            )
            .returning(*_REQUEST_COLUMNS)
        )
    ).first()
    return None if row is None else _conversion(row)


async def pending_owners(session: AsyncSession, window_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await session.execute(
        select(ConversionRequest.user_id)
        .where(
            ConversionRequest.window_id == window_id,
            ConversionRequest.status == RequestStatus.PENDING,
        )
        .distinct()
    )
    return list(rows.scalars())


async def expire_pending(
    session: AsyncSession, window_id: uuid.UUID, now: datetime
) -> list[ConversionView]:
    """Every request still PENDING in the window → EXPIRED (in id order)."""
    rows = await session.execute(
        update(ConversionRequest)
        .where(
            ConversionRequest.window_id == window_id,
            ConversionRequest.status == RequestStatus.PENDING,
        )
        .values(status=RequestStatus.EXPIRED, resolved_at=now, updated_at=func.now())
        .returning(*_REQUEST_COLUMNS)
    )
    return sorted((_conversion(r) for r in rows.all()), key=lambda c: c.id)


async def list_conversions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None,
    window_id: uuid.UUID | None,
    venture_id: uuid.UUID | None,
    statuses: Sequence[str],
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ConversionView]:
    """Newest first (created_at, then id, descending); keyset: those before `before`."""
    query = _REQUEST.order_by(ConversionRequest.created_at.desc(), ConversionRequest.id.desc())
    for column, value in (
        (ConversionRequest.user_id, user_id),
        (ConversionRequest.window_id, window_id),
        (ConversionRequest.venture_id, venture_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if statuses:
        query = query.where(ConversionRequest.status.in_(list(statuses)))
    if before is not None:
        query = query.where(
            tuple_(ConversionRequest.created_at, ConversionRequest.id) < tuple_(*before)
        )
    return [_conversion(row) for row in (await session.execute(query.limit(limit))).all()]


# --- grants and the cap table ---------------------------------------------------------------


async def record_grant(session: AsyncSession, conversion: ConversionView) -> None:
    """The cap table row of an approval, in the approval's transaction."""
    await session.execute(
        insert(EquityGrant).values(
            venture_id=conversion.venture_id,
            user_id=conversion.user_id,
            conversion_id=conversion.id,
            bps=conversion.granted_bps,
        )
    )


_HOLDERS = (
    select(
        EquityGrant.user_id,
        func.sum(EquityGrant.bps).label("granted_bps"),
        func.count().label("grant_count"),
        func.sum(ConversionRequest.buz_locked).label("buz_burned"),
        func.min(EquityGrant.granted_at).label("first_granted_at"),
        func.max(EquityGrant.granted_at).label("last_granted_at"),
    )
    .join(ConversionRequest, ConversionRequest.id == EquityGrant.conversion_id)
    .where(EquityGrant.venture_id == bindparam("venture_id"))
    .group_by(EquityGrant.user_id)
    .subquery("holders")
)


async def cap_table_totals(session: AsyncSession, venture_id: uuid.UUID) -> tuple[int, int]:
    """(sum of grants in bp, number of holders) of the venture."""
    row = (
        await session.execute(
            select(func.coalesce(func.sum(_HOLDERS.c.granted_bps), 0), func.count()).select_from(
                _HOLDERS
            ),
            {"venture_id": venture_id},
        )
    ).one()
    return int(row[0]), int(row[1])


async def cap_table_holders(
    session: AsyncSession,
    venture_id: uuid.UUID,
    *,
    after: tuple[int, uuid.UUID] | None,
    limit: int,
) -> list[HolderView]:
    """Largest holding first, then user id; keyset: those after `after`."""
    h = _HOLDERS.c
    query = select(_HOLDERS).order_by(h.granted_bps.desc(), h.user_id).limit(limit)
    if after is not None:
        bps, user = after
        query = query.where(or_(h.granted_bps < bps, and_(h.granted_bps == bps, h.user_id > user)))
    rows = (await session.execute(query, {"venture_id": venture_id})).all()
    return [
        HolderView(
            user_id=row.user_id,
            granted_bps=int(row.granted_bps),
            grant_count=int(row.grant_count),
            buz_burned=int(row.buz_burned),
            first_granted_at=row.first_granted_at,
            last_granted_at=row.last_granted_at,
        )
        for row in rows
    ]
