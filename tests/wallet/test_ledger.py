"""The wallet ledger: entry rules, hash chain (test vector), verification, tampering, races."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.chain import GENESIS, canonical, chain_hash
from server.core.errors import FailedPrecondition, InvalidArgument, NotFound, Reason
from server.db.session import Database
from server.wallet import ledger, queries
from server.wallet.entries import MOVES, EntryType, apply_entry, entry_fields, replay_entry
from server.wallet.verify import ProblemKind, Verification, verify_rows
from tests.wallet.support import (
    SYSTEM,
    as_superuser,
    burn,
    issue,
    lock,
    make_user,
    unlock,
    wallet_row,
)

# --- pure ---------------------------------------------------------------------------------


def test_ledger_hash_test_vector() -> None:
    """The vector in server/wallet/entries.py's docstring: a third party can recompute it."""
    first = entry_fields(
        wallet_id="00000000-0000-0000-0000-000000000001",
        seq=1,
        type_="ISSUE",
        amount=107,
        balance_after=107,
        pending_after=0,
        ref_kind="TASK",
        ref_id="task-1",
        note=None,
        actor_id="system",
        request_id="req-1",
        created_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    )
    assert canonical(first) == (
        b'{"actor_id":"system","amount":107,"balance_after":107,'
        b'"created_at":"2026-01-02T03:04:05.000006Z","note":null,"pending_after":0,'
        b'"ref_id":"task-1","ref_kind":"TASK","request_id":"req-1","seq":1,'
        b'"type":"ISSUE","wallet_id":"00000000-0000-0000-0000-000000000001"}'
    )
    h1 = chain_hash(GENESIS, first)
    assert h1 == "2437c815034460d1896b7874870e5b642558f5ff3c03d629755c73214d165a53"
    second = {
        **first,
        "seq": 2,
        "type": "LOCK",
        "amount": 100,
        "balance_after": 7,
        "pending_after": 100,
        "ref_kind": "CONVERSION",
        "ref_id": "conv-1",
        "note": "conversion request",
    }
    assert (
        chain_hash(h1, second) == "973d78e9de5daf9d557de7d9ac82ff1615fbbfc0e329428eb0c353f08a075f76"
    )


@pytest.mark.parametrize(
    ("type_", "amount", "before", "after"),
    [
        ("ISSUE", 5, (0, 0), (5, 0)),
        ("LOCK", 5, (5, 1), (0, 6)),
        ("UNLOCK", 3, (0, 6), (3, 3)),
        ("BURN", 3, (3, 3), (3, 0)),
        ("ADJUST", 4, (3, 0), (7, 0)),
        ("ADJUST", -7, (7, 2), (0, 2)),
    ],
)
def test_apply_entry(
    type_: str, amount: int, before: tuple[int, int], after: tuple[int, int]
) -> None:
    assert apply_entry(type_, amount, *before) == after


@pytest.mark.parametrize(
    ("type_", "amount", "before", "reason"),
    [
        ("LOCK", 6, (5, 0), Reason.INSUFFICIENT_BALANCE),
        ("ADJUST", -6, (5, 9), Reason.INSUFFICIENT_BALANCE),
        ("UNLOCK", 2, (9, 1), Reason.INSUFFICIENT_LOCK),
        ("BURN", 2, (9, 1), Reason.INSUFFICIENT_LOCK),
    ],
)
def test_apply_entry_never_negative(
    type_: str, amount: int, before: tuple[int, int], reason: Reason
) -> None:
    with pytest.raises(FailedPrecondition) as info:
        apply_entry(type_, amount, *before)
    assert info.value.effective_reason == reason


@pytest.mark.parametrize(
    ("type_", "amount"), [("ISSUE", 0), ("LOCK", -1), ("BURN", 0), ("ADJUST", 0), ("NOPE", 1)]
)
def test_apply_entry_rejects_malformed(type_: str, amount: int) -> None:
    with pytest.raises(InvalidArgument):
        apply_entry(type_, amount, 10, 10)


# --- database -----------------------------------------------------------------------------


async def _history(db: Database, user_id: uuid.UUID) -> None:
    """ISSUE 1000, LOCK 300, UNLOCK 100, BURN 150, ADJUST +20, ADJUST -70 → 750 / 50."""
    async with db.transaction() as s:
        await issue(s, SYSTEM, user_id=user_id, amount=1000, ref_kind="TASK", ref_id="t1")
        await lock(s, SYSTEM, user_id=user_id, amount=300, ref_id="c1")
    async with db.transaction() as s:
        await unlock(s, SYSTEM, user_id=user_id, amount=100, ref_id="c1")
        await burn(s, SYSTEM, user_id=user_id, amount=150, ref_id="c1")
    async with db.transaction() as s:
        await ledger.adjust(s, SYSTEM, user_id=user_id, delta=20, reason="goodwill", ref_id="r1")
        await ledger.adjust(s, SYSTEM, user_id=user_id, delta=-70, reason="clawback", ref_id="r2")


