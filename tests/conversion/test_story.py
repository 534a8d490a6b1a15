"""The conversion story through the API only (no SQL set-up), on an injected clock: the
platform registers users, passes their KYC and reports their devices; the board creates a
venture; accepted tasks and the daily maintenance job give the contributor the reputation
the gates ask for, then BUZ; the board sets its default rate and opens a window; the
contributor asks to convert, the board approves, and the cap table shows the holding."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import grpc.aio
from smartstart.conversion.v1 import conversion_service_pb2 as pb
from smartstart.wallet.v1 import wallet_service_pb2 as wallet_pb

from server.jobs import Outcome
from tests.conversion.support import Api, fails, ts
from tests.fixtures_server import MintToken, ServerFactory
from tests.profile.support import Api as People
from tests.profile.support import clock_at


async def test_the_conversion_story_through_the_api_only(
    server_factory: ServerFactory, mint_token: MintToken
) -> None:
    clock = clock_at("2027-01-04")
    running = await server_factory(clock=clock)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        people, api = People(channel, mint_token, clock), Api.over(channel, mint_token, clock)

        venture = await api.conv.CreateVenture(
            pb.CreateVentureRequest(name="Moonshot", conversion_pool_bps=2000, request_id="m"),
            metadata=api.board,
        )
        grace, rita = await people.register("Grace"), await people.register("Rita")
        await people.set_kyc(grace)

        async def daily_job(day: int) -> None:
            clock.at(day, hour=2)
            result = await running.services.scheduler.run_now("daily_maintenance")
            assert result.outcome is Outcome.SUCCEEDED, result.error

        # Reputation first: tasks earn XP (their BUZ withheld below 60), the job folds it.
        for day in (0, 1):
            clock.at(day)
            await people.report_posture(grace)
            reward = await people.task(grace, rita, venture.id)
            assert list(reward.withheld_reasons) == [wallet_pb.WITHHELD_REASON_REPUTATION_TOO_LOW]
            await daily_job(day + 1)
        assert (await people.profile(grace)).rep >= 60

        clock.at(2)
        await people.report_posture(grace)
        earned = await people.task(grace, rita, venture.id)
        assert not earned.withheld and earned.buz_awarded == 392

        # The board sets its default rate and opens a window now, at that rate.
        await api.conv.UpdateDefaultRate(
            pb.UpdateDefaultRateRequest(equity_rate_bps=200, reason="launch"), metadata=api.board
        )
        window = await api.conv.CreateWindow(
            pb.CreateWindowRequest(
                label="Launch",
                opens_at=ts(clock.now),
                closes_at=ts(clock.now + timedelta(days=7)),
                request_id="launch",
            ),
            metadata=api.board,
        )
        clock.at(2, hour=13)  # an hour later
        assert (window.status, window.equity_rate_bps) == (pb.WINDOW_STATUS_OPEN, 200)
        active = await api.conv.GetActiveWindows(
            pb.GetActiveWindowsRequest(), metadata=api.user(grace)
        )
        assert [w.id for w in active.windows] == [window.id]

        # 392 BUZ at 200 bp per 10,000 BUZ: 7 bp, for which 350 BUZ are locked.
        await fails(
            api.request(uuid.UUID(rita), window, venture, 392),
            grpc.StatusCode.FAILED_PRECONDITION,
            "KYC_REQUIRED",
        )
        conversion = await api.request(uuid.UUID(grace), window, venture, 392)
        assert (conversion.granted_bps, conversion.buz_locked) == (7, 350)
        queue = await api.conv.ListConversions(
            pb.ListConversionsRequest(statuses=[pb.CONVERSION_STATUS_PENDING]), metadata=api.board
        )
        assert [c.id for c in queue.conversions] == [conversion.id]
        approved = await api.approve(conversion.id, note="welcome aboard")
        assert approved.status == pb.CONVERSION_STATUS_APPROVED

        table = await api.conv.GetCapTable(
            pb.GetCapTableRequest(venture_id=venture.id), metadata=api.board
        )
        assert (table.granted_bps, table.holder_count, table.conversion_pool_bps) == (7, 1, 2000)
        (holding,) = table.entries
        assert (holding.user_id, holding.granted_bps, holding.grant_count, holding.buz_burned) == (
            grace,
            7,
            1,
            350,
        )
        got = await api.conv.GetVenture(
            pb.GetVentureRequest(venture_id=venture.id), metadata=api.user(grace)
        )
        assert (got.granted_bps, got.pending_bps, got.available_bps) == (7, 0, 1993)
        wallet = await api.wallet_of(uuid.UUID(grace))
        assert (wallet.buz_balance, wallet.pending_lock) == (42, 0)
        ledger = await api.wallet.ListLedgerEntries(
            wallet_pb.ListLedgerEntriesRequest(), metadata=api.user(grace)
        )
        assert [(e.type, e.amount) for e in reversed(ledger.entries)] == [
            (wallet_pb.LEDGER_ENTRY_TYPE_ISSUE, 392),
            (wallet_pb.LEDGER_ENTRY_TYPE_LOCK, 350),
            (wallet_pb.LEDGER_ENTRY_TYPE_BURN, 350),
        ]
        verified = await api.wallet.VerifyWallet(
            wallet_pb.VerifyWalletRequest(), metadata=api.user(grace)
        )
        assert verified.ok
