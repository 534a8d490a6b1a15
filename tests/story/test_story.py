"""The whole story, one end-to-end test through the public API only, with the Python SDK.

No SQL anywhere: every fact is set up and checked through RPCs (and the metrics endpoint).
Each step is a function named for what it does; `test_the_story` runs them in order over one
`Story`. A service that lands appends its steps where the list says, so the story grows
with the API. Steps still to come (the RPCs answer UNIMPLEMENTED today):

- ConversionService (issue 10): create a venture, award BUZ (RecordTaskAccepted for the
  venture, replacing the NOT_FOUND check in `typed_error`), open a window, request a
  conversion, approve it (the wallet's BURN, the cap table).
- ProfileService, the rest (issue 11): earn a badge, declare and endorse a skill, add a
  portfolio item.
- DocumentService: upload, share and sign a document, verify it, place and release a hold.
- AuditService: query the audit log, verify the chains (and the WORM job's run in
  `system_status`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from smartstart.ops.v1 import ops_service_pb2 as ops_pb
from smartstart.profile.v1 import profile_service_pb2 as profile_pb
from smartstart.sdk import ApiError, Client, new_request_id
from smartstart.wallet.v1 import wallet_service_pb2 as wallet_pb

from server.app import RunningServer, start_metrics_exporter
from tests.fixtures_server import MintToken, free_port
from tests.ops.support import json_value
from tests.ops.test_metrics import parse, scrape_text, value

SYSTEM_ID = str(uuid.UUID(int=0x5))
ADMIN_ID = str(uuid.UUID(int=0xAD))


@dataclass
class Story:
    system: Client
    admin: Client
    target: str
    mint: MintToken
    metrics_url: str
    users: dict[str, str] = field(default_factory=dict)  # name → user id
    clients: dict[str, Client] = field(default_factory=dict)  # name → a client as that user

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
            reported_at=_ts(datetime.now(UTC) - timedelta(minutes=1)),
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


async def typed_error(story: Story) -> None:
    """A reward for a venture that does not exist: NOT_FOUND with its reason (ventures come
    with ConversionService; then this step awards BUZ instead)."""
    with pytest.raises(ApiError) as err:
        await story.system.wallet.RecordTaskAccepted(
            wallet_pb.RecordTaskAcceptedRequest(
                task_id=f"story-{uuid.uuid4().hex}",
                user_id=story.users["ada"],
                tier=wallet_pb.TASK_TIER_A,
                quality=4,
                reviewer_ids=[story.users["grace"]],
                venture_id=str(uuid.uuid4()),
                accepted_at=_ts(datetime.now(UTC)),
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


STEPS = [register_users, kyc_and_posture, wallet_and_ledger, typed_error, operate, metrics]


@pytest.fixture
async def story(grpc_server: RunningServer, mint_token: MintToken) -> AsyncIterator[Story]:
    target = f"127.0.0.1:{grpc_server.port}"
    port = free_port()
    exporter = start_metrics_exporter(f"127.0.0.1:{port}")
    system = Client(target, token=mint_token(SYSTEM_ID, roles=("system",)), raise_api_errors=True)
    admin = Client(target, token=mint_token(ADMIN_ID, roles=("admin",)), raise_api_errors=True)
    told = Story(system, admin, target, mint_token, f"http://127.0.0.1:{port}/metrics")
    try:
        yield told
    finally:
        for client in (system, admin, *told.clients.values()):
            await client.close()
        exporter.shutdown()


async def test_the_story(story: Story) -> None:
    for step in STEPS:
        await step(story)
