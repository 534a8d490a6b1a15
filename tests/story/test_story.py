"""The whole story, one end-to-end test through the public API only, with the Python SDK.

No SQL anywhere: every fact is set up and checked through RPCs (and the metrics endpoint).
Each step is a function named for what it does; `test_the_story` runs them in order over one
`Story`. A service that lands appends its steps where the list says, so the story grows
with the API. The server runs on a clock the story moves (days pass for the daily job); jobs
are run through OpsService.RunJob. Steps still to come (the RPCs answer UNIMPLEMENTED today):

- DocumentService: upload, share and sign a document, verify it, place and release a hold.
- AuditService: query the audit log, verify the chains (and the WORM job's run in
  `system_status`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from smartstart.conversion.v1 import conversion_service_pb2 as conv_pb
from smartstart.ops.v1 import ops_service_pb2 as ops_pb
from smartstart.profile.v1 import profile_service_pb2 as profile_pb
from smartstart.sdk import ApiError, Client, new_request_id
from smartstart.wallet.v1 import wallet_service_pb2 as wallet_pb

from server.app import start_metrics_exporter
from tests.fixtures_server import MintToken, ServerFactory, free_port
from tests.ops.support import json_value
from tests.ops.test_metrics import parse, scrape_text, value
from tests.profile.support import MovableClock, clock_at

SYSTEM_ID = str(uuid.UUID(int=0x5))
ADMIN_ID = str(uuid.UUID(int=0xAD))
BOARD_ID = str(uuid.UUID(int=0xB0))


@dataclass
class Story:
    system: Client
    admin: Client
    board: Client
    target: str
    mint: MintToken
    metrics_url: str
    clock: MovableClock
    users: dict[str, str] = field(default_factory=dict)  # name → user id
    clients: dict[str, Client] = field(default_factory=dict)  # name → a client as that user
    venture: str = ""
    rewarded_task: str = ""  # a task whose BUZ was issued to ada

    def as_user(self, name: str) -> Client:
        if name not in self.clients:
            token = self.mint(self.users[name], roles=("user",))
            self.clients[name] = Client(self.target, token=token, raise_api_errors=True)
        return self.clients[name]


def _ts(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


# --- steps ------------------------------------------------------------------------------------


async def register_users(story: Story) -> None:
    for name in ("ada", "grace", "linus"):
        user = await story.system.profile.RegisterUser(
            profile_pb.RegisterUserRequest(
                request_id=new_request_id(),
                external_id=f"story-{name}",
                email=f"{name}@example.com",
                display_name=name.title(),
            )
        )
        story.users[name] = user.user_id
    async with Client(story.target) as anonymous:  # public profiles need no token
        profile = await anonymous.profile.GetProfile(
            profile_pb.GetProfileRequest(user_id=story.users["ada"])
        )
    assert (profile.display_name, profile.level) == ("Ada", 1)


async def kyc_and_posture(story: Story) -> None:
    ada = story.users["ada"]
    await story.admin.profile.SetKycStatus(
        profile_pb.SetKycStatusRequest(
            request_id=new_request_id(), user_id=ada, status=profile_pb.KYC_STATUS_PASSED
        )
    )
    await story.system.profile.ReportDevicePosture(
        profile_pb.ReportDevicePostureRequest(
            request_id=new_request_id(),
            user_id=ada,
            compliant=True,
            reported_at=_ts(story.clock() - timedelta(minutes=1)),
        )
    )
    user = await story.as_user("ada").profile.GetUser(profile_pb.GetUserRequest(user_id="me"))
    assert user.kyc_status == profile_pb.KYC_STATUS_PASSED
    posture = await story.as_user("ada").profile.GetDevicePosture(
        profile_pb.GetDevicePostureRequest(user_id="me")
    )
    assert posture.device_compliant and posture.device_compliant_days == 1


async def wallet_and_ledger(story: Story) -> None:
    ada = story.as_user("ada")
    wallet = await ada.wallet.GetMyWallet(wallet_pb.GetMyWalletRequest())
    assert (wallet.buz_balance, wallet.pending_lock) == (0, 0)
    adjusted = await story.admin.wallet.AdjustBalance(
        wallet_pb.AdjustBalanceRequest(
            request_id=new_request_id(),
            user_id=story.users["ada"],
            delta=250,
            reason="story: welcome bonus",
        )
    )
    assert adjusted.wallet.buz_balance == 250
    ledger = await ada.wallet.ListLedgerEntries(wallet_pb.ListLedgerEntriesRequest())
    assert [(e.type, e.amount) for e in ledger.entries] == [
        (wallet_pb.LEDGER_ENTRY_TYPE_ADJUST, 250)
    ]
    verified = await ada.wallet.VerifyWallet(wallet_pb.VerifyWalletRequest())
    assert verified.ok and verified.entries_checked == 1


async def run_job(story: Story, name: str, day: int) -> dict[str, int]:
    """The job, run through OpsService at 02:00 of story day `day`."""
    story.clock.at(day, hour=2)
    run = await story.admin.ops.RunJob(
        ops_pb.RunJobRequest(request_id=new_request_id(), name=name, wait=True)
    )
    assert run.outcome == ops_pb.JOB_RUN_OUTCOME_SUCCEEDED, run.error
    return dict(run.counts)


async def accepted_task(story: Story, assignee: str, reviewer: str) -> wallet_pb.TaskReward:
    """A tier-S task of quality 5 for the story's venture, accepted now."""
    task_id = f"story-task-{uuid.uuid4().hex}"
    return await story.system.wallet.RecordTaskAccepted(
        wallet_pb.RecordTaskAcceptedRequest(
            task_id=task_id,
            user_id=story.users[assignee],
            tier=wallet_pb.TASK_TIER_S,
            quality=5,
            reviewer_ids=[story.users[reviewer]],
            venture_id=story.venture,
            accepted_at=_ts(story.clock()),
        )
    )


