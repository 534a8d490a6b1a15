"""The conversion story through the API only (no SQL): users registered by the platform, KYC
and device posture reported, a venture created, BUZ awarded for accepted tasks, a window
opened by the board, a request, its approval, the cap table.

BUZ issuance and conversion both need reputation ≥ 60, which only the daily maintenance job
gives (rep(d+1) = 0.995 × rep(d) + min(50, dailyGain(d)), dailyGain from the day's XP).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import grpc
import grpc.aio
from smartstart.conversion.v1 import conversion_service_pb2 as pb
from smartstart.profile.v1 import profile_service_pb2 as profile_pb
from smartstart.profile.v1 import profile_service_pb2_grpc as profile_grpc
from smartstart.wallet.v1 import wallet_service_pb2 as wallet_pb

from server.app import RunningServer
from tests.conversion.support import Api, Clock, fails, ts


@dataclass
class Cast:
    api: Api
    profiles: profile_grpc.ProfileServiceStub
    clock: Clock
    running: RunningServer
    contributor: str
    reviewer: str
    venture: pb.Venture
    tasks: int = 0


async def _register(cast_api: Api, profiles: profile_grpc.ProfileServiceStub, name: str) -> str:
    user = await profiles.RegisterUser(
        profile_pb.RegisterUserRequest(
            request_id=f"reg-{name}",
            external_id=f"ext-{name}",
            email=f"{name}@example.test",
            display_name=name.title(),
        ),
        metadata=cast_api.system,
    )
    await profiles.SetKycStatus(
        profile_pb.SetKycStatusRequest(
            request_id=f"kyc-{name}",
            user_id=user.user_id,
            status=profile_pb.KYC_STATUS_PASSED,
            note="documents checked",
        ),
        metadata=cast_api.system,
    )
    return str(user.user_id)


async def report_devices(cast: Cast) -> None:
    """Both users report a compliant device now (a report counts for 72 h)."""
    for user in (cast.contributor, cast.reviewer):
        await cast.profiles.ReportDevicePosture(
            profile_pb.ReportDevicePostureRequest(
                request_id=f"posture-{user}-{cast.clock.now.isoformat()}",
                user_id=user,
                compliant=True,
                reported_at=ts(cast.clock.now),
            ),
            metadata=cast.api.system,
        )


async def accept_task(cast: Cast) -> wallet_pb.TaskReward:
    """The platform reports a task of the contributor's accepted (tier S, quality 5)."""
    cast.tasks += 1
    return await cast.api.wallet.RecordTaskAccepted(
        wallet_pb.RecordTaskAcceptedRequest(
            task_id=f"task-{cast.tasks}",
            user_id=cast.contributor,
            tier=wallet_pb.TASK_TIER_S,
            quality=5,
            reviewer_ids=[cast.reviewer],
            venture_id=cast.venture.id,
            accepted_at=ts(cast.clock.now - timedelta(minutes=1)),
        ),
        metadata=cast.api.system,
    )


async def story_until_reputation(
    api: Api, channel: grpc.aio.Channel, clock: Clock, running: RunningServer
) -> Cast:
    """Everything the API can do before reputation: users with KYC and compliant devices, a
    venture the board creates, a first accepted task (XP awarded, BUZ withheld), and a
    conversion the gate refuses."""
    profiles = profile_grpc.ProfileServiceStub(channel)
    contributor = await _register(api, profiles, "contributor")
    reviewer = await _register(api, profiles, "reviewer")
    venture = await api.conv.CreateVenture(
        pb.CreateVentureRequest(
            name="Moonshot", conversion_pool_bps=2000, request_id="venture-moonshot"
        ),
        metadata=api.board,
    )
    cast = Cast(api, profiles, clock, running, contributor, reviewer, venture)
    await report_devices(cast)
    reward = await accept_task(cast)
    assert reward.xp_awarded > 0 and reward.buz_awarded == 0
    assert list(reward.withheld_reasons) == [wallet_pb.WITHHELD_REASON_REPUTATION_TOO_LOW]
    window = await api.window(None, opens_at=clock.now, label="story")
    await fails(
        api.request(uuid.UUID(contributor), window, venture, 100),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REPUTATION_TOO_LOW",
    )
    return cast


async def test_story_up_to_the_reputation_gate(
    api: Api, running: RunningServer, clock: Clock
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        cast = await story_until_reputation(api, channel, clock, running)
    assert cast.tasks == 1
