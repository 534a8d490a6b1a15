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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server.chain import GENESIS, chain_hash, payload_hash
from server.context import RequestContext

AUDIT_CHAINS = 32
# Keys whose values never reach the audit log, at any depth of `details`.
SECRET_KEYS = frozenset(
    {"password", "secret", "token", "private_key", "authorization", "api_key", "signature_secret"}
)

# Statement fragments, shared by `append_many` (rendered as SQLAlchemy binds) and use cases
# that fold the audit write into their own statements (server/wallet/rewards.py renders them
# as asyncpg `$n`). Placeholders are `{name}`.
#
# HEAD_UPSERT creates the chain head lazily and locks it (until commit): RETURNING seq, hash.
# It is a statement on its own or a data-modifying CTE of a SELECT. Values: chain_id and
# genesis (= GENESIS).
HEAD_UPSERT = (
    "INSERT INTO audit_chain_heads (chain_id, seq, hash, updated_at)"
    " VALUES ({chain_id}, 0, {genesis}, now())"
    " ON CONFLICT (chain_id) DO UPDATE SET chain_id = EXCLUDED.chain_id"
    " RETURNING seq, hash"
)
# EVENT_CTES: `audit_event` inserts the event (RETURNING id), `audit_head` advances the head
# locked by HEAD_UPSERT (RETURNING the event id as event_id). Values: NewEvent.params().
EVENT_PARAMS = (
    "chain_id",
    "seq",
    "occurred_at",
    "actor_id",
    "action",
    "scope",
    "ref_id",
    "request_id",
    "details",
    "payload_hash",
    "prev_hash",
    "hash",
)
EVENT_CTES = (
    "audit_event AS ("
    " INSERT INTO audit_events (chain_id, seq, occurred_at, actor_id, action, scope, ref_id,"
    "  request_id, details, payload_hash, prev_hash, hash)"
    " VALUES ({chain_id}, {seq}, {occurred_at}, {actor_id}, {action}, {scope}, {ref_id},"
    "  {request_id}, CAST({details} AS jsonb), {payload_hash}, {prev_hash}, {hash})"
    " RETURNING id),"
    " audit_head AS ("
    " UPDATE audit_chain_heads SET seq = {seq}, hash = {hash}, updated_at = now()"
    " WHERE chain_id = {chain_id}"
    " RETURNING (SELECT id FROM audit_event) AS event_id)"
)

_LOCK_HEAD = text(HEAD_UPSERT.format(chain_id=":chain_id", genesis=":genesis"))
_INSERT_AND_ADVANCE = text(
    "WITH "  # noqa: S608 (module constants only, values are binds)
    + EVENT_CTES.format_map({name: f":{name}" for name in EVENT_PARAMS})
    + " SELECT (SELECT event_id FROM audit_head)"
)


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
    """One event chained to a locked head (`prepare`), not yet written."""

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

    def params(self) -> dict[str, Any]:
        """The values of EVENT_PARAMS."""
        return {
            "chain_id": self.chain_id,
            "seq": self.seq,
            "occurred_at": self.occurred_at,
            "actor_id": self.actor_id,
            "action": self.action,
            "scope": self.scope,
            "ref_id": self.ref_id,
            "request_id": self.request_id,
            "details": self.details,
            "payload_hash": self.payload_hash,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def appended(self, event_id: int) -> AppendedEvent:
        return AppendedEvent(id=event_id, chain_id=self.chain_id, seq=self.seq, hash=self.hash)


def prepare(
    ctx: RequestContext, event: AuditEvent, *, chain_id: str, head_seq: int, head_hash: str
) -> NewEvent:
    """The event that follows head (head_seq, head_hash) of `chain_id`: redacted and hashed.

    Pure (no I/O). `chain_id` must be chain_for(event.scope, event.ref_id), and the head
    must be locked in the caller's transaction (HEAD_UPSERT) until the event is written.
    """
    if chain_id != chain_for(event.scope, event.ref_id):
        raise ValueError("event belongs to another chain")
    details = redact(event.details)
    fields = chained_fields(
        chain_id=chain_id,
        seq=head_seq + 1,
        occurred_at=datetime.now(UTC),
        actor_id=ctx.actor_id,
        action=event.action,
        scope=event.scope,
        ref_id=event.ref_id,
        request_id=ctx.request_id,
        payload_hash=payload_hash(details),
    )
    return NewEvent(
        **fields,
        details=json.dumps(details, separators=(",", ":"), default=str),
        prev_hash=head_hash,
        hash=chain_hash(head_hash, fields),
    )


async def append(session: AsyncSession, ctx: RequestContext, event: AuditEvent) -> AppendedEvent:
    """Record `event` in the caller's transaction, chained to its chain's head.

    Two round trips: lock the head, then insert + advance. The event's hash covers its seq
    and chains the head's hash, both known only once the head is locked, and the hash is
    computed here (server/chain.py), so the two cannot be one statement. A use case that
    already sends a statement before its audit write can fold HEAD_UPSERT into it as a CTE
    and EVENT_CTES into its last statement (server/wallet/rewards.py does).
    """
    (appended,) = await append_many(session, ctx, (event,))
    return appended


async def append_many(
    session: AsyncSession, ctx: RequestContext, events: Iterable[AuditEvent]
) -> Sequence[AppendedEvent]:
    by_chain: dict[str, list[AuditEvent]] = {}
    for event in events:
        by_chain.setdefault(chain_for(event.scope, event.ref_id), []).append(event)
    out: list[AppendedEvent] = []
    for chain_id in sorted(by_chain):
        head = (await session.execute(_LOCK_HEAD, {"chain_id": chain_id, "genesis": GENESIS})).one()
        seq, prev = int(head.seq), str(head.hash)
        for event in by_chain[chain_id]:
            new = prepare(ctx, event, chain_id=chain_id, head_seq=seq, head_hash=prev)
            row = (await session.execute(_INSERT_AND_ADVANCE, new.params())).one()
            if row[0] is None:
                raise RuntimeError(f"audit chain head {chain_id} vanished under its lock")
            out.append(new.appended(int(row[0])))
            seq, prev = new.seq, new.hash
    return out
