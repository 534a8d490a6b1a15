"""Audit events before they are written: chain choice, redaction, hashing (pure, no I/O).

An event goes to one of AUDIT_CHAINS chains chosen from its (scope, ref_id), so one entity's
history is ordered in one chain while writers of different entities do not queue behind one
global lock. The hash follows server/core/chain.py:

    hash = sha256( prev_hash ":" canonical({chain_id, seq, occurred_at, actor_id, action,
                                            scope, ref_id, request_id, payload_hash}) )
    payload_hash = sha256( canonical(redacted details) )

so a redacted payload keeps the chain. A use case drafts its events (`draft`) before it
locks the chain heads, and chains them (`DraftEvent.chain`) once they are locked.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from server.core.chain import chain_hash, payload_hash
from server.core.context import RequestContext

AUDIT_CHAINS = 32
# Keys whose values never reach the audit log, at any depth of `details`.
SECRET_KEYS = frozenset(
    {"password", "secret", "token", "private_key", "authorization", "api_key", "signature_secret"}
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
