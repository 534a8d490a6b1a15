"""Conversion requests through the real server: the request (amounts, every refusal in the
contract's order), each transition out of PENDING once, and what each refusal leaves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from smartstart.conversion.v1 import conversion_service_pb2 as pb
from smartstart.ops.v1 import ops_service_pb2_grpc as ops_grpc
from smartstart.wallet.v1 import wallet_service_pb2 as wallet_pb

from server.db.session import Database
from tests.conversion.support import (
    BOARD,
    Api,
    Clock,
    assert_books_balance,
    every_page,
    fails,
    scalar,
)
from tests.fixtures_server import MintToken, ServerFactory, rpc_status_of
from tests.ops.support import update
from tests.wallet.support import as_superuser, make_user

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS


async def _funded(db: Database, api: Api, buz: int = 10_000, **user: Any) -> uuid.UUID:
    user_id = await make_user(db, **user)
    if buz:
        await api.fund(user_id, buz)
    return user_id


async def _written(db: Database) -> tuple[int, ...]:
    """Rows a refused call must not add or change."""
    return (
        await scalar(db, "SELECT count(*) FROM ledger_entries"),
        await scalar(db, "SELECT count(*) FROM audit_events"),
        await scalar(db, "SELECT count(*) FROM conversion_requests"),
        await scalar(db, "SELECT count(*) FROM equity_grants"),
        await scalar(db, "SELECT sum(pending_bps) + sum(granted_bps) FROM ventures"),
        await scalar(db, "SELECT sum(buz_balance) * 7 + sum(pending_lock) FROM wallets"),
        await scalar(db, "SELECT count(*) FROM conversion_requests WHERE status <> 'PENDING'"),
    )


def _ledger(api: Api, user: uuid.UUID) -> Any:
    return api.wallet.ListLedgerEntries(
        wallet_pb.ListLedgerEntriesRequest(user_id=str(user)), metadata=api.admin
    )


async def test_a_request_locks_only_what_the_granted_bp_need(db: Database, api: Api) -> None:
    user = await _funded(db, api, 5000)
    venture = await api.venture(pool_bps=1000)
    window = await api.window(333)
    conversion = await api.request(user, window, venture, 1000, request_id="req-1")
    assert conversion.status == pb.CONVERSION_STATUS_PENDING
    # floor(1000 × 333 / 10,000) = 33 bp; ceil(33 × 10,000 / 333) = 991 BUZ locked
    assert (conversion.granted_bps, conversion.buz_locked, conversion.buz_requested) == (
        33,
        991,
        1000,
    )
    assert conversion.equity_rate_bps == 333 and conversion.user_id == str(user)
    assert not conversion.HasField("resolved_at") and not conversion.decided_by

    wallet = await api.wallet_of(user)
    assert (wallet.buz_balance, wallet.pending_lock) == (4009, 991)
    lock = (await _ledger(api, user)).entries[0]
    assert lock.type == wallet_pb.LEDGER_ENTRY_TYPE_LOCK and lock.amount == 991
    assert lock.reference.kind == wallet_pb.LEDGER_REFERENCE_KIND_CONVERSION
    assert lock.reference.id == conversion.id
    got = await api.conv.GetVenture(pb.GetVentureRequest(venture_id=venture.id), metadata=api.board)
    assert (got.pending_bps, got.granted_bps, got.available_bps) == (33, 0, 967)

    # a retry answers the first call; another payload under the same id is a conflict
    assert await api.request(user, window, venture, 1000, request_id="req-1") == conversion
    await fails(
        api.request(user, window, venture, 2000, request_id="req-1"),
        ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )
    assert (await api.wallet_of(user)).pending_lock == 991
    await assert_books_balance(db, user)


@pytest.mark.parametrize(
    ("rate", "buz", "bp", "locked"),
    [
        (100, 100, 1, 100),
        (100, 199, 1, 100),
        (100, 2550, 25, 2500),
        (333, 31, 1, 31),  # the minimum at 333: ceil(10,000 / 333)
        (333, 1000, 33, 991),
        (3, 3334, 1, 3334),
        (3, 6667, 2, 6667),  # ceil(20,000 / 3)
        (7, 5000, 3, 4286),
        (1, 10_000, 1, 10_000),
        (1, 19_999, 1, 10_000),
        (10_000, 1, 1, 1),
        (10_000, 250, 250, 250),
    ],
)
async def test_rounding_at_rate_boundaries(
    db: Database, api: Api, rate: int, buz: int, bp: int, locked: int
) -> None:
    user = await _funded(db, api, 20_000)
    conversion = await api.request(user, await api.window(rate), await api.venture(10_000), buz)
    assert (conversion.granted_bps, conversion.buz_locked) == (bp, locked)
    assert (await api.wallet_of(user)).pending_lock == locked


@pytest.mark.parametrize(
    ("rate", "buz", "minimum"), [(100, 99, 100), (333, 30, 31), (1, 9999, 10_000)]
)
async def test_zero_bp_names_the_minimum(
    db: Database, api: Api, rate: int, buz: int, minimum: int
) -> None:
    user = await _funded(db, api, 20_000)
    venture, window = await api.venture(), await api.window(rate)
    before = await _written(db)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.request(user, window, venture, buz)
    assert caught.value.code() == INVALID_ARGUMENT
    details = rpc_status_of(caught.value).details
    info = error_details_pb2.ErrorInfo()
    violations = error_details_pb2.BadRequest()
    assert any(d.Unpack(info) for d in details if d.Is(info.DESCRIPTOR))
    assert any(d.Unpack(violations) for d in details if d.Is(violations.DESCRIPTOR))
    assert info.reason == "BELOW_MINIMUM"
    assert dict(info.metadata) == {"min_buz_amount": str(minimum)}
    assert [v.field for v in violations.field_violations] == ["buz_amount"]
    assert await _written(db) == before
    # the minimum itself grants 1 bp
    assert (await api.request(user, window, venture, minimum)).granted_bps == 1


async def test_refusals_in_the_contracts_order(
    db: Database, api: Api, server_factory: ServerFactory, mint_token: MintToken
) -> None:
    venture, window = await api.venture(pool_bps=10), await api.window(100)
    user = await _funded(db, api, 2000)
    unknown = str(uuid.uuid4())
    before = await _written(db)

    async def refused(code: grpc.StatusCode, reason: str, call: Any) -> dict[str, str]:
        info = await fails(call, code, reason)
        assert await _written(db) == before
        return dict(info.metadata)

    def ask(who: uuid.UUID, buz: int = 500, **ids: str) -> Any:
        return api.conv.RequestConversion(
            pb.RequestConversionRequest(
                window_id=ids.get("window_id", window.id),
                venture_id=ids.get("venture_id", venture.id),
                buz_amount=buz,
                request_id=f"r-{uuid.uuid4()}",
            ),
            metadata=api.user(who),
        )

    await refused(NOT_FOUND, "NOT_FOUND", ask(user, window_id=unknown))
    await refused(NOT_FOUND, "NOT_FOUND", ask(user, venture_id=unknown))
    for malformed in (ask(user, 0), ask(user, -5), ask(user, window_id="nope")):
        await refused(INVALID_ARGUMENT, "INVALID_ARGUMENT", malformed)
    later = datetime.now(UTC) + timedelta(days=1)
    scheduled = await api.window(100, opens_at=later, closes_at=later + timedelta(days=1))
    before = await _written(db)
    metadata = await refused(
        FAILED_PRECONDITION, "WINDOW_NOT_OPEN", ask(user, window_id=scheduled.id)
    )
    assert metadata == {"status": "SCHEDULED"}
    # every gate fails: KYC is named first, then reputation, then the device
    nobody = await _funded(db, api, 2000, kyc="NONE", rep=10, compliant=None)
    before = await _written(db)
    await refused(FAILED_PRECONDITION, "KYC_REQUIRED", ask(nobody))
    low = await _funded(db, api, 2000, rep_milli=59_999, compliant=False)
    before = await _written(db)
    await refused(FAILED_PRECONDITION, "REPUTATION_TOO_LOW", ask(low))
    stale = await _funded(
        db, api, 2000, reported_at=datetime.now(UTC) - timedelta(hours=72, minutes=1)
    )
    before = await _written(db)
    await refused(FAILED_PRECONDITION, "DEVICE_NOT_COMPLIANT", ask(stale))
    # BELOW_MINIMUM comes after the gates
    await refused(FAILED_PRECONDITION, "KYC_REQUIRED", ask(nobody, 1))
    await refused(INVALID_ARGUMENT, "BELOW_MINIMUM", ask(user, 99))

    first = await api.request(user, window, venture, 500)
    before = await _written(db)
    assert await refused(ALREADY_EXISTS, "ALREADY_EXISTS", ask(user, 700)) == {
        "conversion_id": first.id
    }
    # pool 10 bp, 5 reserved: 6 more do not fit (the duplicate check came first)
    other = await _funded(db, api, 2000)
    before = await _written(db)
    assert await refused(FAILED_PRECONDITION, "POOL_EXHAUSTED", ask(other, 600)) == {
        "available_bps": "5"
    }
    poor = await _funded(db, api, 499)
    before = await _written(db)
    metadata = await refused(FAILED_PRECONDITION, "INSUFFICIENT_BALANCE", ask(poor, 500))
    assert metadata["amount"] == "500"
    assert (await api.request(poor, window, venture, 400)).buz_locked == 400
    await assert_books_balance(db, user, other, poor)


async def test_a_closed_or_finalized_window_takes_no_request(
    db: Database, server_factory: ServerFactory, mint_token: MintToken
) -> None:
    clock = Clock(datetime.now(UTC))
    running = await server_factory(clock=clock)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        api = Api.over(channel, mint_token, clock)
        user = await _funded(db, api, 2000)
        venture = await api.venture()
        window = await api.window(100, opens_at=clock.now, closes_at=clock.now + timedelta(hours=1))
        await api.request(user, window, venture, 100)
        clock.move(hours=1)  # closes_at reached; the job has not run yet
        info = await fails(api.request(user, window, await api.venture(), 100), FAILED_PRECONDITION)
        assert (info.reason, dict(info.metadata)) == ("WINDOW_NOT_OPEN", {"status": "CLOSED"})
        await running.services.scheduler.run_now("conversion_windows")
        got = await api.conv.GetWindow(pb.GetWindowRequest(window_id=window.id), metadata=api.board)
        assert got.status == pb.WINDOW_STATUS_CLOSED
        await api.conv.FinalizeWindow(
            pb.FinalizeWindowRequest(window_id=window.id, request_id="fin"), metadata=api.board
        )
        info = await fails(api.request(user, window, venture, 100), FAILED_PRECONDITION)
        assert (info.reason, dict(info.metadata)) == ("WINDOW_NOT_OPEN", {"status": "FINALIZED"})
        await assert_books_balance(db, user)


async def test_gates_follow_their_switches(
    db: Database, server_factory: ServerFactory, mint_token: MintToken
) -> None:
    running = await server_factory()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        api = Api.over(channel, mint_token)
        ops = ops_grpc.OpsServiceStub(channel)
        for key in ("gates.require_kyc", "gates.require_device_compliance"):
            await ops.UpdateSetting(update(key, False), metadata=api.admin)
        user = await _funded(db, api, 1000, kyc="FAILED", compliant=None)
        window, venture = await api.window(100), await api.venture()
        assert (await api.request(user, window, venture, 1000)).granted_bps == 10
        low = await _funded(db, api, 1000, kyc="FAILED", rep=59, compliant=None)
        await fails(
            api.request(low, window, venture, 1000), FAILED_PRECONDITION, "REPUTATION_TOO_LOW"
        )


async def test_each_transition_happens_once(db: Database, api: Api) -> None:
    user = await _funded(db, api, 10_000)
    stranger = await _funded(db, api, 0)
    window = await api.window(100)
    ventures = [await api.venture(pool_bps=100) for _ in range(3)]
    approved, rejected, cancelled = [await api.request(user, window, v, 1000) for v in ventures]
    assert (await api.wallet_of(user)).pending_lock == 3000

    # another user's conversion does not exist for them; the board sees every one
    for call in (
        api.conv.GetConversion(
            pb.GetConversionRequest(conversion_id=approved.id), metadata=api.user(stranger)
        ),
        api.cancel(stranger, approved.id),
        api.conv.CancelConversion(
            pb.CancelConversionRequest(conversion_id=approved.id, request_id="b"),
            metadata=api.board,
        ),
    ):
        await fails(call, NOT_FOUND, "NOT_FOUND")
    for md in (api.board, api.admin, api.user(user)):
        seen = await api.conv.GetConversion(
            pb.GetConversionRequest(conversion_id=approved.id), metadata=md
        )
        assert seen == approved

    request = pb.ApproveConversionRequest(
        conversion_id=approved.id, note="welcome", request_id="ok"
    )
    touched = "SELECT count(*) FROM user_metrics WHERE user_id = :u AND updated_at > :t"
    since = await scalar(db, "SELECT now()")
    assert await scalar(db, touched, u=user, t=since) == 0
    done = await api.conv.ApproveConversion(request, metadata=api.board)
    # approvedConversions is counted from the requests; the badge job sees the user moved
    assert await scalar(db, touched, u=user, t=since) == 1
    assert done.status == pb.CONVERSION_STATUS_APPROVED
    assert (done.decided_by, done.decision_note) == (BOARD, "welcome")
    assert done.HasField("resolved_at")
    # the same request id answers the first approval again: no second burn
    assert await api.conv.ApproveConversion(request, metadata=api.board) == done
    request.note = "changed"
    await fails(
        api.conv.ApproveConversion(request, metadata=api.board),
        ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )
    gone = await api.reject(rejected.id, note="too early")
    assert (gone.status, gone.decision_note) == (pb.CONVERSION_STATUS_REJECTED, "too early")
    await fails(api.reject(cancelled.id, note=" "), INVALID_ARGUMENT, "INVALID_ARGUMENT")
    back = await api.cancel(user, cancelled.id)
    assert back.status == pb.CONVERSION_STATUS_CANCELLED and not back.decided_by

    before = await _written(db)
    illegal = [
        (api.approve(approved.id), "APPROVED"),  # approve twice
        (api.reject(approved.id), "APPROVED"),  # reject after approve
        (api.cancel(user, approved.id), "APPROVED"),  # cancel after decision
        (api.cancel(user, rejected.id), "REJECTED"),
        (api.approve(rejected.id), "REJECTED"),
        (api.reject(rejected.id), "REJECTED"),
        (api.approve(cancelled.id), "CANCELLED"),
        (api.cancel(user, cancelled.id), "CANCELLED"),
    ]
    for call, status in illegal:
        info = await fails(call, FAILED_PRECONDITION, "INVALID_STATE")
        assert dict(info.metadata) == {"status": status}
    assert await _written(db) == before

    wallet = await api.wallet_of(user)
    assert (wallet.buz_balance, wallet.pending_lock) == (9000, 0)  # 1000 burned, 2000 back
    kinds = [(e.type, e.reference.id) for e in (await _ledger(api, user)).entries]
    assert kinds.count((wallet_pb.LEDGER_ENTRY_TYPE_BURN, approved.id)) == 1
    assert kinds.count((wallet_pb.LEDGER_ENTRY_TYPE_UNLOCK, rejected.id)) == 1
    assert kinds.count((wallet_pb.LEDGER_ENTRY_TYPE_UNLOCK, cancelled.id)) == 1
    actions = await scalar(
        db,
        "SELECT string_agg(action, ',' ORDER BY id) FROM audit_events WHERE scope = 'conversion'",
    )
    assert actions.split(",") == [
        "conversion.requested",
        "conversion.requested",
        "conversion.requested",
        "conversion.approved",
        "conversion.rejected",
        "conversion.cancelled",
    ]
    # after a cancel the user may ask again for that venture
    assert (
        await api.request(user, window, ventures[2], 500)
    ).status == pb.CONVERSION_STATUS_PENDING
    await assert_books_balance(db, user)


async def test_approval_within_a_pool_lowered_outside_the_api(db: Database, api: Api) -> None:
    """The reservation keeps granted + pending within the pool; should the pool shrink
    behind the API's back, the approval still refuses to exceed it and writes nothing."""
    user = await _funded(db, api, 5000)
    venture, window = await api.venture(pool_bps=40), await api.window(100)
    conversion = await api.request(user, window, venture, 3000)
    await as_superuser(
        db,
        "ALTER TABLE ventures DROP CONSTRAINT ck_ventures_reserved_within_pool",
        "UPDATE ventures SET pool_bps = 20 WHERE id = CAST(:v AS uuid)",
        v=venture.id,
    )
    before = await _written(db)
    info = await fails(api.approve(conversion.id), FAILED_PRECONDITION, "POOL_EXHAUSTED")
    assert dict(info.metadata) == {"available_bps": "20"}
    assert await _written(db) == before
    assert (await api.reject(conversion.id)).status == pb.CONVERSION_STATUS_REJECTED


