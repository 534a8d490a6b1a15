"""Ledger entries as rules: what each entry type moves, the checks, the hash chain. Pure.

MOVES is the one table of what an entry does to a wallet; `apply_entry` (checked, for new
entries) and `replay_entry` (unchecked, for verification after a problem) both read it:
ISSUE +balance; LOCK balance → pending; UNLOCK pending → balance; BURN −pending;
ADJUST ±balance (admin, reason required). `prepare_entry` computes the next entry of a
locked wallet, chained and hashed; server/wallet/ledger.py writes it.

Ledger chain (the canonical encoding is server/core/chain.py's, shared with the audit log):

    hash = lowercase hex sha256( prev_hash ":" canonical(entry) )
    entry = {"wallet_id", "seq", "type", "amount", "balance_after", "pending_after",
             "ref_kind", "ref_id", "note", "actor_id", "request_id", "created_at"}

i.e. every stored column but the surrogate `id`, `hash` and `prev_hash`; ids are canonical
lowercase UUID text, integers are JSON numbers, absent values null, `created_at` RFC 3339
UTC with six fractional digits and "Z". prev_hash of seq 1 is GENESIS (64 zeros).
Test vector (tests/wallet/test_ledger.py::test_ledger_hash_test_vector):

    prev_hash = "0" * 64
    entry = {"wallet_id": "00000000-0000-0000-0000-000000000001", "seq": 1, "type": "ISSUE",
             "amount": 107, "balance_after": 107, "pending_after": 0, "ref_kind": "TASK",
             "ref_id": "task-1", "note": null, "actor_id": "system", "request_id": "req-1",
             "created_at": "2026-01-02T03:04:05.000006Z"}
    canonical = {"actor_id":"system","amount":107,"balance_after":107,
                 "created_at":"2026-01-02T03:04:05.000006Z","note":null,"pending_after":0,
                 "ref_id":"task-1","ref_kind":"TASK","request_id":"req-1","seq":1,
                 "type":"ISSUE","wallet_id":"00000000-0000-0000-0000-000000000001"}
    hash = 2437c815034460d1896b7874870e5b642558f5ff3c03d629755c73214d165a53

A second entry chained to it (seq 2, LOCK 100 → balance_after 7, pending_after 100,
ref CONVERSION "conv-1", note "conversion request", other fields as above) hashes to
973d78e9de5daf9d557de7d9ac82ff1615fbbfc0e329428eb0c353f08a075f76.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from server.core.chain import chain_hash
from server.core.context import RequestContext
from server.core.errors import FailedPrecondition, InvalidArgument, Reason


class EntryType(StrEnum):
    ISSUE = "ISSUE"
    LOCK = "LOCK"
    UNLOCK = "UNLOCK"
    BURN = "BURN"
    ADJUST = "ADJUST"


class RefKind(StrEnum):
    TASK = "TASK"
    CONVERSION = "CONVERSION"
    ADJUSTMENT = "ADJUSTMENT"


# Per entry type: (sign on the balance, sign on the pending lock), times the amount.
MOVES: dict[str, tuple[int, int]] = {
    EntryType.ISSUE: (1, 0),
    EntryType.LOCK: (-1, 1),
    EntryType.UNLOCK: (1, -1),
    EntryType.BURN: (0, -1),
    EntryType.ADJUST: (1, 0),
}

MAX_NOTE_LENGTH = 1000
INT64_MAX = 2**63 - 1


def replay_entry(type_: str, amount: int, balance: int, pending: int) -> tuple[int, int]:
    """(balance, pending) after an entry, unchecked (verification keeps totals after a
    reported problem); an unknown type moves nothing."""
    d_balance, d_pending = MOVES.get(type_, (0, 0))
    return balance + d_balance * amount, pending + d_pending * amount


def apply_entry(type_: str, amount: int, balance: int, pending: int) -> tuple[int, int]:
    """(balance_after, pending_after) of one entry; never negative.

    Raises InvalidArgument for a malformed entry (amount <= 0, or 0 for ADJUST, or an unknown
    type) and FailedPrecondition INSUFFICIENT_BALANCE / INSUFFICIENT_LOCK when it would take
    the balance / pending lock below zero.
    """
    if type_ not in MOVES:
        raise InvalidArgument.field("type", f"unknown ledger entry type {type_!r}")
    if type_ == EntryType.ADJUST:
        if amount == 0:
            raise InvalidArgument.field("amount", "an adjustment must not be 0")
    elif amount <= 0:
        raise InvalidArgument.field("amount", "must be > 0")
    new_balance, new_pending = replay_entry(type_, amount, balance, pending)
    if new_balance > INT64_MAX or new_pending > INT64_MAX:
        raise InvalidArgument.field("amount", "would overflow the balance (int64)")
    if new_balance < 0:
        raise FailedPrecondition(
            "insufficient BUZ balance",
            reason=Reason.INSUFFICIENT_BALANCE,
            metadata={"balance": str(balance), "amount": str(abs(amount))},
        )
    if new_pending < 0:
        raise FailedPrecondition(
            "insufficient locked BUZ",
            reason=Reason.INSUFFICIENT_LOCK,
            metadata={"pending_lock": str(pending), "amount": str(amount)},
        )
    return new_balance, new_pending


def check_note(note: str | None) -> None:
    if note is not None and len(note) > MAX_NOTE_LENGTH:
        raise InvalidArgument.field("note", f"must be at most {MAX_NOTE_LENGTH} characters")


def entry_fields(
    *,
    wallet_id: uuid.UUID | str,
    seq: int,
    type_: str,
    amount: int,
    balance_after: int,
    pending_after: int,
    ref_kind: str | None,
    ref_id: str | None,
    note: str | None,
    actor_id: str | None,
    request_id: str | None,
    created_at: datetime,
) -> dict[str, Any]:
    """The fields a ledger entry's hash covers (every stored field but id and the hashes)."""
    return {
        "wallet_id": str(wallet_id),
        "seq": seq,
        "type": str(type_),
        "amount": amount,
        "balance_after": balance_after,
        "pending_after": pending_after,
        "ref_kind": ref_kind,
        "ref_id": ref_id,
        "note": note,
        "actor_id": actor_id,
        "request_id": request_id,
        "created_at": created_at,
    }


