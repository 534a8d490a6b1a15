"""OpsService settings through gRPC: listing, typed values over their defaults, validated and
etag-guarded audited updates that this server uses at once, and every refusal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from smartstart.ops.v1 import ops_service_pb2 as pb
from smartstart.ops.v1 import ops_service_pb2_grpc as pb_grpc
from smartstart.profile.v1 import profile_service_pb2 as profile_pb
from smartstart.profile.v1 import profile_service_pb2_grpc as profile_grpc
from sqlalchemy import text

from server.app import RunningServer
from server.core.settings_defaults import SETTINGS_DEFAULTS
from server.db.session import Database
from tests.fixtures_server import MintToken, error_info
from tests.ops.support import ADMIN, Callers, callers, expect_error, register_user, update


@pytest.fixture
async def channel_(grpc_server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        yield channel


@pytest.fixture
def ops(channel_: grpc.aio.Channel) -> pb_grpc.OpsServiceStub:
    return pb_grpc.OpsServiceStub(channel_)


@pytest.fixture
def who(mint_token: MintToken) -> Callers:
    return callers(mint_token)


def value_of(setting: pb.Setting) -> object:
    return json_format.MessageToDict(setting.value)


async def test_list_settings_covers_every_key_with_type_and_default(
    ops: pb_grpc.OpsServiceStub, who: Callers
) -> None:
    listed = await ops.ListSettings(pb.ListSettingsRequest(page_size=200), metadata=who.system)
    assert [s.key for s in listed.settings] == sorted(SETTINGS_DEFAULTS)
    by_key = {s.key: s for s in listed.settings}
    cap = by_key["buz.daily_cap"]
    assert value_of(cap) == 2000 and json_format.MessageToDict(cap.default_value) == 2000
    assert cap.value_type == pb.SETTING_VALUE_TYPE_INTEGER
    assert by_key["reputation.decay"].value_type == pb.SETTING_VALUE_TYPE_NUMBER
    assert by_key["gates.require_kyc"].value_type == pb.SETTING_VALUE_TYPE_BOOLEAN
    assert by_key["buz.tier_base"].value_type == pb.SETTING_VALUE_TYPE_JSON
    assert value_of(by_key["buz.tier_base"]) == {"S": 400, "A": 150, "B": 80, "C": 50}
    # Seeded defaults: never changed.
    assert not cap.HasField("updated_at") and cap.updated_by == "" and cap.etag
    assert cap.description == SETTINGS_DEFAULTS["buz.daily_cap"].description

    buz = await ops.ListSettings(pb.ListSettingsRequest(key_prefix="buz."), metadata=who.admin)
    assert [s.key for s in buz.settings] == sorted(
        k for k in SETTINGS_DEFAULTS if k.startswith("buz.")
    )

    keys: list[str] = []
    token = ""
    while True:
        page = await ops.ListSettings(
            pb.ListSettingsRequest(page_size=7, page_token=token), metadata=who.admin
        )
        keys.extend(s.key for s in page.settings)
        token = page.next_page_token
        if not token:
            break
    assert keys == sorted(SETTINGS_DEFAULTS)
    first = await ops.ListSettings(pb.ListSettingsRequest(page_size=1), metadata=who.admin)
    await expect_error(
        ops.ListSettings(
            pb.ListSettingsRequest(page_token=first.next_page_token, key_prefix="xp."),
            metadata=who.admin,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    await expect_error(
        ops.ListSettings(pb.ListSettingsRequest(), metadata=who.user),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )


async def test_update_changes_value_and_description_audited(
    ops: pb_grpc.OpsServiceStub, who: Callers, db: Database
) -> None:
    before = await ops.GetSetting(pb.GetSettingRequest(key="buz.daily_cap"), metadata=who.admin)
    changed = await ops.UpdateSetting(
        update("buz.daily_cap", 1500, etag=before.etag, reason="pilot"), metadata=who.admin
    )
    assert value_of(changed) == 1500 and changed.updated_by == ADMIN
    assert changed.HasField("updated_at") and changed.etag != before.etag
    assert json_format.MessageToDict(changed.default_value) == 2000
    got = await ops.GetSetting(pb.GetSettingRequest(key="buz.daily_cap"), metadata=who.system)
    assert (value_of(got), got.etag) == (1500, changed.etag)

    described = await ops.UpdateSetting(
        update("buz.daily_cap", description="Cap per UTC day\nduring the pilot"), metadata=who.admin
    )
    assert described.description == "Cap per UTC day\nduring the pilot"
    assert value_of(described) == 1500

    # Decimal factors and JSON values: whole numbers come back whole.
    decay = await ops.UpdateSetting(update("reputation.decay", 0.99), metadata=who.admin)
    assert value_of(decay) == 0.99
    tiers = await ops.UpdateSetting(
        update("buz.tier_base", {"S": 500, "A": 150, "B": 80, "C": 50}), metadata=who.admin
    )
    assert value_of(tiers) == {"S": 500, "A": 150, "B": 80, "C": 50}
    async with db.transaction() as session:
        stored = (
            await session.execute(
                text("SELECT value FROM system_settings WHERE key = 'buz.tier_base'")
            )
        ).scalar_one()
        events = (
            await session.execute(
                text(
                    "SELECT actor_id, details FROM audit_events WHERE action = 'setting.updated'"
                    " AND ref_id = 'buz.daily_cap' ORDER BY id"
                )
            )
        ).all()
    assert stored == {"S": 500, "A": 150, "B": 80, "C": 50}
    assert [(e.actor_id, e.details["old_value"], e.details["new_value"]) for e in events] == [
        (ADMIN, "2000", "1500"),
        (ADMIN, "1500", "1500"),
    ]
    assert events[0].details["reason"] == "pilot"
    # Setting the default again is how a value is reset.
    reset = await ops.UpdateSetting(update("buz.daily_cap", 2000), metadata=who.admin)
    assert value_of(reset) == 2000


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("buz.daily_cap", "2000", "whole number"),
        ("buz.daily_cap", 12.5, "whole number"),
        ("buz.daily_cap", -1, "outside"),
        ("buz.daily_cap", True, "whole number"),
        ("conversion.default_rate_bps", 0, "outside"),
        ("conversion.default_rate_bps", 10_001, "outside"),
        ("gates.require_kyc", 1, "true or false"),
        ("reputation.decay", 1.5, "0..1"),
        ("reputation.decay", "0.9", "number"),
        ("levels.thresholds", [0, 100, 50], "increase"),
        ("levels.thresholds", 7, "object or list"),
        ("trust.weight_bounds", {"min": 2, "max": 1}, "min must not exceed max"),
        ("upload.allowed_types", ["application/pdf", 3], "media types"),
        ("buz.tier_base", {"S": "many"}, "not a number"),
    ],
)
async def test_a_value_of_the_wrong_type_or_range_is_refused_and_nothing_changes(
    ops: pb_grpc.OpsServiceStub, who: Callers, key: str, value: object, why: str
) -> None:
    before = await ops.GetSetting(pb.GetSettingRequest(key=key), metadata=who.admin)
    err = await expect_error(
        ops.UpdateSetting(update(key, value), metadata=who.admin),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert why in (err.details() or "")
    after = await ops.GetSetting(pb.GetSettingRequest(key=key), metadata=who.admin)
    assert after == before


async def test_update_refusals(ops: pb_grpc.OpsServiceStub, who: Callers) -> None:
    await expect_error(
        ops.UpdateSetting(update("no.such.key", 1), metadata=who.admin),
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
    )
    await expect_error(
        ops.GetSetting(pb.GetSettingRequest(key="no.such.key"), metadata=who.admin),
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
    )
    empty = update("buz.daily_cap")
    await expect_error(
        ops.UpdateSetting(empty, metadata=who.admin),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    other = update("buz.daily_cap", 10, paths="value,key")
    await expect_error(
        ops.UpdateSetting(other, metadata=who.admin),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    unset = update("buz.daily_cap", paths="value")
    await expect_error(
        ops.UpdateSetting(unset, metadata=who.admin),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    long = update("buz.daily_cap", description="x" * 501)
    await expect_error(
        ops.UpdateSetting(long, metadata=who.admin),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    # Settings are admin's: system reads them, but may not change them.
    await expect_error(
        ops.UpdateSetting(update("buz.daily_cap", 10), metadata=who.system),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    got = await ops.GetSetting(pb.GetSettingRequest(key="buz.daily_cap"), metadata=who.admin)
    assert value_of(got) == 2000 and not got.HasField("updated_at")


async def test_a_stale_etag_is_aborted_and_concurrent_writers_lose_but_one(
    ops: pb_grpc.OpsServiceStub, who: Callers
) -> None:
    seen = await ops.GetSetting(pb.GetSettingRequest(key="xp.badge"), metadata=who.admin)
    results = await asyncio.gather(
        *(
            ops.UpdateSetting(update("xp.badge", 50 + n, etag=seen.etag), metadata=who.admin)
            for n in range(1, 9)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, pb.Setting)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 7
    for err in lost:
        assert err.code() == grpc.StatusCode.ABORTED
        info = error_info(err)
        assert info is not None and info.reason == "CONCURRENT_MODIFICATION"
    now = await ops.GetSetting(pb.GetSettingRequest(key="xp.badge"), metadata=who.admin)
    assert (value_of(now), now.etag) == (value_of(won[0]), won[0].etag)
    # The current etag works; so does no etag at all.
    assert (
        value_of(await ops.UpdateSetting(update("xp.badge", 60, etag=now.etag), metadata=who.admin))
        == 60
    )
    assert value_of(await ops.UpdateSetting(update("xp.badge", 61), metadata=who.admin)) == 61


async def test_the_answering_server_uses_a_new_value_at_once(
    channel_: grpc.aio.Channel, ops: pb_grpc.OpsServiceStub, who: Callers
) -> None:
    """The device window (`device.max_report_age_hours`) decides compliance in
    GetDevicePosture: a report 3 h old is compliant under 72 h, not under 2 h."""
    profiles = profile_grpc.ProfileServiceStub(channel_)
    user_id = await register_user(channel_, who.system, "posture")
    at = Timestamp()
    at.FromDatetime(datetime.now(UTC) - timedelta(hours=3))
    await profiles.ReportDevicePosture(
        profile_pb.ReportDevicePostureRequest(
            request_id="p-1", user_id=user_id, compliant=True, reported_at=at
        ),
        metadata=who.system,
    )
    ask = profile_pb.GetDevicePostureRequest(user_id=user_id)
    assert (await profiles.GetDevicePosture(ask, metadata=who.admin)).device_compliant
    await ops.UpdateSetting(update("device.max_report_age_hours", 2), metadata=who.admin)
    assert not (await profiles.GetDevicePosture(ask, metadata=who.admin)).device_compliant
