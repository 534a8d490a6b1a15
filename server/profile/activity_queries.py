"""SQL of activity events: the claim of an event id (per kind), the stored event, the users
an event names."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import NotFound
from server.profile.activity_rules import ActivityView, ValidEvent

# The claim: a concurrent duplicate blocks on the (kind, event_id) key until the first
# commits, then finds the row (or takes the key if the first rolled back).
_CLAIM = text(
    "INSERT INTO activity_events"
    " (kind, event_id, user_id, payload, payload_hash, metrics, occurred_at)"
    " VALUES (:kind, :event_id, :user_id, CAST(:payload AS jsonb), :payload_hash,"
    "  CAST(:metrics AS jsonb), :occurred_at)"
    " ON CONFLICT (kind, event_id) DO NOTHING RETURNING created_at"
)
_STORED = text(
    "SELECT event_id, kind, occurred_at, created_at, payload, payload_hash"
    " FROM activity_events WHERE kind = :kind AND event_id = :event_id"
)
_USERS = text("SELECT id FROM users WHERE id = ANY(CAST(:ids AS uuid[]))")
_REP = text("SELECT rep_milli FROM profiles WHERE user_id = :user_id")


def _view(row: Any) -> ActivityView:
    return ActivityView(
        event_id=row.event_id,
        kind=row.kind,
        occurred_at=row.occurred_at,
        recorded_at=row.created_at,
        payload=row.payload,
    )


async def require_users(session: AsyncSession, user_ids: Iterable[uuid.UUID]) -> None:
    wanted = sorted(set(user_ids))
    found = set((await session.execute(_USERS, {"ids": wanted})).scalars())
    for user_id in wanted:
        if user_id not in found:
            raise NotFound("user not found", metadata={"user_id": str(user_id)})


async def claim(session: AsyncSession, event: ValidEvent) -> datetime | None:
    """Store the event unless its (kind, event_id) is taken; its recorded_at, or None."""
    created: datetime | None = (
        await session.execute(
            _CLAIM,
            {
                "kind": str(event.kind),
                "event_id": event.event_id,
                "user_id": event.user_id,
                "payload": json.dumps(event.payload),
                "payload_hash": event.payload_hash,
                "metrics": json.dumps(event.metric_deltas),
                "occurred_at": event.occurred_at,
            },
        )
    ).scalar()
    return created


async def stored(session: AsyncSession, kind: str, event_id: str) -> tuple[str, ActivityView]:
    """The stored event under (kind, event_id) and its payload hash."""
    row = (await session.execute(_STORED, {"kind": kind, "event_id": event_id})).one()
    return row.payload_hash, _view(row)


async def rep_milli_of(session: AsyncSession, user_id: uuid.UUID) -> int:
    """A user's reputation now (not locked: a reviewer's trust weight is read as it stands)."""
    found = (await session.execute(_REP, {"user_id": user_id})).scalar()
    if found is None:
        raise NotFound("user not found", metadata={"user_id": str(user_id)})
    return int(found)
