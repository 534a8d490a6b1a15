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

_LOCK_HEAD = text(
    "INSERT INTO audit_chain_heads (chain_id, seq, hash, updated_at) "
    "VALUES (:chain_id, 0, :genesis, now()) "
    "ON CONFLICT (chain_id) DO UPDATE SET chain_id = EXCLUDED.chain_id "
    "RETURNING seq, hash"
)
_INSERT_AND_ADVANCE = text(
    "WITH inserted AS ("
    " INSERT INTO audit_events (chain_id, seq, occurred_at, actor_id, action, scope, ref_id,"
    "  request_id, details, payload_hash, prev_hash, hash)"
    " VALUES (:chain_id, :seq, :occurred_at, :actor_id, :action, :scope, :ref_id,"
    "  :request_id, CAST(:details AS jsonb), :payload_hash, :prev_hash, :hash)"
    " RETURNING id)"
    " UPDATE audit_chain_heads SET seq = :seq, hash = :hash, updated_at = now()"
    " WHERE chain_id = :chain_id"
    " RETURNING (SELECT id FROM inserted)"
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


async def append(session: AsyncSession, ctx: RequestContext, event: AuditEvent) -> AppendedEvent:
    """Record `event` in the caller's transaction, chained to its chain's head."""
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
            seq += 1
            details = redact(event.details)
            p_hash = payload_hash(details)
            occurred_at = datetime.now(UTC)
            fields = chained_fields(
                chain_id=chain_id,
                seq=seq,
                occurred_at=occurred_at,
                actor_id=ctx.actor_id,
                action=event.action,
                scope=event.scope,
                ref_id=event.ref_id,
                request_id=ctx.request_id,
                payload_hash=p_hash,
            )
            digest = chain_hash(prev, fields)
            row = (
                await session.execute(
                    _INSERT_AND_ADVANCE,
                    {
                        **fields,
                        "details": json.dumps(details, separators=(",", ":"), default=str),
                        "prev_hash": prev,
                        "hash": digest,
                    },
                )
            ).one()
            out.append(AppendedEvent(id=int(row[0]), chain_id=chain_id, seq=seq, hash=digest))
            prev = digest
    return out
