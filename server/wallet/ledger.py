"""The wallet ledger: the ONE place that writes ledger entries, and its verification.

Every change of a wallet is `post(...)` inside the caller's transaction:

1. the wallet row is locked (`SELECT … FOR UPDATE`; a use case touching several wallets
   calls `lock_wallets`, which locks them in ascending wallet id so two such use cases
   cannot deadlock);
2. `apply_entry` (pure) computes the balance and pending lock after the entry and raises
   FailedPrecondition (INSUFFICIENT_BALANCE / INSUFFICIENT_LOCK) instead of going negative;
3. the entry is hash-chained to the wallet head with server/chain.py;
4. ONE statement (a data-modifying CTE) inserts the entry and moves the wallet row
   (balance, pending, head_seq, head_hash).

The database CHECKs (balances >= 0, amount signs, UNIQUE(wallet_id, seq) and
UNIQUE(wallet_id, prev_hash)) and the write-once triggers stay as the last line of defence.
Entry types: ISSUE +balance; LOCK balance → pending; UNLOCK pending → balance;
BURN −pending; ADJUST ±balance (admin, reason required). Ledger calls do not write audit
events: the use case that calls them does (in the same transaction).

Ledger chain (the canonical encoding is server/chain.py's, shared with the audit log):

    hash = lowercase hex sha256( prev_hash ":" canonical(entry) )
    entry = {"wallet_id", "seq", "type", "amount", "balance_after", "pending_after",
             "ref_kind", "ref_id", "note", "actor_id", "request_id", "created_at"}

i.e. every stored column but the surrogate `id`, `hash` and `prev_hash`; ids are canonical
lowercase UUID text, integers are JSON numbers, absent values null, `created_at` RFC 3339
UTC with six fractional digits and "Z". prev_hash of seq 1 is GENESIS (64 zeros).
Test vector (tests/test_wallet_ledger.py::test_ledger_hash_test_vector):

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

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.chain import GENESIS, chain_hash
from server.context import RequestContext
from server.db.statement import sqlalchemy_text, unnest
from server.errors import FailedPrecondition, InvalidArgument, NotFound, Reason
from server.wallet.models import LedgerEntry, Wallet


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


class ProblemKind(StrEnum):
    """What verification found first (mirrors WalletProblemKind in the contract)."""

    HASH_MISMATCH = "HASH_MISMATCH"  # an entry was changed
    CHAIN_BROKEN = "CHAIN_BROKEN"  # prev link wrong: inserted, deleted or reordered before it
    SEQ_GAP = "SEQ_GAP"  # seq not 1, 2, 3, ...: deleted (or duplicated) entry
    REPLAY_MISMATCH = "REPLAY_MISMATCH"  # stored *_after disagree with the replay / negative
    HEAD_MISMATCH = "HEAD_MISMATCH"  # wallet head is not the last entry: truncated / appended
    BALANCE_MISMATCH = "BALANCE_MISMATCH"  # chain fine, wallet row balance differs


MAX_NOTE_LENGTH = 1000
INT64_MAX = 2**63 - 1


# --- pure rules ---------------------------------------------------------------------------


def apply_entry(type_: str, amount: int, balance: int, pending: int) -> tuple[int, int]:
    """(balance_after, pending_after) of one entry; never negative.

    Raises InvalidArgument for a malformed entry (amount <= 0, or 0 for ADJUST) and
    FailedPrecondition INSUFFICIENT_BALANCE / INSUFFICIENT_LOCK when it would take the
    balance / pending lock below zero.
    """
    if type_ == EntryType.ADJUST:
        if amount == 0:
            raise InvalidArgument.field("amount", "an adjustment must not be 0")
    elif amount <= 0:
        raise InvalidArgument.field("amount", "must be > 0")
    if type_ == EntryType.ISSUE:
        new_balance, new_pending = balance + amount, pending
    elif type_ == EntryType.LOCK:
        new_balance, new_pending = balance - amount, pending + amount
    elif type_ == EntryType.UNLOCK:
        new_balance, new_pending = balance + amount, pending - amount
    elif type_ == EntryType.BURN:
        new_balance, new_pending = balance, pending - amount
    elif type_ == EntryType.ADJUST:
        new_balance, new_pending = balance + amount, pending
    else:
        raise InvalidArgument.field("type", f"unknown ledger entry type {type_!r}")
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


# --- views --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryView:
    id: int
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


@dataclass(slots=True)
class WalletState:
    """A wallet row locked FOR UPDATE in the current transaction; `post` keeps it current."""

    wallet_id: uuid.UUID
    user_id: uuid.UUID
    buz_balance: int
    pending_lock: int
    head_seq: int
    head_hash: str


_ENTRY_COLUMNS = (
    LedgerEntry.id,
    LedgerEntry.wallet_id,
    Wallet.user_id,
    LedgerEntry.seq,
    LedgerEntry.type,
    LedgerEntry.amount,
    LedgerEntry.balance_after,
    LedgerEntry.pending_after,
    LedgerEntry.ref_kind,
    LedgerEntry.ref_id,
    LedgerEntry.note,
    LedgerEntry.actor_id,
    LedgerEntry.request_id,
    LedgerEntry.created_at,
    LedgerEntry.prev_hash,
    LedgerEntry.hash,
)


def entry_from_row(row: Any) -> EntryView:
    return EntryView(
        id=int(row.id),
        wallet_id=row.wallet_id,
        user_id=row.user_id,
        seq=int(row.seq),
        type=str(row.type),
        amount=int(row.amount),
        balance_after=int(row.balance_after),
        pending_after=int(row.pending_after),
        ref_kind=row.ref_kind,
        ref_id=row.ref_id,
        note=row.note,
        actor_id=row.actor_id,
        request_id=row.request_id,
        created_at=row.created_at,
        prev_hash=str(row.prev_hash),
        hash=str(row.hash),
    )


# --- writing ------------------------------------------------------------------------------

_LOCK_BY_USER = text(
    "SELECT id, user_id, buz_balance, pending_lock, head_seq, head_hash"
    " FROM wallets WHERE user_id = :user_id FOR UPDATE"
)
_LOCK_MANY = text(
    "SELECT id, user_id, buz_balance, pending_lock, head_seq, head_hash FROM wallets"
    " WHERE user_id = ANY(CAST(:user_ids AS uuid[])) ORDER BY id FOR UPDATE"
)
# The one statement text that writes ledger entries: two CTEs over arrays (any number of
# entries, of any number of wallets, in one statement). `ledger_entries_new` inserts them
# (RETURNING id, wallet_id, seq); `wallet_heads_moved` moves each wallet to its last entry
# (balance, pending, head), only where the wallet's head is still the one the first entry
# chained to (RETURNING id: a missing row means a stale WalletState). Placeholders are
# `{name}` for the keys of `entry_arrays`; `post` renders them as SQLAlchemy binds, and use
# cases that write entries inside a larger statement (server/wallet/reward_batch.py) compose
# them into an asyncpg statement (server/db/statement.py).
_ENTRY_COLUMNS_SQL = (
    ("wallet_id", "uuid"),
    ("seq", "bigint"),
    ("type", "text"),
    ("amount", "bigint"),
    ("balance_after", "bigint"),
    ("pending_after", "bigint"),
    ("ref_kind", "text"),
    ("ref_id", "text"),
    ("note", "text"),
    ("actor_id", "text"),
    ("request_id", "text"),
    ("created_at", "timestamptz"),
    ("prev_hash", "text"),
    ("hash", "text"),
)
_HEAD_COLUMNS_SQL = (
    ("wallet_id", "uuid"),
    ("prev_seq", "bigint"),
    ("balance_after", "bigint"),
    ("pending_after", "bigint"),
    ("seq", "bigint"),
    ("hash", "text"),
    ("created_at", "timestamptz"),
)


_ENTRY_COLUMN_LIST = ", ".join(name for name, _ in _ENTRY_COLUMNS_SQL)
ENTRIES_CTES = (
    "ledger_entries_new AS ("  # noqa: S608 (constant names and casts; values are binds)
    f" INSERT INTO ledger_entries ({_ENTRY_COLUMN_LIST})"
    f" SELECT {_ENTRY_COLUMN_LIST} FROM {unnest('e_', _ENTRY_COLUMNS_SQL, 'e')}"
    " RETURNING id, wallet_id, seq),"
    " wallet_heads_moved AS ("
    " UPDATE wallets w SET buz_balance = h.balance_after, pending_lock = h.pending_after,"
    "  head_seq = h.seq, head_hash = h.hash, updated_at = h.created_at"
    f" FROM {unnest('h_', _HEAD_COLUMNS_SQL, 'h')}"
    " WHERE w.id = h.wallet_id AND w.head_seq = h.prev_seq"
    " RETURNING w.id)"
)
_INSERT_AND_MOVE = sqlalchemy_text(
    "WITH "  # noqa: S608 (module constants only, values are binds)
    + ENTRIES_CTES
    + " SELECT (SELECT id FROM ledger_entries_new) AS entry_id,"
    " (SELECT count(*) FROM wallet_heads_moved) AS moved"
)


def entry_arrays(entries: Sequence[NewEntry]) -> dict[str, list[Any]]:
    """Values for ENTRIES_CTES: the entries (in chain order per wallet) and, per wallet, the
    head before its first entry and its state after its last."""
    values: dict[str, list[Any]] = {
        f"e_{name}": [getattr(entry, name) for entry in entries] for name, _ in _ENTRY_COLUMNS_SQL
    }
    first: dict[uuid.UUID, NewEntry] = {}
    last: dict[uuid.UUID, NewEntry] = {}
    for entry in entries:
        first.setdefault(entry.wallet_id, entry)
        last[entry.wallet_id] = entry
    heads = list(last.values())
    values["h_wallet_id"] = [entry.wallet_id for entry in heads]
    values["h_prev_seq"] = [first[entry.wallet_id].seq - 1 for entry in heads]
    for name in ("balance_after", "pending_after", "seq", "hash", "created_at"):
        values[f"h_{name}"] = [getattr(entry, name) for entry in heads]
    return values


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
        return EntryView(
            id=entry_id,
            wallet_id=self.wallet_id,
            user_id=self.user_id,
            seq=self.seq,
            type=self.type,
            amount=self.amount,
            balance_after=self.balance_after,
            pending_after=self.pending_after,
            ref_kind=self.ref_kind,
            ref_id=self.ref_id,
            note=self.note,
            actor_id=self.actor_id,
            request_id=self.request_id,
            created_at=self.created_at,
            prev_hash=self.prev_hash,
            hash=self.hash,
        )


def _check_note(note: str | None) -> None:
    if note is not None and len(note) > MAX_NOTE_LENGTH:
        raise InvalidArgument.field("note", f"must be at most {MAX_NOTE_LENGTH} characters")


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

    Pure (no I/O): the caller writes it with ENTRIES_CTES and then calls `advance`.
    """
    _check_note(note)
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