async def test_listing_conversions(db: Database, api: Api) -> None:
    alice, bob = await _funded(db, api, 5000), await _funded(db, api, 5000)
    window, other_window = await api.window(100), await api.window(200)
    ventures = [await api.venture() for _ in range(3)]
    mine = [await api.request(alice, window, v, 100) for v in ventures]
    mine.append(await api.request(alice, other_window, ventures[0], 100))
    theirs = await api.request(bob, window, ventures[0], 100)
    await api.approve(mine[0].id)

    def ids(conversions: Any) -> list[str]:
        return [c.id for c in conversions]

    pages = await every_page(
        api.conv.ListMyConversions,
        pb.ListMyConversionsRequest(page_size=3),
        "conversions",
        api.user(alice),
    )
    assert ids(pages) == ids(reversed(mine))  # newest first, only the caller's
    pending = await api.conv.ListMyConversions(
        pb.ListMyConversionsRequest(window_id=window.id, statuses=[pb.CONVERSION_STATUS_PENDING]),
        metadata=api.user(alice),
    )
    assert ids(pending.conversions) == [mine[2].id, mine[1].id]
    queue = await api.conv.ListConversions(
        pb.ListConversionsRequest(
            window_id=window.id, venture_id=ventures[0].id, statuses=[pb.CONVERSION_STATUS_PENDING]
        ),
        metadata=api.board,
    )
    assert ids(queue.conversions) == [theirs.id]
    everyone = await api.conv.ListConversions(pb.ListConversionsRequest(), metadata=api.admin)
    assert len(everyone.conversions) == 5
    only_bob = await api.conv.ListConversions(
        pb.ListConversionsRequest(user_id=str(bob)), metadata=api.board
    )
    assert ids(only_bob.conversions) == [theirs.id]

    first = await api.conv.ListConversions(
        pb.ListConversionsRequest(page_size=1), metadata=api.board
    )
    for bad in (
        pb.ListConversionsRequest(statuses=[pb.CONVERSION_STATUS_UNSPECIFIED]),
        pb.ListConversionsRequest(user_id="me"),
        pb.ListConversionsRequest(page_size=-1),
        pb.ListConversionsRequest(page_token=first.next_page_token, user_id=str(bob)),
    ):
        await fails(api.conv.ListConversions(bad, metadata=api.board), INVALID_ARGUMENT)
    await fails(
        api.conv.ListConversions(pb.ListConversionsRequest(), metadata=api.user(alice)),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