async def report_posture(story: Story, name: str) -> None:
    await story.system.profile.ReportDevicePosture(
        profile_pb.ReportDevicePostureRequest(
            request_id=new_request_id(),
            user_id=story.users[name],
            compliant=True,
            reported_at=_ts(story.clock() - timedelta(minutes=1)),
        )
    )


async def create_venture(story: Story) -> None:
    venture = await story.board.conversion.CreateVenture(
        conv_pb.CreateVentureRequest(
            request_id=new_request_id(), name="Story Ventures", conversion_pool_bps=1000
        )
    )
    story.venture = venture.id


async def earn_reputation(story: Story) -> None:
    """Work withheld for a reputation of 0 still earns XP; two daily runs fold it into a
    reputation over the gate (min(50, 395/10) = 39.5, then 0.995 × 39.5 + 39.2 = 78.5)."""
    first = await accepted_task(story, "ada", "grace")
    assert list(first.withheld_reasons) == [wallet_pb.WITHHELD_REASON_REPUTATION_TOO_LOW]
    assert (first.xp_awarded, first.buz_awarded) == (392, 0)
    await story.system.profile.RecordReviewSubmitted(
        profile_pb.RecordReviewSubmittedRequest(
            event_id=new_request_id(),
            occurred_at=_ts(story.clock()),
            review=profile_pb.ReviewSubmitted(
                reviewer_user_id=story.users["linus"],
                subject_user_id=story.users["ada"],
                helpful=True,
                agreed_with_consensus=True,
                positive=True,
            ),
        )
    )
    await run_job(story, "daily_maintenance", 1)
    story.clock.at(1)
    await report_posture(story, "ada")
    await accepted_task(story, "ada", "grace")
    await run_job(story, "daily_maintenance", 2)
    profile = await story.as_user("ada").profile.GetMyProfile(profile_pb.GetMyProfileRequest())
    assert (profile.rep, profile.xp) == (78, 392 + 3 + 392)


