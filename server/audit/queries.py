"""The audit log's SQL: chain heads and events, as statement fragments over arrays.

Shared by `append_many` (rendered as SQLAlchemy binds) and by use cases that fold the audit
write into their own statements (server/wallet/reward_batch.py composes them into asyncpg
statements, server/db/statement.py). Placeholders are `{name}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text

from server.audit.domain import NewEvent
from server.core.chain import GENESIS
from server.db.statement import sqlalchemy_text, unnest

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

LOCK_HEADS = sqlalchemy_text(HEADS_UPSERT)
INSERT_AND_ADVANCE = sqlalchemy_text(
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


# --- integrity summary (OpsService.GetSystemStatus, the integrity gauges) -----------------------

INTEGRITY_SUMMARY = text(
    "SELECT (SELECT max(created_at) FROM audit_checkpoints) AS last_checkpoint_at,"
    " (SELECT count(*) FROM integrity_incidents WHERE resolved_at IS NULL) AS open_incidents,"
    " (SELECT min(detected_at) FROM integrity_incidents WHERE resolved_at IS NULL)"
    " AS oldest_open_incident_at"
)
