"""SQL of portfolio items, and the owner checks of what an item links (documents, task)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.core.pagination import TimeKey
from server.document.domain import DocumentStatus
from server.profile.portfolio_rules import PortfolioView

Conn = AsyncSession | AsyncConnection

_COLUMNS = (
    "id, owner_id, title, description, urls, document_ids, task_id, buz_earned, impact,"
    " is_public, created_at, updated_at"
)
# Column ← field, and how a field's value is bound.
_COLUMN_OF = {"impact_metrics": "impact"}
_CASTS = {
    "urls": "CAST(:urls AS text[])",
    "document_ids": "CAST(:document_ids AS uuid[])",
    "impact_metrics": "CAST(:impact_metrics AS jsonb)",
}
_ITEM = text(f"SELECT {_COLUMNS} FROM portfolio_items WHERE id = :id")  # noqa: S608
_LIST = text(
    f"SELECT {_COLUMNS} FROM portfolio_items WHERE owner_id = :owner"  # noqa: S608
    " AND (NOT :public_only OR is_public)"
    " AND (CAST(:before_at AS timestamptz) IS NULL"
    "  OR (created_at, id) < (:before_at, CAST(:before_id AS uuid)))"
    " ORDER BY created_at DESC, id DESC LIMIT :limit"
)
_DELETE = text("DELETE FROM portfolio_items WHERE id = :id AND owner_id = :owner RETURNING id")
_OWNED_DOCUMENTS = text(
    "SELECT id FROM documents WHERE id = ANY(CAST(:ids AS uuid[])) AND owner_id = :owner"
    " AND status <> :deleted"
)
_REWARD = text("SELECT buz_awarded FROM task_rewards WHERE task_id = :task_id AND user_id = :owner")


def _view(row: Any) -> PortfolioView:
    return PortfolioView(
        item_id=row.id,
        owner_user_id=row.owner_id,
        title=row.title,
        description=row.description,
        urls=tuple(row.urls or ()),
        document_ids=tuple(row.document_ids or ()),
        task_id=row.task_id or "",
        buz_earned=int(row.buz_earned),
        impact_metrics=row.impact or {},
        is_public=row.is_public,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _binds(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: json.dumps(value) if name == "impact_metrics" else value
        for name, value in values.items()
    }


async def insert_item(
    session: AsyncSession, owner: uuid.UUID, values: Mapping[str, Any], buz_earned: int
) -> PortfolioView:
    names = list(values)
    columns = ", ".join(_COLUMN_OF.get(n, n) for n in names)
    binds = ", ".join(_CASTS.get(n, f":{n}") for n in names)
    row = (
        await session.execute(
            text(
                f"INSERT INTO portfolio_items (owner_id, buz_earned, {columns})"  # noqa: S608
                f" VALUES (:owner, :buz_earned, {binds}) RETURNING {_COLUMNS}"
            ),
            {**_binds(values), "owner": owner, "buz_earned": buz_earned},
        )
    ).one()
    return _view(row)


async def update_item(
    session: AsyncSession,
    item_id: uuid.UUID,
    owner: uuid.UUID,
    values: Mapping[str, Any],
    buz_earned: int | None,
) -> PortfolioView | None:
    """Update the owner's item (None when it is not theirs or does not exist)."""
    sets = [f"{_COLUMN_OF.get(n, n)} = {_CASTS.get(n, f':{n}')}" for n in values]
    if buz_earned is not None:
        sets.append("buz_earned = :buz_earned")
    row = (
        await session.execute(
            text(
                f"UPDATE portfolio_items SET {', '.join(sets)}, updated_at = now()"  # noqa: S608
                f" WHERE id = :id AND owner_id = :owner RETURNING {_COLUMNS}"
            ),
            {**_binds(values), "id": item_id, "owner": owner, "buz_earned": buz_earned},
        )
    ).first()
    return _view(row) if row is not None else None


async def item(conn: Conn, item_id: uuid.UUID) -> PortfolioView | None:
    row = (await conn.execute(_ITEM, {"id": item_id})).first()
    return _view(row) if row is not None else None


async def delete_item(session: AsyncSession, item_id: uuid.UUID, owner: uuid.UUID) -> bool:
    return (await session.execute(_DELETE, {"id": item_id, "owner": owner})).first() is not None


async def list_items(
    conn: Conn,
    owner: uuid.UUID,
    *,
    public_only: bool,
    before: TimeKey | None,
    limit: int,
) -> list[PortfolioView]:
    rows = await conn.execute(
        _LIST,
        {
            "owner": owner,
            "public_only": public_only,
            "before_at": before[0] if before else None,
            "before_id": before[1] if before else None,
            "limit": limit,
        },
    )
    return [_view(row) for row in rows]


async def owned_documents(conn: Conn, owner: uuid.UUID, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `ids` are documents of `owner` that are not deleted."""
    if not ids:
        return set()
    rows = await conn.execute(
        _OWNED_DOCUMENTS,
        {"ids": list(ids), "owner": owner, "deleted": DocumentStatus.DELETED.value},
    )
    return set(rows.scalars())


async def reward_for(conn: Conn, owner: uuid.UUID, task_id: str) -> int | None:
    """BUZ issued to `owner` for `task_id`; None when no reward names them for it."""
    found = (await conn.execute(_REWARD, {"task_id": task_id, "owner": owner})).scalar()
    return int(found) if found is not None else None