async def _verify(db: Database, user_id: uuid.UUID) -> Verification:
    async with db.transaction() as s:
        return verify_rows(*await queries.ledger_rows(s, await queries.wallet_id_of(s, user_id)))


async def test_every_entry_type_chains_and_verifies(db: Database) -> None:
    user = await make_user(db)
    empty = await _verify(db, user)
    assert empty.ok and empty.entries_checked == 0 and empty.replayed_head_hash == GENESIS
    await _history(db, user)
    row = await wallet_row(db, user)
    assert (row.buz_balance, row.pending_lock, row.head_seq) == (750, 50, 6)
    result = await _verify(db, user)
    assert result.ok, result.detail
    assert result.entries_checked == 6
    assert (result.replayed_buz_balance, result.replayed_pending_lock) == (750, 50)
    assert result.replayed_head_hash == row.head_hash
    async with db.transaction() as s:
        entries = (
            await s.execute(
                text(
                    "SELECT seq, type, amount, prev_hash, hash, note FROM ledger_entries"
                    " WHERE wallet_id = :w ORDER BY seq"
                ),
                {"w": row.id},
            )
        ).all()
    assert [e.type for e in entries] == ["ISSUE", "LOCK", "UNLOCK", "BURN", "ADJUST", "ADJUST"]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[5].note == "clawback" and entries[5].amount == -70


async def test_post_refuses_negative_and_writes_nothing(db: Database) -> None:
    user = await make_user(db)
    async with db.transaction() as s:
        await issue(s, SYSTEM, user_id=user, amount=10, ref_kind="TASK", ref_id="t")
    for call, reason in (
        (lock, Reason.INSUFFICIENT_BALANCE),
        (unlock, Reason.INSUFFICIENT_LOCK),
        (burn, Reason.INSUFFICIENT_LOCK),
    ):
        with pytest.raises(FailedPrecondition) as info:
            async with db.transaction() as s:
                await call(s, SYSTEM, user_id=user, amount=11, ref_id="c")
        assert info.value.effective_reason == reason
    with pytest.raises(FailedPrecondition):
        async with db.transaction() as s:
            await ledger.adjust(s, SYSTEM, user_id=user, delta=-11, reason="x", ref_id="r")
    with pytest.raises(InvalidArgument):
        async with db.transaction() as s:
            await ledger.adjust(s, SYSTEM, user_id=user, delta=5, reason="  ", ref_id="r")
    with pytest.raises(NotFound):
        async with db.transaction() as s:
            await lock(s, SYSTEM, user_id=uuid.uuid4(), amount=1, ref_id="c")
    row = await wallet_row(db, user)
    assert (row.buz_balance, row.pending_lock, row.head_seq) == (10, 0, 1)
    assert (await _verify(db, user)).ok


async def test_database_checks_are_the_last_line_of_defence(db: Database) -> None:
    user = await make_user(db)
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            await s.execute(
                text("UPDATE wallets SET buz_balance = -1 WHERE user_id = :u"), {"u": user}
            )
    async with db.transaction() as s:
        await issue(s, SYSTEM, user_id=user, amount=5, ref_kind="TASK", ref_id="t")
    with pytest.raises(DBAPIError, match="write-once"):
        async with db.transaction() as s:
            await s.execute(text("UPDATE ledger_entries SET amount = 6"))
    with pytest.raises(DBAPIError, match="write-once"):
        async with db.transaction() as s:
            await s.execute(text("DELETE FROM ledger_entries"))


async def test_lock_wallets_in_id_order_no_deadlock(db: Database) -> None:
    a, b = await make_user(db), await make_user(db)
    async with db.transaction() as s:
        for u in (a, b):
            await issue(s, SYSTEM, user_id=u, amount=1000, ref_kind="TASK", ref_id="t")

    async def move(order: tuple[uuid.UUID, uuid.UUID], n: int) -> None:
        async def tx(s: AsyncSession) -> None:
            locked = await queries.lock_wallets(s, order)
            for u in order:
                await lock(s, SYSTEM, user_id=u, amount=1, ref_id=f"c{n}", locked=locked[u])
                await asyncio.sleep(0)

        await db.run(tx, attempts=1)

    await asyncio.gather(*(move((a, b) if n % 2 else (b, a), n) for n in range(20)))
    for u in (a, b):
        assert (await wallet_row(db, u)).pending_lock == 20
        assert (await _verify(db, u)).ok


