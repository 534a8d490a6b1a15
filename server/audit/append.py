"""The audit append primitive: every service calls `append` inside its own transaction.

Events are hash-chained (server/chain.py) in one of AUDIT_CHAINS chains chosen from the
event's (scope, ref_id), so one entity's history is ordered in one chain while writers of
different entities do not queue behind one global lock. The chain head row is locked by
the first statement (an upsert, which also creates the head lazily) and held until the
caller's commit: call `append` as the last step of a use case so the lock is held briefly.
A transaction that appends to several chains should use `append_many`, which takes the
heads in ascending chain order so two such transactions cannot deadlock.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.chain import GENESIS, chain_hash, payload_hash
from server.context import RequestContext
from server.db.statement import sqlalchemy_text, unnest

AUDIT_CHAINS = 32
# Keys whose values never reach the audit log, at any depth of `details`.
SECRET_KEYS = frozenset(
    {"password", "secret", "token", "private_key", "authorization", "api_key", "signature_secret"}
)

# Statement fragments over arrays, shared by `append_many` (rendered as SQLAlchemy binds)
# and use cases that fold the audit write into their own statements (server/wallet/
# reward_batch.py composes them into asyncpg statements, server/db/statement.py).
# Placeholders are `{name}`.
#
# HEADS_UPSERT creates chain heads lazily and locks them (until commit) in the order of
# `chain_ids` (head_params sorts them: the deadlock-free order): RETURNING chain_id, seq,
# hash. A statement on its own or a data-modifying CTE of a SELECT. Values: head_params.
HEADS_UPSERT = (
    "INSERT INTO audit_chain_heads (chain_id, seq, hash, updated_at)"
    " SELECT c.chain_id, 0, {genesis}, now()"
    " FROM unnest(CAST({chain_ids} AS text[])) WITH ORDINALITY AS c(chain_id, n) ORDER BY c.n"
    " ON CONFLICT (chain_id) DO UPDATE SET chain_id = EXCLUDED.chain_id"
    " RETURNING chain_id, seq, hash"
)
_EVENT_COLUMNS_SQL = (
    ("chain_id", "text"),
    ("seq", "bigint"),
    ("occurred_at", "timestamptz"),
    ("actor_id", "text"),
    ("action", "text"),
    ("scope", "text"),
    ("ref_id", "text"),
    ("request_id", "text"),
    ("details", "text"),
    ("payload_hash", "text"),
    ("prev_hash", "text"),
    ("hash", "text"),
)
_HEAD_COLUMNS_SQL = (
    ("chain_id", "text"),
    ("prev_seq", "bigint"),
    ("seq", "bigint"),
    ("hash", "text"),
)
_EVENT_COLUMNS = ", ".join(name for name, _ in _EVENT_COLUMNS_SQL)
# EVENTS_CTES: `audit_events_new` inserts the events (RETURNING id, chain_id, seq);
# `audit_heads_moved` advances each head locked by HEADS_UPSERT to its chain's last event,
# only where the head is still the one the chain's first event follows (RETURNING chain_id:
# a missing row means a head moved under its lock). Values: event_arrays.
EVENTS_CTES = (
    "audit_events_new AS ("  # noqa: S608 (constant names and casts; values are binds)
    f" INSERT INTO audit_events ({_EVENT_COLUMNS})"
    f" SELECT {_EVENT_COLUMNS.replace('details', 'CAST(details AS jsonb)')}"
    f" FROM {unnest('ev_', _EVENT_COLUMNS_SQL, 'e')}"
    " RETURNING id, chain_id, seq),"
    " audit_heads_moved AS ("
    " UPDATE audit_chain_heads h SET seq = m.seq, hash = m.hash, updated_at = now()"
    f" FROM {unnest('hd_', _HEAD_COLUMNS_SQL, 'm')}"
    " WHERE h.chain_id = m.chain_id AND h.seq = m.prev_seq"
    " RETURNING h.chain_id)"
)

_LOCK_HEADS = sqlalchemy_text(HEADS_UPSERT)
_INSERT_AND_ADVANCE = sqlalchemy_text(
    "WITH "  # noqa: S608 (module constants only, values are binds)
    + EVENTS_CTES
    + " SELECT (SELECT array_agg(id ORDER BY chain_id, seq) FROM audit_events_new) AS ids,"
    " (SELECT count(*) FROM audit_heads_moved) AS moved"
)


def head_params(chain_ids: Iterable[str]) -> dict[str, Any]:
    """Values for HEADS_UPSERT: the distinct chains in ascending order, and the genesis."""
    return {"chain_ids": sorted(set(chain_ids)), "genesis": GENESIS}


def event_arrays(events: Sequence[NewEvent]) -> dict[str, list[Any]]:
    """Values for EVENTS_CTES: the events (in chain order per chain) and, per chain, the head
    before its first event and after its last."""
    values: dict[str, list[Any]] = {
        f"ev_{name}": [getattr(event, name) for event in events] for name, _ in _EVENT_COLUMNS_SQL
    }
    first: dict[str, NewEvent] = {}
    last: dict[str, NewEvent] = {}
    for event in events:
        first.setdefault(event.chain_id, event)
        last[event.chain_id] = event
    values["hd_chain_id"] = list(last)
    values["hd_prev_seq"] = [first[chain].seq - 1 for chain in last]
    values["hd_seq"] = [event.seq for event in last.values()]
    values["hd_hash"] = [event.hash for event in last.values()]
    return values


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One state change worth recording. `details` must be JSON-serialisable."""

    action: str
    scope: str
    ref_id: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppendedEvent:
    id: int
    chain_id: str
    seq: int
    hash: str


