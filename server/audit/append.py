"""The audit write API: every service calls `append` (or `append_many`) inside its own
transaction, so the event commits or rolls back with the change it records.

The chain head row is locked by the first statement (an upsert, which also creates the head
lazily) and held until the caller's commit: call `append` as the last step of a use case so
the lock is held briefly. A transaction that appends to several chains uses `append_many`,
which takes the heads in ascending chain order so two such transactions cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.domain import AppendedEvent, AuditEvent, NewEvent, draft
from server.audit.queries import INSERT_AND_ADVANCE, LOCK_HEADS, event_arrays, head_params
from server.core.context import RequestContext

__all__ = ["AppendedEvent", "AuditEvent", "append", "append_many"]


async def append(session: AsyncSession, ctx: RequestContext, event: AuditEvent) -> AppendedEvent:
    """Record `event` in the caller's transaction, chained to its chain's head.

    Two round trips: lock the head, then insert + advance. The event's hash covers its seq
    and chains the head's hash, both known only once the head is locked, and the hash is
    computed here (server/core/chain.py), so the two cannot be one statement. A use case that
    already sends a statement before its audit write can fold HEADS_UPSERT into it as a CTE
    and EVENTS_CTES into its last statement (server/wallet/reward_batch.py does).
    """
    (appended,) = await append_many(session, ctx, (event,))
    return appended


async def append_many(
    session: AsyncSession, ctx: RequestContext, events: Iterable[AuditEvent]
) -> Sequence[AppendedEvent]:
    """Record `events` (in order within each chain) in two round trips, whatever their
    number: every head they need locked in ascending chain order, then one insert."""
    # Redact and hash before the heads are locked: the lock is held only to chain and write.
    drafts = [draft(ctx, event) for event in events]
    if not drafts:
        return []
    rows = (await session.execute(LOCK_HEADS, head_params(d.chain_id for d in drafts))).all()
    heads = {row.chain_id: (int(row.seq), str(row.hash)) for row in rows}
    prepared: list[NewEvent] = []
    for pending in drafts:
        new = pending.chain(*heads[pending.chain_id])
        heads[new.chain_id] = (new.seq, new.hash)
        prepared.append(new)
    ordered = sorted(prepared, key=lambda new: (new.chain_id, new.seq))
    row = (await session.execute(INSERT_AND_ADVANCE, event_arrays(ordered))).one()
    if row.moved != len({new.chain_id for new in prepared}) or len(row.ids) != len(prepared):
        raise RuntimeError("an audit chain head moved under its lock")
    ids = {(new.chain_id, new.seq): int(i) for new, i in zip(ordered, row.ids, strict=True)}
    return [new.appended(ids[new.chain_id, new.seq]) for new in prepared]