def wallet_state(row: Any) -> WalletState:
    """The WalletState of a wallet row locked in this transaction (id, user_id, balances, head)."""
    return WalletState(
        wallet_id=row.id,
        user_id=row.user_id,
        buz_balance=int(row.buz_balance),
        pending_lock=int(row.pending_lock),
        head_seq=int(row.head_seq),
        head_hash=str(row.head_hash),
    )


async def lock_wallet(session: AsyncSession, user_id: uuid.UUID) -> WalletState:
    """Lock the user's wallet row until the transaction ends; NOT_FOUND when there is none."""
    row = (await session.execute(_LOCK_BY_USER, {"user_id": user_id})).first()
    if row is None:
        raise NotFound("wallet not found", metadata={"user_id": str(user_id)})
    return wallet_state(row)


async def lock_wallets(
    session: AsyncSession, user_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, WalletState]:
    """Lock several wallets in ascending wallet id (the deadlock-free order), by user id."""
    wanted = sorted(set(user_ids))
    rows = (await session.execute(_LOCK_MANY, {"user_ids": [str(u) for u in wanted]})).all()
    states = {row.user_id: wallet_state(row) for row in rows}
    missing = [str(u) for u in wanted if u not in states]
    if missing:
        raise NotFound("wallet not found", metadata={"user_id": missing[0]})
    return states