async def award_buz(story: Story) -> None:
    story.clock.at(2)
    await report_posture(story, "ada")
    reward = await accepted_task(story, "ada", "grace")
    assert not reward.withheld and reward.buz_awarded == 392
    story.rewarded_task = reward.task_id
    mine = await story.as_user("ada").wallet.ListMyTaskRewards(wallet_pb.ListMyTaskRewardsRequest())
    assert len(mine.rewards) == 3  # the two withheld ones included
    wallet = await story.as_user("ada").wallet.GetMyWallet(wallet_pb.GetMyWalletRequest())
    assert wallet.buz_balance == 250 + 392


async def convert_to_equity(story: Story) -> None:
    """The board opens a window now; ada converts 500 BUZ at the default 100 bp per 10,000
    (5 bp, 500 BUZ locked); the board approves (BURN) and the cap table shows the grant."""
    now = story.clock()
    window = await story.board.conversion.CreateWindow(
        conv_pb.CreateWindowRequest(
            request_id=new_request_id(),
            label="Story window",
            opens_at=_ts(now),
            closes_at=_ts(now + timedelta(days=30)),
        )
    )
    assert window.status == conv_pb.WINDOW_STATUS_OPEN
    ada = story.as_user("ada")
    request = await ada.conversion.RequestConversion(
        conv_pb.RequestConversionRequest(
            request_id=new_request_id(),
            window_id=window.id,
            venture_id=story.venture,
            buz_amount=500,
        )
    )
    assert (request.granted_bps, request.buz_locked) == (5, 500)
    held = await ada.wallet.GetMyWallet(wallet_pb.GetMyWalletRequest())
    assert (held.buz_balance, held.pending_lock) == (250 + 392 - 500, 500)
    approved = await story.board.conversion.ApproveConversion(
        conv_pb.ApproveConversionRequest(request_id=new_request_id(), conversion_id=request.id)
    )
    assert approved.status == conv_pb.CONVERSION_STATUS_APPROVED
    after = await ada.wallet.GetMyWallet(wallet_pb.GetMyWalletRequest())
    assert (after.buz_balance, after.pending_lock) == (142, 0)
    cap = await story.board.conversion.GetCapTable(
        conv_pb.GetCapTableRequest(venture_id=story.venture)
    )
    assert [(e.user_id, e.granted_bps, e.buz_burned) for e in cap.entries] == [
        (story.users["ada"], 5, 500)
    ]


async def earn_a_badge(story: Story) -> None:
    counts = await run_job(story, "badge_evaluation", 3)
    assert counts.get("awards", 0) >= 1
    async with Client(story.target) as anonymous:  # badges of a public profile are public
        badges = await anonymous.profile.ListUserBadges(
            profile_pb.ListUserBadgesRequest(user_id=story.users["ada"])
        )
    assert "EQUITY_PIONEER" in {award.badge_code for award in badges.awards}


async def skills_and_endorsements(story: Story) -> None:
    await story.admin.profile.CreateSkill(
        profile_pb.CreateSkillRequest(
            request_id=new_request_id(), slug="story-python", name="Python", category="code"
        )
    )
    await story.as_user("ada").profile.DeclareSkill(
        profile_pb.DeclareSkillRequest(
            skill_slug="story-python", level=3, evidence_url="https://example.com/ada"
        )
    )
    await story.as_user("grace").profile.EndorseUser(
        profile_pb.EndorseUserRequest(
            request_id=new_request_id(),
            endorsee_user_id=story.users["ada"],
            skill_slug="story-python",
        )
    )
    received = await story.as_user("ada").profile.ListEndorsements(
        profile_pb.ListEndorsementsRequest(user_id="me")
    )
    assert [(e.skill_slug, e.endorser_user_id) for e in received.endorsements] == [
        ("story-python", story.users["grace"])
    ]


async def portfolio(story: Story) -> None:
    item = await story.as_user("ada").profile.CreatePortfolioItem(
        profile_pb.CreatePortfolioItemRequest(
            request_id=new_request_id(),
            title="Shipped the story",
            task_id=story.rewarded_task,
            is_public=True,
        )
    )
    assert item.buz_earned == 392
    async with Client(story.target) as anonymous:
        public = await anonymous.profile.ListPortfolio(
            profile_pb.ListPortfolioRequest(user_id=story.users["ada"])
        )
    assert [i.item_id for i in public.items] == [item.item_id]