@pytest.fixture
async def big_db(database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(database_url, pool_size=20, max_overflow=0)
    try:
        yield database
    finally:
        await database.dispose()


async def test_concurrent_lock_unlock_burn_never_negative(big_db: Database) -> None:
    db = big_db
    user = await make_user(db)
    async with db.transaction() as s:
        await issue(s, SYSTEM, user_id=user, amount=500, ref_kind="TASK", ref_id="t")
    rng = random.Random(7)
    plan = [
        (rng.choice(["LOCK", "LOCK", "UNLOCK", "BURN"]), rng.randint(1, 60)) for _ in range(150)
    ]
    calls = {"LOCK": lock, "UNLOCK": unlock, "BURN": burn}

    async def one(i: int, kind: str, amount: int) -> tuple[str, int] | None:
        async def tx(s: AsyncSession) -> None:
            await calls[kind](s, SYSTEM, user_id=user, amount=amount, ref_id=f"c{i}")

        try:
            await db.run(tx)
        except FailedPrecondition:
            return None
        return kind, amount

    done = [r for r in await asyncio.gather(*(one(i, k, a) for i, (k, a) in enumerate(plan))) if r]
    balance, pending = 500, 0
    for kind, amount in done:
        balance, pending = replay_entry(kind, amount, balance, pending)
    row = await wallet_row(db, user)
    assert row.buz_balance >= 0 and row.pending_lock >= 0
    assert (row.buz_balance, row.pending_lock) == (balance, pending)
    assert row.head_seq == 1 + len(done)
    assert 0 < len(done) < len(plan)  # some succeeded, some were refused
    result = await _verify(db, user)
    assert result.ok, result.detail


# --- tampering (as a database superuser, write-once triggers disabled) ----------------------


async def _tampered(db: Database, user: uuid.UUID, *statements: str) -> Verification:
    await _history(db, user)
    wallet_id = (await wallet_row(db, user)).id
    await as_superuser(db, *statements, w=wallet_id)
    return await _verify(db, user)


async def test_tamper_changed_amount(db: Database) -> None:
    user = await make_user(db)
    result = await _tampered(
        db, user, "UPDATE ledger_entries SET amount = 2000 WHERE wallet_id = :w AND seq = 1"
    )
    assert not result.ok
    assert (result.problem, result.first_bad_seq) == (ProblemKind.HASH_MISMATCH, 1)


async def test_tamper_changed_amount_with_recomputed_hash(db: Database) -> None:
    """Even a forger who re-hashes the row is caught: its successor's prev link breaks."""
    user = await make_user(db)
    await _history(db, user)
    wallet_id = (await wallet_row(db, user)).id
    async with db.transaction() as s:
        row = (
            await s.execute(
                text("SELECT * FROM ledger_entries WHERE wallet_id = :w AND seq = 3"),
                {"w": wallet_id},
            )
        ).one()
    fields = entry_fields(
        wallet_id=wallet_id,
        seq=3,
        type_=row.type,
        amount=row.amount + 1,
        balance_after=row.balance_after + 1,
        pending_after=row.pending_after - 1,
        ref_kind=row.ref_kind,
        ref_id=row.ref_id,
        note=row.note,
        actor_id=row.actor_id,
        request_id=row.request_id,
        created_at=row.created_at,
    )
    forged = chain_hash(row.prev_hash, fields)
    await as_superuser(
        db,
        "UPDATE ledger_entries SET amount = amount + 1, balance_after = balance_after + 1,"
        " pending_after = pending_after - 1, hash = :h WHERE wallet_id = :w AND seq = 3",
        w=wallet_id,
        h=forged,
    )
    result = await _verify(db, user)
    assert (result.problem, result.first_bad_seq) == (ProblemKind.CHAIN_BROKEN, 4)


async def test_tamper_deleted_entry(db: Database) -> None:
    user = await make_user(db)
    result = await _tampered(
        db, user, "DELETE FROM ledger_entries WHERE wallet_id = :w AND seq = 3"
    )
    assert (result.problem, result.first_bad_seq) == (ProblemKind.SEQ_GAP, 3)
    assert result.entries_checked == 5


async def test_tamper_truncated_tail(db: Database) -> None:
    user = await make_user(db)
    result = await _tampered(
        db, user, "DELETE FROM ledger_entries WHERE wallet_id = :w AND seq >= 5"
    )
    assert (result.problem, result.first_bad_seq) == (ProblemKind.HEAD_MISMATCH, 5)


async def test_tamper_inserted_forged_entry(db: Database) -> None:
    user = await make_user(db)
    result = await _tampered(
        db,
        user,
        "INSERT INTO ledger_entries (wallet_id, seq, type, amount, balance_after, pending_after,"
        " created_at, prev_hash, hash)"
        " SELECT :w, 7, 'ISSUE', 1000000, 1000750, 50, now(), head_hash, repeat('a', 64)"
        " FROM wallets WHERE id = :w",
    )
    assert (result.problem, result.first_bad_seq) == (ProblemKind.HASH_MISMATCH, 7)


async def test_tamper_inserted_in_the_middle(db: Database) -> None:
    """Insert by shifting later entries up (UNIQUE(wallet_id, prev_hash) already refuses a
    forged row that names the real predecessor, so the forger must pick another prev)."""
    user = await make_user(db)
    result = await _tampered(
        db,
        user,
        "UPDATE ledger_entries SET seq = seq + 100 WHERE wallet_id = :w AND seq >= 4",
        "UPDATE ledger_entries SET seq = seq - 99 WHERE wallet_id = :w AND seq >= 104",
        "INSERT INTO ledger_entries (wallet_id, seq, type, amount, balance_after, pending_after,"
        " created_at, prev_hash, hash)"
        " SELECT :w, 4, 'ISSUE', 5, balance_after + 5, pending_after, now(), repeat('c', 64),"
        " repeat('b', 64)"
        " FROM ledger_entries WHERE wallet_id = :w AND seq = 3",
    )
    assert (result.problem, result.first_bad_seq) == (ProblemKind.CHAIN_BROKEN, 4)
    assert result.entries_checked == 7


async def test_tamper_reordered_entries(db: Database) -> None:
    user = await make_user(db)
    result = await _tampered(
        db,
        user,
        "UPDATE ledger_entries SET seq = 1000 WHERE wallet_id = :w AND seq = 2",
        "UPDATE ledger_entries SET seq = 2 WHERE wallet_id = :w AND seq = 3",
        "UPDATE ledger_entries SET seq = 3 WHERE wallet_id = :w AND seq = 1000",
    )
    assert (result.problem, result.first_bad_seq) == (ProblemKind.CHAIN_BROKEN, 2)


async def test_tamper_wallet_balance(db: Database) -> None:
    user = await make_user(db)
    result = await _tampered(db, user, "UPDATE wallets SET buz_balance = 1000000 WHERE id = :w")
    assert (result.problem, result.first_bad_seq) == (ProblemKind.BALANCE_MISMATCH, 0)
    assert result.replayed_buz_balance == 750 and result.stored_buz_balance == 1_000_000


def test_every_entry_type_has_its_move() -> None:
    """EntryType is the one definition (the model's CHECK is built from it; tests/db checks
    the migrated database agrees); every type must say what it moves."""
    assert set(MOVES) == set(EntryType)


async def test_tamper_appended_entry_with_valid_hash(db: Database) -> None:
    """A forger who appends a correctly hashed entry but cannot move the wallet head."""
    user = await make_user(db)
    await _history(db, user)
    wallet = await wallet_row(db, user)
    created = datetime.now(UTC)
    fields = entry_fields(
        wallet_id=wallet.id,
        seq=7,
        type_="ISSUE",
        amount=1_000,
        balance_after=wallet.buz_balance + 1_000,
        pending_after=wallet.pending_lock,
        ref_kind="TASK",
        ref_id="forged",
        note=None,
        actor_id="system",
        request_id="forged",
        created_at=created,
    )
    await as_superuser(
        db,
        "INSERT INTO ledger_entries (wallet_id, seq, type, amount, balance_after, pending_after,"
        " ref_kind, ref_id, note, actor_id, request_id, created_at, prev_hash, hash)"
        " VALUES (:wallet_id, :seq, :type, :amount, :balance_after, :pending_after, :ref_kind,"
        " :ref_id, :note, :actor_id, :request_id, :created_at, :prev, :hash)",
        **fields,
        prev=wallet.head_hash,
        hash=chain_hash(wallet.head_hash, fields),
    )
    result = await _verify(db, user)
    assert (result.problem, result.first_bad_seq) == (ProblemKind.HEAD_MISMATCH, 7)