async def post(
    session: AsyncSession,
    ctx: RequestContext,
    *,
    user_id: uuid.UUID,
    type: str,
    amount: int,
    ref_kind: str | None,
    ref_id: str | None,
    note: str | None = None,
    locked: WalletState | None = None,
) -> EntryView:
    """Append one entry to the user's wallet in the caller's transaction.

    `locked`: the wallet as returned by `lock_wallet`/`lock_wallets` in this transaction
    (saves the locking round trip); it is updated in place. Without it the wallet is
    locked here.
    """
    _check_note(note)
    state = locked if locked is not None else await lock_wallet(session, user_id)
    if state.user_id != user_id:
        raise ValueError("locked wallet belongs to another user")
    entry = prepare_entry(
        state, ctx, type=type, amount=amount, ref_kind=ref_kind, ref_id=ref_id, note=note
    )
    row = (await session.execute(_INSERT_AND_MOVE, entry_arrays([entry]))).one()
    if row.entry_id is None or row.moved != 1:
        # The wallet head moved without our lock: a caller passed a stale `locked`.
        raise RuntimeError("wallet head moved under a held lock (stale WalletState)")
    advance(state, entry)
    return entry.view(int(row.entry_id))


async def issue(
    session: AsyncSession,
    ctx: RequestContext,
    *,
    user_id: uuid.UUID,
    amount: int,
    ref_kind: str,
    ref_id: str,
    note: str | None = None,
    locked: WalletState | None = None,
) -> EntryView:
    """+amount to the spendable balance (task rewards)."""
    return await post(
        session,
        ctx,
        user_id=user_id,
        type=EntryType.ISSUE,
        amount=amount,
        ref_kind=ref_kind,
        ref_id=ref_id,
        note=note,
        locked=locked,
    )