async def typed_error(story: Story) -> None:
    """A reward for a venture that does not exist: NOT_FOUND with its reason."""
    with pytest.raises(ApiError) as err:
        await story.system.wallet.RecordTaskAccepted(
            wallet_pb.RecordTaskAcceptedRequest(
                task_id=f"story-{uuid.uuid4().hex}",
                user_id=story.users["ada"],
                tier=wallet_pb.TASK_TIER_A,
                quality=4,
                reviewer_ids=[story.users["grace"]],
                venture_id=str(uuid.uuid4()),
                accepted_at=_ts(story.clock()),
            )
        )
    assert (err.value.code, err.value.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    # Someone else's ledger is refused, as the contract says.
    with pytest.raises(ApiError) as denied:
        await story.as_user("grace").wallet.ListLedgerEntries(
            wallet_pb.ListLedgerEntriesRequest(user_id=story.users["ada"])
        )
    assert denied.value.reason == "PERMISSION_DENIED"


async def operate(story: Story) -> None:
    jobs = await story.admin.ops.ListJobs(ops_pb.ListJobsRequest())
    assert len(jobs.jobs) == 4
    cap = await story.admin.ops.GetSetting(ops_pb.GetSettingRequest(key="buz.daily_cap"))
    request = ops_pb.UpdateSettingRequest(
        setting=ops_pb.Setting(key="buz.daily_cap", etag=cap.etag, value=json_value(1800)),
        reason="story: a smaller pilot cap",
    )
    request.update_mask.paths.append("value")
    changed = await story.admin.ops.UpdateSetting(request)
    assert changed.value.number_value == 1800 and changed.updated_by == ADMIN_ID
    with pytest.raises(ApiError) as stale:
        await story.admin.ops.UpdateSetting(request)
    assert (stale.value.code, stale.value.reason) == (
        grpc.StatusCode.ABORTED,
        "CONCURRENT_MODIFICATION",
    )
    status = await story.system.ops.GetSystemStatus(ops_pb.GetSystemStatusRequest())
    assert status.database.healthy and status.blob_store.healthy
    assert status.integrity.open_incidents == 0


async def metrics(story: Story) -> None:
    body = await asyncio.to_thread(scrape_text, story.metrics_url)
    samples = parse(body)
    register = "/smartstart.profile.v1.ProfileService/RegisterUser"
    assert value(samples, "smartstart_rpc_total", method=register, code="OK") >= 3
    update = "/smartstart.ops.v1.OpsService/UpdateSetting"
    assert value(samples, "smartstart_rpc_total", method=update, code="ABORTED") >= 1


STEPS = [
    register_users,
    kyc_and_posture,
    wallet_and_ledger,
    create_venture,
    earn_reputation,
    award_buz,
    convert_to_equity,
    earn_a_badge,
    skills_and_endorsements,
    portfolio,
    typed_error,
    operate,
    metrics,
]


@pytest.fixture
async def story(server_factory: ServerFactory, mint_token: MintToken) -> AsyncIterator[Story]:
    clock = clock_at("2026-07-06")
    running = await server_factory(clock=clock)
    target = f"127.0.0.1:{running.port}"
    port = free_port()
    exporter = start_metrics_exporter(f"127.0.0.1:{port}")
    system = Client(target, token=mint_token(SYSTEM_ID, roles=("system",)), raise_api_errors=True)
    admin = Client(target, token=mint_token(ADMIN_ID, roles=("admin",)), raise_api_errors=True)
    board = Client(target, token=mint_token(BOARD_ID, roles=("board",)), raise_api_errors=True)
    told = Story(
        system, admin, board, target, mint_token, f"http://127.0.0.1:{port}/metrics", clock
    )
    try:
        yield told
    finally:
        for client in (system, admin, board, *told.clients.values()):
            await client.close()
        exporter.shutdown()


async def test_the_story(story: Story) -> None:
    for step in STEPS:
        await step(story)
