"""A user registered through the API earns the reputation the BUZ gate asks for by activity
and the daily job alone, on an injected clock, then receives BUZ. Set-up through RPCs
only, but for the venture, which has no RPC before ConversionService (issue 10)."""

from __future__ import annotations

import grpc.aio
from smartstart.wallet.v1 import wallet_service_pb2 as wpb

from server.db.session import Database
from server.jobs import Outcome
from tests.fixtures_server import MintToken, ServerFactory
from tests.profile.support import Api, clock_at


async def test_activity_and_the_daily_job_open_the_reputation_gate(
    server_factory: ServerFactory, mint_token: MintToken, db: Database
) -> None:
    clock = clock_at("2026-07-06")
    running = await server_factory(clock=clock)
    api = Api(grpc.aio.insecure_channel(f"127.0.0.1:{running.port}"), mint_token, clock)
    venture = await api.venture()
    user = await api.register("Grace")
    reviewer, peer = await api.register("Rita"), await api.register("Pat")
    await api.set_kyc(user)
    await api.report_posture(user)

    async def daily_job(day: int) -> None:
        clock.at(day, hour=2)
        result = await running.services.scheduler.run_now("daily_maintenance")
        assert result.outcome is Outcome.SUCCEEDED, result.error

    # day 0: a tier-S task (reviewer rep 0: cred 0.7, 392 XP) and a positive review (3 XP)
    first = await api.task(user, reviewer, venture)
    assert list(first.withheld_reasons) == [wpb.WITHHELD_REASON_REPUTATION_TOO_LOW]
    assert (first.xp_awarded, first.buz_awarded) == (392, 0)
    await api.review(peer, user)
    await daily_job(1)
    assert (await api.profile(user)).rep == 39  # min(50, 395 / 10) = 39.5

    clock.at(1)
    await api.report_posture(user)
    second = await api.task(user, reviewer, venture)
    assert list(second.withheld_reasons) == [wpb.WITHHELD_REASON_REPUTATION_TOO_LOW]
    await daily_job(2)
    profile = await api.profile(user)
    assert profile.rep == 78  # 0.995 × 39.5 + 39.2 = 78.5025 → 78.503
    assert profile.level == 4  # 395 + 392 = 787 XP

    clock.at(2)
    await api.report_posture(user)
    third = await api.task(user, reviewer, venture)
    assert not third.withheld
    assert third.buz_awarded == third.buz_computed == 392
    wallet = await api.wallets.GetMyWallet(wpb.GetMyWalletRequest(), metadata=api.user(user))
    assert wallet.buz_balance == 392
