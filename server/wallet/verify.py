"""Replaying a wallet's ledger against its chain and its row: pure, so tests feed it rows."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from server.core.chain import GENESIS, chain_hash
from server.core.errors import FailedPrecondition, InvalidArgument
from server.wallet.entries import apply_entry, entry_fields, replay_entry


class ProblemKind(StrEnum):
    """What verification found first (mirrors WalletProblemKind in the contract)."""

    HASH_MISMATCH = "HASH_MISMATCH"  # an entry was changed
    CHAIN_BROKEN = "CHAIN_BROKEN"  # prev link wrong: inserted, deleted or reordered before it
    SEQ_GAP = "SEQ_GAP"  # seq not 1, 2, 3, ...: deleted (or duplicated) entry
    REPLAY_MISMATCH = "REPLAY_MISMATCH"  # stored *_after disagree with the replay / negative
    HEAD_MISMATCH = "HEAD_MISMATCH"  # wallet head is not the last entry: truncated / appended
    BALANCE_MISMATCH = "BALANCE_MISMATCH"  # chain fine, wallet row balance differs


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
            balance, pending = replay_entry(str(e["type"]), int(e["amount"]), balance, pending)
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
