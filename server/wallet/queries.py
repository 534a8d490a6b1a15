"""The wallet package's SQL: wallet rows, ledger entries, task rewards.

Module-constant statements. The ledger write (ENTRIES_CTES) is over arrays, so one statement
writes any number of entries of any number of wallets; the reward batch
(server/wallet/reward_batch.py, a measured hot path) folds it into its own statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import NotFound
from server.core.pagination import TimeKey
from server.db.statement import sqlalchemy_text, unnest
from server.wallet.domain import RewardView, WalletView
from server.wallet.entries import EntryView, NewEntry, WalletState
from server.wallet.models import LedgerEntry, Wallet

# --- wallet rows ------------------------------------------------------------------------------

_LOCK_BY_USER = text(
    "SELECT id, user_id, buz_balance, pending_lock, head_seq, head_hash"
    " FROM wallets WHERE user_id = :user_id FOR UPDATE"
)
_LOCK_MANY = text(
    "SELECT id, user_id, buz_balance, pending_lock, head_seq, head_hash FROM wallets"
    " WHERE user_id = ANY(CAST(:user_ids AS uuid[])) ORDER BY id FOR UPDATE"
)
_WALLET = text(
    "SELECT id, user_id, buz_balance, pending_lock, head_seq, head_hash, created_at, updated_at"
    " FROM wallets WHERE user_id = :user_id"
)


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


async def load_wallet(session: AsyncSession, user_id: uuid.UUID) -> WalletView:
    row = (await session.execute(_WALLET, {"user_id": user_id})).first()
    if row is None:
        raise NotFound("user not found")
    return WalletView(
        user_id=row.user_id,
        wallet_id=row.id,
        buz_balance=int(row.buz_balance),
        pending_lock=int(row.pending_lock),
        head_seq=int(row.head_seq),
        head_hash=str(row.head_hash),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


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


# --- ledger entries ---------------------------------------------------------------------------

# The one statement text that writes ledger entries: two CTEs over arrays (any number of
# entries, of any number of wallets, in one statement). `ledger_entries_new` inserts them
# (RETURNING id, wallet_id, seq); `wallet_heads_moved` moves each wallet to its last entry
# (balance, pending, head), only where the wallet's head is still the one the first entry
# chained to (RETURNING id: a missing row means a stale WalletState). Placeholders are
# `{name}` for the keys of `entry_arrays`; `insert_entry` renders them as SQLAlchemy binds, and use
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


async def insert_entry(session: AsyncSession, entry: NewEntry) -> int:
    """Write one entry and move its wallet's head; the entry's id. The wallet must be locked
    in this transaction at the head the entry chains to."""
    row = (await session.execute(_INSERT_AND_MOVE, entry_arrays([entry]))).one()
    if row.entry_id is None or row.moved != 1:
        # The wallet head moved without our lock: a caller passed a stale WalletState.
        raise RuntimeError("wallet head moved under a held lock (stale WalletState)")
    return int(row.entry_id)


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


async def ledger_rows(
    session: AsyncSession, wallet_id: uuid.UUID
) -> tuple[Mapping[str, Any], list[Mapping[Any, Any]]]:
    """The wallet row and its entries in seq order, from one snapshot; NOT_FOUND when the
    wallet is unknown."""
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
    return wallet, [r for r in rows if r["seq"] is not None]


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


# --- task rewards -----------------------------------------------------------------------------

_READ_REWARD = text("SELECT * FROM task_rewards WHERE task_id = :task_id")


def reward_from_row(row: Any, entry: EntryView | None, *, replay: bool) -> RewardView:
    return RewardView(
        task_id=row.task_id,
        user_id=row.user_id,
        venture_id=row.venture_id,
        tier=row.tier,
        quality=int(row.quality),
        reviewer_ids=tuple(row.reviewer_ids),
        accepted_at=row.accepted_at,
        accepted_day=row.accepted_day,
        reviewer_cred_milli=int(row.reviewer_cred_milli),
        buz_computed=int(row.buz_computed),
        buz_awarded=int(row.buz_awarded),
        buz_capped=int(row.buz_capped),
        withheld_reasons=tuple(row.withheld_reasons),
        xp_awarded=int(row.xp_awarded),
        ledger_entry=entry,
        replay=replay,
        created_at=row.created_at,
    )


async def load_reward(
    session: AsyncSession, task_id: str, *, replay: bool
) -> tuple[str, RewardView] | None:
    """The stored reward of `task_id` and its payload hash, or None."""
    row = (await session.execute(_READ_REWARD, {"task_id": task_id})).first()
    if row is None:
        return None
    entry = None if row.ledger_entry_id is None else await load_entry(session, row.ledger_entry_id)
    return str(row.payload_hash), reward_from_row(row, entry, replay=replay)


_LIST_REWARDS = text(
    "SELECT * FROM task_rewards WHERE user_id = :user_id"
    " AND (CAST(:before_at AS timestamptz) IS NULL"
    "  OR (created_at, task_id) < (:before_at, CAST(:before_task AS text)))"
    " ORDER BY created_at DESC, task_id DESC LIMIT :limit"
)


async def list_rewards(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    before: TimeKey | None,
    limit: int,
) -> list[RewardView]:
    """A user's rewards newest first (withheld and capped ones too), keyset-paged on
    (created_at, task_id), each with its ISSUE entry when it has one."""
    rows = (
        await session.execute(
            _LIST_REWARDS,
            {
                "user_id": user_id,
                "before_at": before[0] if before else None,
                "before_task": before[1] if before else None,
                "limit": limit,
            },
        )
    ).all()
    entry_ids = [int(r.ledger_entry_id) for r in rows if r.ledger_entry_id is not None]
    entries: dict[int, EntryView] = {}
    if entry_ids:
        found = await session.execute(
            select(*_ENTRY_COLUMNS)
            .join(Wallet, Wallet.id == LedgerEntry.wallet_id)
            .where(LedgerEntry.id.in_(entry_ids))
        )
        entries = {int(e.id): entry_from_row(e) for e in found.all()}
    return [
        reward_from_row(
            r,
            None if r.ledger_entry_id is None else entries[int(r.ledger_entry_id)],
            replay=False,
        )
        for r in rows
    ]