async def lock(
    session: AsyncSession,
    ctx: RequestContext,
    *,
    user_id: uuid.UUID,
    amount: int,
    ref_id: str,
    ref_kind: str = RefKind.CONVERSION,
    note: str | None = None,
    locked: WalletState | None = None,
) -> EntryView:
    """Move amount balance → pending lock; FAILED_PRECONDITION INSUFFICIENT_BALANCE if short."""
    return await post(
        session,
        ctx,
        user_id=user_id,
        type=EntryType.LOCK,
        amount=amount,
        ref_kind=ref_kind,
        ref_id=ref_id,
        note=note,
        locked=locked,
    )


async def unlock(
    session: AsyncSession,
    ctx: RequestContext,
    *,
    user_id: uuid.UUID,
    amount: int,
    ref_id: str,
    ref_kind: str = RefKind.CONVERSION,
    note: str | None = None,
    locked: WalletState | None = None,
) -> EntryView:
    """Move amount pending lock → balance; FAILED_PRECONDITION INSUFFICIENT_LOCK if short."""
    return await post(
        session,
        ctx,
        user_id=user_id,
        type=EntryType.UNLOCK,
        amount=amount,
        ref_kind=ref_kind,
        ref_id=ref_id,
        note=note,
        locked=locked,
    )


async def burn(
    session: AsyncSession,
    ctx: RequestContext,
    *,
    user_id: uuid.UUID,
    amount: int,
    ref_id: str,
    ref_kind: str = RefKind.CONVERSION,
    note: str | None = None,
    locked: WalletState | None = None,
) -> EntryView:
    """Destroy amount of the pending lock; FAILED_PRECONDITION INSUFFICIENT_LOCK if short."""
    return await post(
        session,
        ctx,
        user_id=user_id,
        type=EntryType.BURN,
        amount=amount,
        ref_kind=ref_kind,
        ref_id=ref_id,
        note=note,
        locked=locked,
    )


async def adjust(
    session: AsyncSession,
    ctx: RequestContext,
    *,
    user_id: uuid.UUID,
    delta: int,
    reason: str,
    ref_id: str,
    locked: WalletState | None = None,
) -> EntryView:
    """±delta to the spendable balance (admin); the reason is required and stored as note."""
    if not reason.strip():
        raise InvalidArgument.field("reason", "is required")
    return await post(
        session,
        ctx,
        user_id=user_id,
        type=EntryType.ADJUST,
        amount=delta,
        ref_kind=RefKind.ADJUSTMENT,
        ref_id=ref_id,
        note=reason,
        locked=locked,
    )


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verification:
    wallet_id: uuid.UUID
    user_id: uuid.UUID
    ok: bool
    entries_checked: int
    stored_buz_balance: int
    replayed_buz_balance: int
    stored_pending_lock: int
    replayed_pending_lock: int
    stored_head_seq: int
    stored_head_hash: str
    replayed_head_hash: str
    first_bad_seq: int
    problem: ProblemKind | None
    detail: str
    verified_at: datetime


