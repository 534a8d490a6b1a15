"""WalletService through the real server: access, ledger paging, adjust, rewards, races."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from smartstart.wallet.v1 import wallet_service_pb2 as pb
from smartstart.wallet.v1 import wallet_service_pb2_grpc as pb_grpc

from server.core.chain import GENESIS, chain_hash
from server.db.session import Database
from tests.fixtures_server import MintToken, bearer, error_info
from tests.wallet.support import as_superuser, make_user, make_venture

SYSTEM = str(uuid.UUID(int=1))
ADMIN = str(uuid.UUID(int=2))
Metadata = tuple[tuple[str, str], ...]


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.WalletServiceStub:
    return pb_grpc.WalletServiceStub(channel)


@pytest.fixture
def system_md(mint_token: MintToken) -> Metadata:
    return bearer(mint_token(SYSTEM, roles=("system",)))


@pytest.fixture
def admin_md(mint_token: MintToken) -> Metadata:
    return bearer(mint_token(ADMIN, roles=("admin",)))


async def _fails(call: object, code: grpc.StatusCode, reason: str | None = None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    if reason is not None:
        detail = error_info(info.value)
        assert detail is not None and detail.reason == reason


def _task(
    user: uuid.UUID, reviewer: uuid.UUID, venture: uuid.UUID, task_id: str, **kw: object
) -> pb.RecordTaskAcceptedRequest:
    request = pb.RecordTaskAcceptedRequest(
        task_id=task_id,
        user_id=str(user),
        tier=pb.TASK_TIER_S,
        quality=5,
        reviewer_ids=[str(reviewer)],
        venture_id=str(venture),
        accepted_at=ts(datetime.now(UTC) - timedelta(minutes=1)),
    )
    for key, value in kw.items():
        setattr(request, key, value)
    return request


async def test_reward_wallet_ledger_and_verify_over_grpc(
    db: Database,
    stub: pb_grpc.WalletServiceStub,
    mint_token: MintToken,
    system_md: Metadata,
    admin_md: Metadata,
) -> None:
    user = await make_user(db)
    reviewer = await make_user(db, rep=121)
    venture = await make_venture(db)
    user_md = bearer(mint_token(str(user)))

    request = _task(user, reviewer, venture, "g-1")
    reward = await stub.RecordTaskAccepted(request, metadata=system_md)
    assert (reward.buz_computed, reward.buz_awarded, reward.xp_awarded) == (616, 616, 616)
    assert reward.reviewer_credibility == pytest.approx(1.1)
    assert not reward.withheld and not reward.replay
    assert reward.ledger_entry.type == pb.LEDGER_ENTRY_TYPE_ISSUE
    assert reward.ledger_entry.reference.kind == pb.LEDGER_REFERENCE_KIND_TASK
    # The cap day is the UTC day of acceptance (not of the call: they differ around midnight).
    day = request.accepted_at.ToDatetime().date()
    assert (reward.cap_day.year, reward.cap_day.month, reward.cap_day.day) == (
        day.year,
        day.month,
        day.day,
    )
    replay = await stub.RecordTaskAccepted(request, metadata=system_md)
    assert replay.replay and replay.ledger_entry == reward.ledger_entry
    await _fails(
        stub.RecordTaskAccepted(
            _task(user, reviewer, venture, "g-1", quality=4), metadata=system_md
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )
    got = await stub.GetTaskReward(pb.GetTaskRewardRequest(task_id="g-1"), metadata=admin_md)
    assert got.buz_awarded == 616 and not got.replay

    # a gate failure is not an error: it is reported in the reward
    no_kyc = await make_user(db, kyc="NONE")
    withheld = await stub.RecordTaskAccepted(
        _task(no_kyc, reviewer, venture, "g-2"), metadata=system_md
    )
    assert withheld.withheld and list(withheld.withheld_reasons) == [
        pb.WITHHELD_REASON_KYC_REQUIRED
    ]
    assert withheld.buz_awarded == 0 and withheld.xp_awarded == 616
    assert not withheld.HasField("ledger_entry")

    # admin adjustments, idempotent on request_id
    adjust = pb.AdjustBalanceRequest(
        user_id=str(user), delta=-16, reason="rounding correction", request_id="adj-1"
    )
    first = await stub.AdjustBalance(adjust, metadata=admin_md)
    again = await stub.AdjustBalance(adjust, metadata=admin_md)
    assert first == again
    assert first.wallet.buz_balance == 600 and first.entry.seq == 2
    assert first.entry.note == "rounding correction"
    assert first.entry.reference.kind == pb.LEDGER_REFERENCE_KIND_ADJUSTMENT
    adjust.delta = -17
    await _fails(
        stub.AdjustBalance(adjust, metadata=admin_md),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )
    await _fails(
        stub.AdjustBalance(
            pb.AdjustBalanceRequest(user_id=str(user), delta=-601, reason="x", request_id="a2"),
            metadata=admin_md,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_BALANCE",
    )
    for bad in (
        pb.AdjustBalanceRequest(user_id=str(user), delta=5, reason="", request_id="a3"),
        pb.AdjustBalanceRequest(user_id=str(user), delta=0, reason="x", request_id="a4"),
        pb.AdjustBalanceRequest(user_id=str(user), delta=5, reason="x", request_id=""),
    ):
        await _fails(stub.AdjustBalance(bad, metadata=admin_md), grpc.StatusCode.INVALID_ARGUMENT)
    for i in range(5):
        await stub.AdjustBalance(
            pb.AdjustBalanceRequest(
                user_id=str(user), delta=10, reason="goodwill", request_id=f"more-{i}"
            ),
            metadata=admin_md,
        )

    mine = await stub.GetMyWallet(pb.GetMyWalletRequest(), metadata=user_md)
    assert (mine.buz_balance, mine.pending_lock, mine.head_seq) == (650, 0, 7)
    assert mine == await stub.GetWallet(pb.GetWalletRequest(user_id=str(user)), metadata=admin_md)

    # paging newest first, then filtering by type
    seqs: list[int] = []
    token = ""
    while True:
        page = await stub.ListLedgerEntries(
            pb.ListLedgerEntriesRequest(page_size=3, page_token=token), metadata=user_md
        )
        seqs += [e.seq for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert seqs == [7, 6, 5, 4, 3, 2, 1]
    issues = await stub.ListLedgerEntries(
        pb.ListLedgerEntriesRequest(user_id=str(user), types=[pb.LEDGER_ENTRY_TYPE_ISSUE]),
        metadata=admin_md,
    )
    assert [e.seq for e in issues.entries] == [1]
    first_page = await stub.ListLedgerEntries(
        pb.ListLedgerEntriesRequest(page_size=2), metadata=user_md
    )
    await _fails(
        stub.ListLedgerEntries(
            pb.ListLedgerEntriesRequest(
                page_size=2,
                page_token=first_page.next_page_token,
                types=[pb.LEDGER_ENTRY_TYPE_BURN],
            ),
            metadata=user_md,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await _fails(
        stub.ListLedgerEntries(
            pb.ListLedgerEntriesRequest(types=[pb.LEDGER_ENTRY_TYPE_UNSPECIFIED]),
            metadata=user_md,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )

    verified = await stub.VerifyWallet(pb.VerifyWalletRequest(), metadata=user_md)
    assert verified.ok and verified.entries_checked == 7
    assert verified.replayed_buz_balance == verified.stored_buz_balance == 650
    assert verified.replayed_head_hash == mine.head_hash

    # tampering as a superuser shows up in VerifyWallet
    await as_superuser(
        db,
        "UPDATE ledger_entries SET note = 'forged' WHERE seq = 4 AND wallet_id ="
        " (SELECT id FROM wallets WHERE user_id = :u)",
        u=user,
    )
    broken = await stub.VerifyWallet(pb.VerifyWalletRequest(user_id=str(user)), metadata=admin_md)
    assert not broken.ok
    assert broken.problem_kind == pb.WALLET_PROBLEM_KIND_HASH_MISMATCH
    assert broken.first_bad_seq == 4


async def test_wallet_access_rules(
    db: Database,
    stub: pb_grpc.WalletServiceStub,
    mint_token: MintToken,
    system_md: Metadata,
    admin_md: Metadata,
) -> None:
    alice, bob = await make_user(db), await make_user(db)
    alice_md = bearer(mint_token(str(alice)))
    other = pb.ListLedgerEntriesRequest(user_id=str(bob))
    await _fails(
        stub.ListLedgerEntries(other, metadata=alice_md), grpc.StatusCode.PERMISSION_DENIED
    )
    await _fails(
        stub.VerifyWallet(pb.VerifyWalletRequest(user_id=str(bob)), metadata=alice_md),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await _fails(
        stub.GetWallet(pb.GetWalletRequest(user_id=str(bob)), metadata=alice_md),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await _fails(
        stub.AdjustBalance(
            pb.AdjustBalanceRequest(user_id=str(alice), delta=5, reason="me", request_id="r"),
            metadata=alice_md,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await _fails(
        stub.RecordTaskAccepted(pb.RecordTaskAcceptedRequest(task_id="x"), metadata=alice_md),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await _fails(stub.GetMyWallet(pb.GetMyWalletRequest()), grpc.StatusCode.UNAUTHENTICATED)
    stranger = bearer(mint_token(str(uuid.uuid4())))
    await _fails(
        stub.GetMyWallet(pb.GetMyWalletRequest(), metadata=stranger), grpc.StatusCode.NOT_FOUND
    )
    await _fails(
        stub.GetWallet(pb.GetWalletRequest(user_id=str(uuid.uuid4())), metadata=admin_md),
        grpc.StatusCode.NOT_FOUND,
    )
    await _fails(
        stub.GetTaskReward(pb.GetTaskRewardRequest(task_id="none"), metadata=system_md),
        grpc.StatusCode.NOT_FOUND,
    )
    # own wallet by explicit id is fine
    own = await stub.ListLedgerEntries(
        pb.ListLedgerEntriesRequest(user_id=str(alice)), metadata=alice_md
    )
    assert list(own.entries) == []


async def test_concurrent_rewards_over_grpc(
    db: Database, stub: pb_grpc.WalletServiceStub, system_md: Metadata, admin_md: Metadata
) -> None:
    user = await make_user(db)
    reviewer = await make_user(db, rep=121)
    venture = await make_venture(db)
    calls = [
        stub.RecordTaskAccepted(_task(user, reviewer, venture, f"c-{i}"), metadata=system_md)
        for i in range(40)
    ]
    replayed = _task(user, reviewer, venture, "c-replayed")
    calls += [stub.RecordTaskAccepted(replayed, metadata=system_md) for _ in range(20)]
    results = await asyncio.gather(*calls)
    assert sum(r.buz_awarded for r in results[:41]) == 2000
    assert sum(not r.replay for r in results[40:]) == 1
    assert len({r.buz_awarded for r in results[40:]}) == 1
    verified = await stub.VerifyWallet(pb.VerifyWalletRequest(user_id=str(user)), metadata=admin_md)
    assert verified.ok and verified.stored_buz_balance == 2000
    assert verified.entries_checked == sum(1 for r in results[:41] if r.buz_awarded)


def recompute_hash(entry: pb.LedgerEntry) -> str:
    """What a third party does with nothing but an API response and server/chain.py's rule:
    enum values lose their type prefix, empty optional strings are null."""
    created = entry.created_at.ToDatetime(tzinfo=UTC)
    ref_kind = pb.LedgerReferenceKind.Name(entry.reference.kind).removeprefix(
        "LEDGER_REFERENCE_KIND_"
    )
    fields = {
        "wallet_id": entry.wallet_id,
        "seq": entry.seq,
        "type": pb.LedgerEntryType.Name(entry.type).removeprefix("LEDGER_ENTRY_TYPE_"),
        "amount": entry.amount,
        "balance_after": entry.balance_after,
        "pending_after": entry.pending_after,
        "ref_kind": None if ref_kind == "UNSPECIFIED" else ref_kind,
        "ref_id": entry.reference.id or None,
        "note": entry.note or None,
        "actor_id": entry.actor_id or None,
        "request_id": entry.request_id or None,
        "created_at": created,
    }
    return chain_hash(entry.prev_hash, fields)


async def test_ledger_hashes_recompute_from_the_api_alone(
    db: Database, stub: pb_grpc.WalletServiceStub, system_md: Metadata, admin_md: Metadata
) -> None:
    user = await make_user(db)
    reviewer = await make_user(db, rep=121)
    venture = await make_venture(db)
    for i in range(3):
        await stub.RecordTaskAccepted(_task(user, reviewer, venture, f"h-{i}"), metadata=system_md)
    await stub.AdjustBalance(
        pb.AdjustBalanceRequest(user_id=str(user), delta=-5, reason="fix", request_id="adj-h"),
        metadata=admin_md,
    )
    listed = await stub.ListLedgerEntries(
        pb.ListLedgerEntriesRequest(user_id=str(user)), metadata=admin_md
    )
    entries = sorted(listed.entries, key=lambda e: e.seq)
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    prev = GENESIS
    for entry in entries:
        assert entry.prev_hash == prev
        assert entry.request_id
        assert recompute_hash(entry) == entry.hash
        prev = entry.hash