@dataclass(slots=True)
class WalletState:
    """A wallet row locked FOR UPDATE in the current transaction; `post` keeps it current."""

    wallet_id: uuid.UUID
    user_id: uuid.UUID
    buz_balance: int
    pending_lock: int
    head_seq: int
    head_hash: str


@dataclass(frozen=True, slots=True)
class NewEntry:
    """One entry computed against a locked wallet (`prepare_entry`), not yet written."""

    wallet_id: uuid.UUID
    user_id: uuid.UUID
    seq: int
    type: str
    amount: int
    balance_after: int
    pending_after: int
    ref_kind: str | None
    ref_id: str | None
    note: str | None
    actor_id: str | None
    request_id: str | None
    created_at: datetime
    prev_hash: str
    hash: str

    def view(self, entry_id: int) -> EntryView:
        return EntryView(id=entry_id, **{name: getattr(self, name) for name in _NEW_ENTRY_FIELDS})


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryView(NewEntry):
    """A ledger entry as stored: the entry and its id."""

    id: int


_NEW_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(NewEntry))


def prepare_entry(
    state: WalletState,
    ctx: RequestContext,
    *,
    type: str,
    amount: int,
    ref_kind: str | None,
    ref_id: str | None,
    note: str | None = None,
) -> NewEntry:
    """The next entry of the locked wallet `state`: checked (apply_entry), chained and hashed.

    Pure (no I/O): the caller writes it (server/wallet/queries.py ENTRIES_CTES) and then
    calls `advance`.
    """
    check_note(note)
    balance, pending = apply_entry(type, amount, state.buz_balance, state.pending_lock)
    seq = state.head_seq + 1
    created_at = datetime.now(UTC)
    fields = entry_fields(
        wallet_id=state.wallet_id,
        seq=seq,
        type_=type,
        amount=amount,
        balance_after=balance,
        pending_after=pending,
        ref_kind=ref_kind,
        ref_id=ref_id,
        note=note,
        actor_id=ctx.actor_id,
        request_id=ctx.request_id,
        created_at=created_at,
    )
    return NewEntry(
        wallet_id=state.wallet_id,
        user_id=state.user_id,
        seq=seq,
        type=str(type),
        amount=amount,
        balance_after=balance,
        pending_after=pending,
        ref_kind=ref_kind,
        ref_id=ref_id,
        note=note,
        actor_id=ctx.actor_id,
        request_id=ctx.request_id,
        created_at=created_at,
        prev_hash=state.head_hash,
        hash=chain_hash(state.head_hash, fields),
    )


def advance(state: WalletState, entry: NewEntry) -> None:
    """Move the in-memory locked wallet past `entry` once it is written."""
    state.buz_balance, state.pending_lock = entry.balance_after, entry.pending_after
    state.head_seq, state.head_hash = entry.seq, entry.hash