# One statement, hence one snapshot: the wallet row and its entries are consistent with each
# other even while other transactions append (no lock taken, writers are not blocked).
_VERIFY = text(
    "SELECT w.id AS w_id, w.user_id AS w_user_id, w.buz_balance AS w_balance,"
    " w.pending_lock AS w_pending, w.head_seq AS w_head_seq, w.head_hash AS w_head_hash,"
    " e.seq, e.type, e.amount, e.balance_after, e.pending_after, e.ref_kind, e.ref_id,"
    " e.note, e.actor_id, e.request_id, e.created_at, e.prev_hash, e.hash"
    " FROM wallets w LEFT JOIN ledger_entries e ON e.wallet_id = w.id"
    " WHERE w.id = :wallet_id ORDER BY e.seq, e.id"
)


def verify_rows(wallet: Mapping[str, Any], entries: Sequence[Mapping[Any, Any]]) -> Verification:
    """Replay `entries` (ordered by seq) against `wallet`; pure, so tests can feed it rows.

    Checks, per entry in order: seq continues 1, 2, 3 (SEQ_GAP), prev_hash links to the
    previous entry (CHAIN_BROKEN), the stored hash equals the recomputed one
    (HASH_MISMATCH), the replayed balance/pending are >= 0 and equal balance_after /
    pending_after (REPLAY_MISMATCH). Then the wallet head (HEAD_MISMATCH) and the wallet's
    balances (BALANCE_MISMATCH). The first problem is reported; the replay goes on to the
    end so the replayed totals cover every entry.
    """
    problem: ProblemKind | None = None
    bad_seq = 0
    detail = ""

    def fail(kind: ProblemKind, seq: int, why: str) -> None:
        nonlocal problem, bad_seq, detail
        if problem is None:
            problem, bad_seq, detail = kind, seq, why

    balance = pending = 0
    prev = GENESIS
    expected_seq = 1
    last_seq = 0
    for e in entries:
        seq = int(e["seq"])
        if seq != expected_seq:
            fail(ProblemKind.SEQ_GAP, expected_seq, f"expected seq {expected_seq}, found {seq}")
        if e["prev_hash"] != prev:
            fail(ProblemKind.CHAIN_BROKEN, seq, f"seq {seq}: prev_hash does not link")
        fields = entry_fields(
            wallet_id=wallet["id"],
            seq=seq,
            type_=e["type"],
            amount=int(e["amount"]),
            balance_after=int(e["balance_after"]),
            pending_after=int(e["pending_after"]),
            ref_kind=e["ref_kind"],
            ref_id=e["ref_id"],
            note=e["note"],
            actor_id=e["actor_id"],
            request_id=e["request_id"],
            created_at=e["created_at"],
        )
        recomputed = chain_hash(str(e["prev_hash"]), fields)
        if recomputed != e["hash"]:
            fail(ProblemKind.HASH_MISMATCH, seq, f"seq {seq}: stored hash differs")
        try:
            balance, pending = apply_entry(str(e["type"]), int(e["amount"]), balance, pending)
        except (FailedPrecondition, InvalidArgument) as exc:
            fail(ProblemKind.REPLAY_MISMATCH, seq, f"seq {seq}: {exc.message}")
            balance, pending = unchecked_apply(str(e["type"]), int(e["amount"]), balance, pending)
        if (balance, pending) != (int(e["balance_after"]), int(e["pending_after"])):
            fail(
                ProblemKind.REPLAY_MISMATCH,
                seq,
                f"seq {seq}: replay gives {balance}/{pending}, stored"
                f" {e['balance_after']}/{e['pending_after']}",
            )
        prev = str(e["hash"])
        last_seq = seq
        expected_seq = seq + 1
    replayed_head = prev
    head_seq, head_hash = int(wallet["head_seq"]), str(wallet["head_hash"])
    if last_seq != head_seq:
        fail(
            ProblemKind.HEAD_MISMATCH,
            min(last_seq, head_seq) + 1,
            f"wallet head_seq {head_seq}, last entry seq {last_seq}",
        )
    elif replayed_head != head_hash:
        fail(ProblemKind.HEAD_MISMATCH, head_seq, "wallet head_hash is not the last entry's hash")
    stored_balance, stored_pending = int(wallet["buz_balance"]), int(wallet["pending_lock"])
    if (stored_balance, stored_pending) != (balance, pending):
        fail(
            ProblemKind.BALANCE_MISMATCH,
            0,
            f"wallet {stored_balance}/{stored_pending}, replay {balance}/{pending}",
        )
    return Verification(
        wallet_id=wallet["id"],
        user_id=wallet["user_id"],
        ok=problem is None,
        entries_checked=len(entries),
        stored_buz_balance=stored_balance,
        replayed_buz_balance=balance,
        stored_pending_lock=stored_pending,
        replayed_pending_lock=pending,
        stored_head_seq=head_seq,
        stored_head_hash=head_hash,
        replayed_head_hash=replayed_head,
        first_bad_seq=bad_seq,
        problem=problem,
        detail=detail,
        verified_at=datetime.now(UTC),
    )


