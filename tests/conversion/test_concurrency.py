"""Races through the real server: requests and approvals for one venture's pool, decisions
racing for one request, and a storm of requests, cancels, approvals, rejections and a
finalization over one wallet. Invariants: the pool is never exceeded, each request leaves
PENDING once with one ledger entry, and every wallet's ledger replays to its balance and
pending lock."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import grpc
import grpc.aio
from smartstart.conversion.v1 import conversion_service_pb2 as pb
from sqlalchemy import text

from server.app import RunningServer
from server.db.session import Database
from tests.conversion.support import Api, Clock, assert_books_balance, scalar
from tests.fixtures_server import error_info
from tests.wallet.support import make_user


async def _outcome(call: Awaitable[Any]) -> Any:
    """The answer, or the ErrorInfo reason of a refusal (anything else fails the test)."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        info = error_info(error)
        if info is None:
            raise
        return info.reason


async def _users(db: Database, api: Api, count: int, buz: int) -> list[uuid.UUID]:
    users = [await make_user(db) for _ in range(count)]
    for user in users:
        await api.fund(user, buz)
    return users


async def _releases(db: Database) -> dict[str, Counter[str]]:
    """Per conversion id, its ledger entries by type."""
    async with db.transaction() as session:
        rows = await session.execute(
            text("SELECT ref_id, type FROM ledger_entries WHERE ref_kind = 'CONVERSION'")
        )
        found: dict[str, Counter[str]] = {}
        for row in rows:
            found.setdefault(row.ref_id, Counter())[row.type] += 1
        return found


async def _check_ledger_matches_statuses(db: Database) -> None:
    entries = await _releases(db)
    async with db.transaction() as session:
        statuses = dict(
            (await session.execute(text("SELECT id::text, status FROM conversion_requests"))).all()
        )
    assert set(entries) == set(statuses)
    expected = {
        "PENDING": Counter({"LOCK": 1}),
        "APPROVED": Counter({"LOCK": 1, "BURN": 1}),
        "REJECTED": Counter({"LOCK": 1, "UNLOCK": 1}),
        "CANCELLED": Counter({"LOCK": 1, "UNLOCK": 1}),
        "EXPIRED": Counter({"LOCK": 1, "UNLOCK": 1}),
    }
    for conversion_id, status in statuses.items():
        assert entries[conversion_id] == expected[status], (conversion_id, status)


async def test_requests_and_approvals_race_for_one_pool(db: Database, api: Api) -> None:
    venture, window = await api.venture(pool_bps=50), await api.window(100)
    users = await _users(db, api, 20, 1000)
    first = await asyncio.gather(*(_outcome(api.request(u, window, venture, 500)) for u in users))
    granted = [c for c in first if isinstance(c, pb.Conversion)]
    assert len(granted) == 10  # 5 bp each, 50 bp of pool
    assert Counter(c for c in first if isinstance(c, str)) == {"POOL_EXHAUSTED": 10}

    # approvals race with new requests, and cancels free room that others race for
    waiting = [u for u in users if str(u) not in {c.user_id for c in granted}]
    calls = [api.approve(c.id) for c in granted[:7]]
    calls += [api.cancel(uuid.UUID(c.user_id), c.id) for c in granted[7:]]
    calls += [api.request(u, window, venture, 500) for u in waiting]
    random.Random(7).shuffle(calls)
    outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
    assert not [o for o in outcomes if isinstance(o, str) and o != "POOL_EXHAUSTED"]
    approved = [
        o
        for o in outcomes
        if isinstance(o, pb.Conversion) and o.status == pb.CONVERSION_STATUS_APPROVED
    ]
    new = [
        o
        for o in outcomes
        if isinstance(o, pb.Conversion) and o.status == pb.CONVERSION_STATUS_PENDING
    ]
    assert len(approved) == 7 and len(new) <= 3
    for conversion in new:
        approved.append(await api.approve(conversion.id))

    got = await api.conv.GetVenture(pb.GetVentureRequest(venture_id=venture.id), metadata=api.board)
    assert got.granted_bps == sum(c.granted_bps for c in approved) <= 50
    assert got.granted_bps + got.pending_bps <= got.conversion_pool_bps
    await assert_books_balance(db, *users)
    await _check_ledger_matches_statuses(db)


async def test_decisions_race_for_one_request(db: Database, api: Api) -> None:
    (user,) = await _users(db, api, 1, 1000)
    venture, window = await api.venture(), await api.window(100)
    for _ in range(3):
        conversion = await api.request(user, window, venture, 1000)
        calls = [api.approve(conversion.id) for _ in range(5)]
        calls += [api.reject(conversion.id) for _ in range(5)]
        calls += [api.cancel(user, conversion.id) for _ in range(5)]
        random.Random(conversion.id).shuffle(calls)
        outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
        winners = [o for o in outcomes if isinstance(o, pb.Conversion)]
        assert len(winners) == 1
        assert Counter(o for o in outcomes if isinstance(o, str)) == {"INVALID_STATE": 14}
        if winners[0].status == pb.CONVERSION_STATUS_APPROVED:
            await api.fund(user, 1000)
    await assert_books_balance(db, user)
    await _check_ledger_matches_statuses(db)


async def test_a_storm_over_one_wallet(
    db: Database, api: Api, clock: Clock, running: RunningServer
) -> None:
    (user,) = await _users(db, api, 1, 30_000)
    ventures = [await api.venture(pool_bps=10_000) for _ in range(8)]
    window = await api.window(100)
    closing = await api.window(200, opens_at=clock.now, closes_at=clock.now + timedelta(hours=1))
    early = [await api.request(user, closing, v, 1000) for v in ventures[:4]]
    clock.move(hours=1)
    await running.services.scheduler.run_now("conversion_windows")  # `closing` is CLOSED
    pending = [await api.request(user, window, v, 1000) for v in ventures]

    rng = random.Random(11)
    calls: list[Awaitable[Any]] = []
    for conversion in pending + early:
        for _ in range(2):
            calls += [
                api.approve(conversion.id),
                api.reject(conversion.id),
                api.cancel(user, conversion.id),
            ]
    for venture in ventures:  # new requests: refused while one is PENDING, else taken
        calls += [
            api.request(user, window, venture, rng.choice([500, 1500, 4000])) for _ in range(3)
        ]
    for key in ("f1", "f2", "f3"):
        calls.append(
            api.conv.FinalizeWindow(
                pb.FinalizeWindowRequest(window_id=closing.id, request_id=key), metadata=api.board
            )
        )
    rng.shuffle(calls)
    outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
    refusals = Counter(o for o in outcomes if isinstance(o, str))
    assert set(refusals) <= {"INVALID_STATE", "ALREADY_EXISTS", "INSUFFICIENT_BALANCE"}
    finalized = [o for o in outcomes if isinstance(o, pb.FinalizeWindowResponse)]
    assert len(finalized) == 1  # the other two keys found it FINALIZED (INVALID_STATE)
    assert finalized[0].window.status == pb.WINDOW_STATUS_FINALIZED

    for conversion in pending + early:
        got = await api.conv.GetConversion(
            pb.GetConversionRequest(conversion_id=conversion.id), metadata=api.board
        )
        assert got.status != pb.CONVERSION_STATUS_PENDING
    expired = await scalar(db, "SELECT count(*) FROM conversion_requests WHERE status = 'EXPIRED'")
    assert expired == finalized[0].expired_count
    await assert_books_balance(db, user)
    await _check_ledger_matches_statuses(db)
