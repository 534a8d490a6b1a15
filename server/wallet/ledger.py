"""The ledger write API: the ONE place that writes ledger entries.

Every change of a wallet is `post(...)` inside the caller's transaction (`adjust` for the
admin's ±balance, which carries a reason):

1. the wallet row is locked (`SELECT … FOR UPDATE`; a use case touching several wallets
   calls `queries.lock_wallets`, which locks them in ascending wallet id so two such use
   cases cannot deadlock, and passes each locked state as `locked`);
2. server/wallet/entries.py computes the balance and pending lock after the entry (raising
   FailedPrecondition INSUFFICIENT_BALANCE / INSUFFICIENT_LOCK instead of going negative)
   and chains the entry to the wallet head;
3. ONE statement (a data-modifying CTE) inserts the entry and moves the wallet row
   (balance, pending, head_seq, head_hash).

The database CHECKs (balances >= 0, amount signs, UNIQUE(wallet_id, seq) and
UNIQUE(wallet_id, prev_hash)) and the write-once triggers stay as the last line of defence.
Ledger calls do not write audit events: the use case that calls them does (in the same
transaction).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from server.core.context import RequestContext
from server.core.errors import InvalidArgument
from server.wallet import queries
from server.wallet.entries import (
    EntryType,
    EntryView,
    RefKind,
    WalletState,
    advance,
    check_note,
    prepare_entry,
)


async def post(
    session: AsyncSession,
    ctx: RequestContext,
    *,
    user_id: uuid.UUID,
    type: EntryType,
    amount: int,
    ref_kind: RefKind | None,
    ref_id: str | None,
    note: str | None = None,
    locked: WalletState | None = None,
) -> EntryView:
    """Append one entry to the user's wallet in the caller's transaction.

    `locked`: the wallet as returned by `queries.lock_wallet(s)` in this transaction (saves
    the locking round trip); it is updated in place. Without it the wallet is locked here.
    """
    check_note(note)
    state = locked if locked is not None else await queries.lock_wallet(session, user_id)
    if state.user_id != user_id:
        raise ValueError("locked wallet belongs to another user")
    entry = prepare_entry(
        state, ctx, type=type, amount=amount, ref_kind=ref_kind, ref_id=ref_id, note=note
    )
    entry_id = await queries.insert_entry(session, entry)
    advance(state, entry)
    return entry.view(entry_id)


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
