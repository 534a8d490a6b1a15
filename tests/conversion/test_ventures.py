"""Ventures and cap tables through the real server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
from google.protobuf.field_mask_pb2 import FieldMask
from smartstart.conversion.v1 import conversion_service_pb2 as pb
from smartstart.wallet.v1 import wallet_service_pb2 as wallet_pb

from server.db.session import Database
from tests.conversion.support import Api, assert_books_balance, every_page, fails, scalar, ts
from tests.wallet.support import make_user

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS


def _create(
    name: str, pool: int = 500, description: str = "", key: str = ""
) -> pb.CreateVentureRequest:
    return pb.CreateVentureRequest(
        name=name,
        description=description,
        conversion_pool_bps=pool,
        request_id=key or f"v-{uuid.uuid4()}",
    )


def _update(venture_id: str, *paths: str, **values: object) -> pb.UpdateVentureRequest:
    return pb.UpdateVentureRequest(
        venture=pb.Venture(id=venture_id, **values),  # type: ignore[arg-type]
        update_mask=FieldMask(paths=list(paths)),
    )


async def test_create_and_read_ventures(db: Database, api: Api) -> None:
    request = _create("  Acme Rockets ", 800, "Reusable rockets", key="v-1")
    venture = await api.conv.CreateVenture(request, metadata=api.board)
    assert (venture.name, venture.description, venture.conversion_pool_bps) == (
        "Acme Rockets",
        "Reusable rockets",
        800,
    )
    assert (venture.granted_bps, venture.pending_bps, venture.available_bps) == (0, 0, 800)
    assert await api.conv.CreateVenture(request, metadata=api.board) == venture
    request.conversion_pool_bps = 900
    await fails(
        api.conv.CreateVenture(request, metadata=api.board), ALREADY_EXISTS, "IDEMPOTENCY_CONFLICT"
    )
    # names are unique without regard to case; admins may create ventures too
    info = await fails(
        api.conv.CreateVenture(_create("ACME ROCKETS"), metadata=api.admin),
        ALREADY_EXISTS,
        "ALREADY_EXISTS",
    )
    assert dict(info.metadata) == {"venture_id": venture.id}
    other = await api.conv.CreateVenture(_create("Acme Boats", 0), metadata=api.admin)
    assert other.available_bps == 0
    for bad in (
        _create(""),
        _create("   "),
        _create("x" * 201),
        _create("fine", -1),
        _create("fine", 10_001),
        _create("fine", description="d" * 2001),
        pb.CreateVentureRequest(name="no key", conversion_pool_bps=1),
    ):
        await fails(
            api.conv.CreateVenture(bad, metadata=api.board), INVALID_ARGUMENT, "INVALID_ARGUMENT"
        )
    await fails(
        api.conv.CreateVenture(_create("mine"), metadata=api.user(uuid.uuid4())),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert (
        await scalar(db, "SELECT count(*) FROM audit_events WHERE action = 'venture.created'") == 2
    )

    reader = api.user(uuid.uuid4())
    got = await api.conv.GetVenture(pb.GetVentureRequest(venture_id=venture.id), metadata=reader)
    assert got == venture
    await fails(
        api.conv.GetVenture(pb.GetVentureRequest(venture_id=str(uuid.uuid4())), metadata=reader),
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
    )
    await fails(
        api.conv.GetVenture(pb.GetVentureRequest(venture_id="x"), metadata=reader), INVALID_ARGUMENT
    )


async def test_list_ventures_by_name(api: Api) -> None:
    names = ["delta", "Alpha", "charlie", "bravo", "echo"]
    for name in names:
        await api.conv.CreateVenture(_create(name), metadata=api.board)
    reader = api.user(uuid.uuid4())
    seen = await every_page(
        api.conv.ListVentures, pb.ListVenturesRequest(page_size=2), "ventures", reader
    )
    assert [v.name for v in seen] == ["Alpha", "bravo", "charlie", "delta", "echo"]
    await fails(
        api.conv.ListVentures(pb.ListVenturesRequest(page_size=-1), metadata=reader),
        INVALID_ARGUMENT,
    )
    await fails(
        api.conv.ListVentures(pb.ListVenturesRequest(page_token="x"), metadata=reader),
        INVALID_ARGUMENT,
    )


async def test_update_venture(db: Database, api: Api) -> None:
    venture = await api.venture(pool_bps=100, name="Old name")
    await api.venture(name="Taken")
    renamed = await api.conv.UpdateVenture(
        _update(venture.id, "name", "description", name="New name", description="now described"),
        metadata=api.board,
    )
    assert (renamed.name, renamed.description, renamed.conversion_pool_bps) == (
        "New name",
        "now described",
        100,
    )
    user = await make_user(db)
    await api.fund(user, 10_000)
    window = await api.window(100)
    approved = await api.request(user, window, venture, 3000)
    await api.approve(approved.id)
    await api.request(user, window, venture, 2000)  # 20 bp reserved, 30 granted

    info = await fails(
        api.conv.UpdateVenture(
            _update(
                venture.id, "name", "conversion_pool_bps", name="Shrunk", conversion_pool_bps=49
            ),
            metadata=api.board,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "POOL_EXHAUSTED",
    )
    assert dict(info.metadata) == {"min_pool_bps": "50"}
    same = await api.conv.GetVenture(
        pb.GetVentureRequest(venture_id=venture.id), metadata=api.board
    )
    assert (same.name, same.conversion_pool_bps) == ("New name", 100)  # nothing half-written
    lowered = await api.conv.UpdateVenture(
        _update(venture.id, "conversion_pool_bps", conversion_pool_bps=50), metadata=api.board
    )
    assert (lowered.granted_bps, lowered.pending_bps, lowered.available_bps) == (30, 20, 0)

    await fails(
        api.conv.UpdateVenture(_update(venture.id, "name", name="TAKEN"), metadata=api.board),
        ALREADY_EXISTS,
        "ALREADY_EXISTS",
    )
    for bad in (
        _update(venture.id),
        _update(venture.id, "granted_bps", granted_bps=5),
        _update(venture.id, "name", name=""),
        _update(venture.id, "conversion_pool_bps", conversion_pool_bps=10_001),
        _update("nope", "name", name="x"),
    ):
        await fails(
            api.conv.UpdateVenture(bad, metadata=api.board), INVALID_ARGUMENT, "INVALID_ARGUMENT"
        )
    await fails(
        api.conv.UpdateVenture(_update(str(uuid.uuid4()), "name", name="x"), metadata=api.board),
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
    )
    details = await scalar(
        db,
        "SELECT json_agg(details ORDER BY id) FROM audit_events WHERE action = 'venture.updated'",
    )
    assert details == [
        {
            "changes": {
                "name": {"from": "Old name", "to": "New name"},
                "description": {"from": "", "to": "now described"},
            }
        },
        {"changes": {"pool_bps": {"from": 100, "to": 50}}},
    ]
    await assert_books_balance(db, user)


async def test_cap_table_largest_holding_first(db: Database, api: Api) -> None:
    venture = await api.venture(pool_bps=1000)
    window = await api.window(100)
    holdings = {}
    for buz in (3000, 1000, 3000, 500):
        user = await make_user(db)
        await api.fund(user, 10_000)
        holdings[user] = buz
        await api.approve((await api.request(user, window, venture, buz)).id)
    top = max(holdings, key=lambda u: holdings[u])
    # a second grant to one holder adds up (another window: one PENDING per window)
    await api.approve((await api.request(top, await api.window(200), venture, 1000)).id)
    holdings[top] += 2000  # 20 bp at 200 ≙ 2000 BUZ at 100
    pending = await make_user(db)
    await api.fund(pending, 1000)
    await api.request(pending, window, venture, 1000)  # PENDING: not in the cap table

    request = pb.GetCapTableRequest(venture_id=venture.id, page_size=2)
    entries = await every_page(api.conv.GetCapTable, request, "entries", api.admin)
    last = await api.conv.GetCapTable(request, metadata=api.admin)  # the totals on any page
    assert (last.granted_bps, last.holder_count, last.conversion_pool_bps) == (95, 4, 1000)
    assert [e.user_id for e in last.entries] == [e.user_id for e in entries[2:]]
    expected = sorted(holdings, key=lambda u: (-holdings[u], str(u)))
    assert [e.user_id for e in entries] == [str(u) for u in expected]
    assert [e.granted_bps for e in entries] == [50, 30, 10, 5]
    first = entries[0]
    assert (first.grant_count, first.buz_burned) == (2, 4000)
    assert first.first_granted_at.ToDatetime() <= first.last_granted_at.ToDatetime()

    empty = await api.conv.GetCapTable(
        pb.GetCapTableRequest(venture_id=(await api.venture()).id), metadata=api.board
    )
    assert (empty.granted_bps, empty.holder_count, list(empty.entries)) == (0, 0, [])
    one = await api.conv.GetCapTable(
        pb.GetCapTableRequest(venture_id=venture.id, page_size=1), metadata=api.board
    )
    other = await api.venture()
    await fails(
        api.conv.GetCapTable(
            pb.GetCapTableRequest(venture_id=other.id, page_token=one.next_page_token),
            metadata=api.board,
        ),
        INVALID_ARGUMENT,
    )
    await fails(
        api.conv.GetCapTable(
            pb.GetCapTableRequest(venture_id=str(uuid.uuid4())), metadata=api.board
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    await fails(
        api.conv.GetCapTable(pb.GetCapTableRequest(venture_id=venture.id), metadata=api.user(top)),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_task_rewards_name_a_venture_made_through_the_api(db: Database, api: Api) -> None:
    venture = await api.venture()
    user, reviewer = await make_user(db), await make_user(db, rep=100)
    reward = await api.wallet.RecordTaskAccepted(
        wallet_pb.RecordTaskAcceptedRequest(
            task_id="t-1",
            user_id=str(user),
            tier=wallet_pb.TASK_TIER_A,
            quality=3,
            reviewer_ids=[str(reviewer)],
            venture_id=venture.id,
            accepted_at=ts(datetime.now(UTC) - timedelta(minutes=1)),
        ),
        metadata=api.system,
    )
    assert (reward.venture_id, reward.buz_awarded) == (venture.id, 150)
