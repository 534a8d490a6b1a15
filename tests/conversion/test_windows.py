"""Windows through the real server, with a clock the tests move: creation (opening at once
when due), the rate until opening, reads and lists, finalization and its expiries, and the
board's default rate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
import pytest
from smartstart.conversion.v1 import conversion_service_pb2 as pb

from server.app import RunningServer
from server.db.session import Database
from tests.conversion.support import (
    BOARD,
    Api,
    Clock,
    assert_books_balance,
    every_page,
    fails,
    scalar,
    ts,
)
from tests.wallet.support import make_user

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
T0 = datetime(2027, 2, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def _create(label: str, opens: datetime, closes: datetime, **kw: int) -> pb.CreateWindowRequest:
    return pb.CreateWindowRequest(
        label=label, opens_at=ts(opens), closes_at=ts(closes), request_id=f"w-{uuid.uuid4()}", **kw
    )


async def _events(db: Database, window_id: str) -> list[str]:
    found = await scalar(
        db,
        "SELECT string_agg(action, ',' ORDER BY id) FROM audit_events"
        " WHERE scope = 'conversion_window' AND ref_id = :w",
        w=window_id,
    )
    return found.split(",") if found else []


async def test_create_window_scheduled_or_open_at_once(
    db: Database, api: Api, clock: Clock
) -> None:
    later = _create(
        "Spring extra", T0 + timedelta(days=1), T0 + timedelta(days=8), equity_rate_bps=250
    )
    window = await api.conv.CreateWindow(later, metadata=api.board)
    assert window.status == pb.WINDOW_STATUS_SCHEDULED
    assert (window.label, window.equity_rate_bps, window.created_by) == ("Spring extra", 250, BOARD)
    assert window.opens_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(days=1)
    assert await api.conv.CreateWindow(later, metadata=api.board) == window
    later.label = "other"
    await fails(
        api.conv.CreateWindow(later, metadata=api.board),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )
    assert await _events(db, window.id) == ["conversion_window.created"]

    # an opens_at at or before now opens the window at once, from now, audited
    for opens in (T0, T0 - timedelta(days=3)):
        now = await api.conv.CreateWindow(
            _create("Right now", opens, T0 + timedelta(days=2)), metadata=api.board
        )
        assert now.status == pb.WINDOW_STATUS_OPEN
        assert now.opens_at.ToDatetime(tzinfo=UTC) == T0
        assert now.equity_rate_bps == 100  # unset: the board's default rate
        assert await _events(db, now.id) == [
            "conversion_window.created",
            "conversion_window.opened",
        ]
        active = await api.conv.GetActiveWindows(
            pb.GetActiveWindowsRequest(), metadata=api.user(uuid.uuid4())
        )
        assert now.id in [w.id for w in active.windows]

    for bad in (
        _create("", T0, T0 + timedelta(days=1)),
        _create("x" * 101, T0, T0 + timedelta(days=1)),
        _create("closed on arrival", T0 - timedelta(days=2), T0),
        _create("backwards", T0 + timedelta(days=2), T0 + timedelta(days=1)),
        _create("empty", T0 + timedelta(days=2), T0 + timedelta(days=2)),
        _create("rate 0", T0, T0 + timedelta(days=1), equity_rate_bps=0),
        _create("rate too high", T0, T0 + timedelta(days=1), equity_rate_bps=10_001),
        pb.CreateWindowRequest(label="no times", request_id="t"),
        pb.CreateWindowRequest(
            label="no key", opens_at=ts(T0), closes_at=ts(T0 + timedelta(days=1))
        ),
    ):
        await fails(
            api.conv.CreateWindow(bad, metadata=api.board), INVALID_ARGUMENT, "INVALID_ARGUMENT"
        )
    for caller in (api.admin, api.user(uuid.uuid4())):
        await fails(
            api.conv.CreateWindow(_create("x", T0, T0 + timedelta(days=1)), metadata=caller),
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )


async def test_rate_changes_until_the_window_opens(
    db: Database, api: Api, clock: Clock, running: RunningServer
) -> None:
    window = await api.conv.CreateWindow(
        _create("q", T0 + timedelta(hours=1), T0 + timedelta(days=1), equity_rate_bps=100),
        metadata=api.board,
    )

    def rate(bps: int, window_id: str = window.id) -> pb.UpdateWindowRateRequest:
        return pb.UpdateWindowRateRequest(window_id=window_id, equity_rate_bps=bps)

    changed = await api.conv.UpdateWindowRate(rate(150), metadata=api.board)
    assert changed.equity_rate_bps == 150
    same = await api.conv.UpdateWindowRate(rate(150), metadata=api.board)  # changes nothing
    assert same == changed
    assert await _events(db, window.id) == [
        "conversion_window.created",
        "conversion_window.rate_changed",
    ]
    for bad in (rate(0), rate(10_001), rate(5, "nope")):
        await fails(api.conv.UpdateWindowRate(bad, metadata=api.board), INVALID_ARGUMENT)
    await fails(
        api.conv.UpdateWindowRate(rate(5, str(uuid.uuid4())), metadata=api.board),
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
    )

    clock.move(hours=1)  # opens_at reached, the job has not run: too late already
    info = await fails(
        api.conv.UpdateWindowRate(rate(200), metadata=api.board),
        FAILED_PRECONDITION,
        "INVALID_STATE",
    )
    assert dict(info.metadata) == {"status": "OPEN"}
    await running.services.scheduler.run_now("conversion_windows")
    info = await fails(
        api.conv.UpdateWindowRate(rate(200), metadata=api.board),
        FAILED_PRECONDITION,
        "INVALID_STATE",
    )
    assert dict(info.metadata) == {"status": "OPEN"}
    got = await api.conv.GetWindow(pb.GetWindowRequest(window_id=window.id), metadata=api.board)
    assert (got.status, got.equity_rate_bps) == (pb.WINDOW_STATUS_OPEN, 150)


async def test_list_windows_by_status_latest_first(db: Database, api: Api) -> None:
    made = []
    for day in range(5):
        opens = T0 + timedelta(days=day) if day else T0
        made.append(
            await api.conv.CreateWindow(
                _create(f"w{day}", opens, opens + timedelta(days=30)), metadata=api.board
            )
        )
    reader = api.user(uuid.uuid4())
    seen = await every_page(
        api.conv.ListWindows, pb.ListWindowsRequest(page_size=2), "windows", reader
    )
    assert [w.id for w in seen] == [w.id for w in reversed(made)]
    scheduled = await api.conv.ListWindows(
        pb.ListWindowsRequest(statuses=[pb.WINDOW_STATUS_SCHEDULED]), metadata=reader
    )
    assert [w.id for w in scheduled.windows] == [w.id for w in reversed(made[1:])]
    first = await api.conv.ListWindows(pb.ListWindowsRequest(page_size=1), metadata=reader)
    for bad in (
        pb.ListWindowsRequest(statuses=[pb.WINDOW_STATUS_UNSPECIFIED]),
        pb.ListWindowsRequest(page_token="garbage"),
        pb.ListWindowsRequest(page_token=first.next_page_token, statuses=[pb.WINDOW_STATUS_OPEN]),
    ):
        await fails(api.conv.ListWindows(bad, metadata=reader), INVALID_ARGUMENT)
    await fails(
        api.conv.GetWindow(pb.GetWindowRequest(window_id=str(uuid.uuid4())), metadata=reader),
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
    )


async def test_finalize_expires_and_unlocks_what_is_still_pending(
    db: Database, api: Api, clock: Clock, running: RunningServer
) -> None:
    window = await api.conv.CreateWindow(
        _create("f", T0, T0 + timedelta(days=1)), metadata=api.board
    )
    ventures = [await api.venture(pool_bps=100) for _ in range(3)]
    alice, bob = await make_user(db, reported_at=T0), await make_user(db, reported_at=T0)
    for user in (alice, bob):
        await api.fund(user, 5000)
    kept = await api.request(alice, window, ventures[0], 1000)
    left = [
        await api.request(alice, window, ventures[1], 700),
        await api.request(bob, window, ventures[1], 300),
    ]
    also_left = await api.request(bob, window, ventures[2], 500)
    await api.approve(kept.id)

    finalize = pb.FinalizeWindowRequest(window_id=window.id, request_id="fin-1")
    info = await fails(
        api.conv.FinalizeWindow(finalize, metadata=api.board), FAILED_PRECONDITION, "INVALID_STATE"
    )
    assert dict(info.metadata) == {"status": "OPEN"}
    clock.move(days=1)
    # closed by time but not yet by the job: finalizing waits for CLOSED
    info = await fails(
        api.conv.FinalizeWindow(finalize, metadata=api.board), FAILED_PRECONDITION, "INVALID_STATE"
    )
    assert dict(info.metadata) == {"status": "OPEN"}
    await running.services.scheduler.run_now("conversion_windows")

    done = await api.conv.FinalizeWindow(finalize, metadata=api.board)
    assert done.window.status == pb.WINDOW_STATUS_FINALIZED
    assert done.window.finalized_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(days=1)
    assert (done.expired_count, done.buz_unlocked) == (3, 1500)
    assert await api.conv.FinalizeWindow(finalize, metadata=api.board) == done
    again = pb.FinalizeWindowRequest(window_id=window.id, request_id="fin-2")
    info = await fails(
        api.conv.FinalizeWindow(again, metadata=api.board), FAILED_PRECONDITION, "INVALID_STATE"
    )
    assert dict(info.metadata) == {"status": "FINALIZED"}

    for conversion in (*left, also_left):
        got = await api.conv.GetConversion(
            pb.GetConversionRequest(conversion_id=conversion.id), metadata=api.board
        )
        assert got.status == pb.CONVERSION_STATUS_EXPIRED
        info = await fails(api.approve(conversion.id), FAILED_PRECONDITION, "INVALID_STATE")
        assert dict(info.metadata) == {"status": "EXPIRED"}
    assert (await api.wallet_of(alice)).pending_lock == 0
    assert (await api.wallet_of(bob)).buz_balance == 5000
    for venture in ventures[1:]:
        got = await api.conv.GetVenture(
            pb.GetVentureRequest(venture_id=venture.id), metadata=api.board
        )
        assert (got.pending_bps, got.available_bps) == (0, 100)
    assert (
        await scalar(db, "SELECT count(*) FROM audit_events WHERE action = 'conversion.expired'")
        == 3
    )
    await assert_books_balance(db, alice, bob)
    unknown = pb.FinalizeWindowRequest(window_id=str(uuid.uuid4()), request_id="fin-3")
    await fails(api.conv.FinalizeWindow(unknown, metadata=api.board), grpc.StatusCode.NOT_FOUND)


async def test_the_board_sets_the_default_rate(
    db: Database, api: Api, clock: Clock, running: RunningServer
) -> None:
    reader = api.user(uuid.uuid4())
    initial = await api.conv.GetDefaultRate(pb.GetDefaultRateRequest(), metadata=reader)
    assert (initial.equity_rate_bps, initial.updated_by) == (100, "")  # the seeded default
    await running.services.scheduler.run_now("conversion_windows")  # schedules 2027-Q2 at 100
    board_window = await api.conv.CreateWindow(
        _create("board's", T0 + timedelta(days=5), T0 + timedelta(days=6)), metadata=api.board
    )
    assert board_window.equity_rate_bps == 100

    update = pb.UpdateDefaultRateRequest(equity_rate_bps=250, reason="richer quarter")
    for caller in (api.admin, reader):
        await fails(
            api.conv.UpdateDefaultRate(update, metadata=caller), grpc.StatusCode.PERMISSION_DENIED
        )
    changed = await api.conv.UpdateDefaultRate(update, metadata=api.board)
    assert (changed.default_rate.equity_rate_bps, changed.default_rate.updated_by) == (250, BOARD)
    assert [(w.label, w.equity_rate_bps) for w in changed.windows] == [("2027-Q2", 250)]
    # this replica sees it at once: a window without a rate takes it
    fresh = await api.conv.CreateWindow(
        _create("fresh", T0, T0 + timedelta(days=1)), metadata=api.board
    )
    assert fresh.equity_rate_bps == 250
    kept = await api.conv.GetWindow(pb.GetWindowRequest(window_id=board_window.id), metadata=reader)
    assert kept.equity_rate_bps == 100  # the board's own windows keep their rate
    assert (
        await api.conv.GetDefaultRate(pb.GetDefaultRateRequest(), metadata=reader)
    ).equity_rate_bps == 250
    audited = await scalar(
        db,
        "SELECT details FROM audit_events WHERE action = 'setting.updated'"
        " AND ref_id = 'conversion.default_rate_bps'",
    )
    assert (audited["old_value"], audited["new_value"], audited["reason"]) == (
        "100",
        "250",
        "richer quarter",
    )

    same = await api.conv.UpdateDefaultRate(update, metadata=api.board)
    assert same.windows == [] and same.default_rate == changed.default_rate
    assert (
        await scalar(db, "SELECT count(*) FROM audit_events WHERE action = 'setting.updated'") == 1
    )
    for bad in (
        pb.UpdateDefaultRateRequest(equity_rate_bps=0),
        pb.UpdateDefaultRateRequest(equity_rate_bps=10_001),
        pb.UpdateDefaultRateRequest(equity_rate_bps=5, reason="x" * 501),
    ):
        await fails(api.conv.UpdateDefaultRate(bad, metadata=api.board), INVALID_ARGUMENT)

    # the job schedules the next quarters at the new default
    clock.now = datetime(2027, 4, 1, tzinfo=UTC)
    await running.services.scheduler.run_now("conversion_windows")
    q3 = await api.conv.ListWindows(pb.ListWindowsRequest(page_size=1), metadata=reader)
    assert (q3.windows[0].label, q3.windows[0].equity_rate_bps) == ("2027-Q3", 250)