def chain_for(scope: str, ref_id: str) -> str:
    return f"audit:{zlib.crc32(f'{scope}:{ref_id}'.encode()) % AUDIT_CHAINS:02d}"


def redact(details: Mapping[str, Any]) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items() if str(k).lower() not in SECRET_KEYS}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    cleaned: dict[str, Any] = clean(details)
    return cleaned


def chained_fields(
    *,
    chain_id: str,
    seq: int,
    occurred_at: datetime,
    actor_id: str | None,
    action: str,
    scope: str,
    ref_id: str,
    request_id: str | None,
    payload_hash: str,
) -> dict[str, Any]:
    """The fields an audit event's hash covers (everything stored but the hashes)."""
    return {
        "chain_id": chain_id,
        "seq": seq,
        "occurred_at": occurred_at,
        "actor_id": actor_id,
        "action": action,
        "scope": scope,
        "ref_id": ref_id,
        "request_id": request_id,
        "payload_hash": payload_hash,
    }


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event chained to a locked head (`DraftEvent.chain`), not yet written."""

    chain_id: str
    seq: int
    occurred_at: datetime
    actor_id: str | None
    action: str
    scope: str
    ref_id: str
    request_id: str | None
    details: str  # redacted, JSON text
    payload_hash: str
    prev_hash: str
    hash: str

    def appended(self, event_id: int) -> AppendedEvent:
        return AppendedEvent(id=event_id, chain_id=self.chain_id, seq=self.seq, hash=self.hash)


@dataclass(frozen=True, slots=True)
class DraftEvent:
    """An event redacted and its payload hashed, not yet chained: everything that does not
    need the chain's head, so a use case can do it before taking the head's lock."""

    chain_id: str
    actor_id: str | None
    action: str
    scope: str
    ref_id: str
    request_id: str | None
    details: str  # redacted, JSON text
    payload_hash: str

    def chain(self, head_seq: int, head_hash: str) -> NewEvent:
        """The event that follows head (head_seq, head_hash) of its chain, which must be
        locked in the caller's transaction (HEADS_UPSERT) until the event is written."""
        fields = chained_fields(
            chain_id=self.chain_id,
            seq=head_seq + 1,
            occurred_at=datetime.now(UTC),
            actor_id=self.actor_id,
            action=self.action,
            scope=self.scope,
            ref_id=self.ref_id,
            request_id=self.request_id,
            payload_hash=self.payload_hash,
        )
        return NewEvent(
            **fields,
            details=self.details,
            prev_hash=head_hash,
            hash=chain_hash(head_hash, fields),
        )


def draft(ctx: RequestContext, event: AuditEvent) -> DraftEvent:
    """`event` for its chain (chain_for), redacted, its payload hashed. Pure (no I/O)."""
    details = redact(event.details)
    return DraftEvent(
        chain_id=chain_for(event.scope, event.ref_id),
        actor_id=ctx.actor_id,
        action=event.action,
        scope=event.scope,
        ref_id=event.ref_id,
        request_id=ctx.request_id,
        details=json.dumps(details, separators=(",", ":"), default=str),
        payload_hash=payload_hash(details),
    )


async def append(session: AsyncSession, ctx: RequestContext, event: AuditEvent) -> AppendedEvent:
    """Record `event` in the caller's transaction, chained to its chain's head.

    Two round trips: lock the head, then insert + advance. The event's hash covers its seq
    and chains the head's hash, both known only once the head is locked, and the hash is
    computed here (server/chain.py), so the two cannot be one statement. A use case that
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
    rows = (await session.execute(_LOCK_HEADS, head_params(d.chain_id for d in drafts))).all()
    heads = {row.chain_id: (int(row.seq), str(row.hash)) for row in rows}
    prepared: list[NewEvent] = []
    for pending in drafts:
        new = pending.chain(*heads[pending.chain_id])
        heads[new.chain_id] = (new.seq, new.hash)
        prepared.append(new)
    ordered = sorted(prepared, key=lambda new: (new.chain_id, new.seq))
    row = (await session.execute(_INSERT_AND_ADVANCE, event_arrays(ordered))).one()
    if row.moved != len({new.chain_id for new in prepared}) or len(row.ids) != len(prepared):
        raise RuntimeError("an audit chain head moved under its lock")
    ids = {(new.chain_id, new.seq): int(i) for new, i in zip(ordered, row.ids, strict=True)}
    return [new.appended(ids[new.chain_id, new.seq]) for new in prepared]