def unchecked_apply(type_: str, amount: int, balance: int, pending: int) -> tuple[int, int]:
    """The replay arithmetic without the checks (to keep totals after a reported problem)."""
    moves: dict[str, tuple[int, int]] = {
        EntryType.ISSUE: (amount, 0),
        EntryType.LOCK: (-amount, amount),
        EntryType.UNLOCK: (amount, -amount),
        EntryType.BURN: (0, -amount),
        EntryType.ADJUST: (amount, 0),
    }
    d_balance, d_pending = moves.get(type_, (0, 0))
    return balance + d_balance, pending + d_pending


async def verify_wallet(session: AsyncSession, wallet_id: uuid.UUID) -> Verification:
    """Replay one wallet's whole ledger (read-only); NOT_FOUND when the wallet is unknown."""
    rows = (await session.execute(_VERIFY, {"wallet_id": wallet_id})).mappings().all()
    if not rows:
        raise NotFound("wallet not found")
    first = rows[0]
    wallet = {
        "id": first["w_id"],
        "user_id": first["w_user_id"],
        "buz_balance": first["w_balance"],
        "pending_lock": first["w_pending"],
        "head_seq": first["w_head_seq"],
        "head_hash": first["w_head_hash"],
    }
    entries = [r for r in rows if r["seq"] is not None]
    return verify_rows(wallet, entries)


async def load_entry(session: AsyncSession, entry_id: int) -> EntryView:
    row = (
        await session.execute(
            select(*_ENTRY_COLUMNS)
            .join(Wallet, Wallet.id == LedgerEntry.wallet_id)
            .where(LedgerEntry.id == entry_id)
        )
    ).one()
    return entry_from_row(row)


async def list_entries(
    session: AsyncSession,
    wallet_id: uuid.UUID,
    *,
    types: Sequence[str] = (),
    before_seq: int | None = None,
    limit: int = 50,
) -> list[EntryView]:
    """Entries newest first (descending seq), keyset-paged: those with seq < before_seq."""
    query = (
        select(*_ENTRY_COLUMNS)
        .join(Wallet, Wallet.id == LedgerEntry.wallet_id)
        .where(LedgerEntry.wallet_id == wallet_id)
        .order_by(LedgerEntry.seq.desc())
        .limit(limit)
    )
    if types:
        query = query.where(LedgerEntry.type.in_(list(types)))
    if before_seq is not None:
        query = query.where(LedgerEntry.seq < before_seq)
    return [entry_from_row(row) for row in (await session.execute(query)).all()]


async def wallet_id_of(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID:
    found = (
        await session.execute(
            text("SELECT id FROM wallets WHERE user_id = :user_id"), {"user_id": user_id}
        )
    ).scalar()
    if found is None:
        raise NotFound("wallet not found", metadata={"user_id": str(user_id)})
    wallet_id: uuid.UUID = found
    return wallet_id
