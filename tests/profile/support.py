"""Helpers shared by the profile tests (no tests here): a clock tests move, and `Api`, the
ProfileService and WalletService calls of a user's flow through the real server."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from smartstart.conversion.v1 import conversion_service_pb2 as cpb
from smartstart.conversion.v1 import conversion_service_pb2_grpc as cpb_grpc
from smartstart.profile.v1 import profile_service_pb2 as pb
from smartstart.profile.v1 import profile_service_pb2_grpc as pb_grpc
from smartstart.wallet.v1 import wallet_service_pb2 as wpb
from smartstart.wallet.v1 import wallet_service_pb2_grpc as wpb_grpc
from sqlalchemy import text

from server.app import RunningServer
from server.db.session import Database
from tests.fixtures_server import MintToken, bearer, error_info, rpc_status_of

SYSTEM = str(uuid.UUID(int=1))
ADMIN = str(uuid.UUID(int=2))
Metadata = tuple[tuple[str, str], ...]


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


@dataclass
class MovableClock:
    """The server's "now" in a test: starts at `now`, moves only when told."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def at(self, day: int, hour: int = 12, minute: int = 0) -> datetime:
        """Move to `hour`:`minute` UTC of day `day` counted from the start day."""
        start = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        self.now = start + timedelta(days=day, hours=hour, minutes=minute)
        return self.now

    start: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.start = self.now


def clock_at(day: str) -> MovableClock:
    """A clock at noon UTC of `day` (ISO date)."""
    return MovableClock(datetime.fromisoformat(f"{day}T12:00:00+00:00"))


async def fails(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str | None = None, field: str | None = None
) -> grpc.aio.AioRpcError:
    """Await `call`, which must fail with `code` (and ErrorInfo `reason`, and a BadRequest
    violation on `field`); the error."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == code, err.details()
    if reason is not None:
        detail = error_info(err)
        assert detail is not None and detail.reason == reason, detail
    if field is not None:
        from google.rpc import error_details_pb2

        fields = []
        for detail_any in rpc_status_of(err).details:
            if detail_any.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail_any.Unpack(bad)
                fields += [v.field for v in bad.field_violations]
        assert field in fields, (field, fields)
    return err


class Api:
    """The calls of a flow, with the right tokens; every effect goes through the API."""

    def __init__(
        self, channel: grpc.aio.Channel, mint_token: MintToken, clock: Callable[[], datetime]
    ):
        self.channel = channel
        self.profiles = pb_grpc.ProfileServiceStub(channel)
        self.wallets = wpb_grpc.WalletServiceStub(channel)
        self.conversions = cpb_grpc.ConversionServiceStub(channel)
        self.mint = mint_token
        self.clock = clock
        self.system: Metadata = bearer(mint_token(SYSTEM, roles=("system",)))
        self.admin: Metadata = bearer(mint_token(ADMIN, roles=("admin",)))

    def user(self, user_id: str, *roles: str) -> Metadata:
        return bearer(self.mint(user_id, roles=roles or ("user",)))

    async def register(self, name: str = "Ada", **fields: Any) -> str:
        ext = fields.pop("external_id", f"ext-{uuid.uuid4().hex[:12]}")
        user = await self.profiles.RegisterUser(
            pb.RegisterUserRequest(
                request_id=str(uuid.uuid4()),
                external_id=ext,
                email=f"{ext}@example.test",
                display_name=name,
                **fields,
            ),
            metadata=self.system,
        )
        return str(user.user_id)

    async def review(
        self,
        reviewer: str,
        subject: str = "",
        *,
        event_id: str | None = None,
        positive: bool = True,
        helpful: bool = False,
        agreed: bool = False,
        occurred_at: datetime | None = None,
    ) -> pb.ActivityEvent:
        return await self.profiles.RecordReviewSubmitted(
            pb.RecordReviewSubmittedRequest(
                event_id=event_id or f"review-{uuid.uuid4()}",
                occurred_at=ts(occurred_at or self.clock()),
                review=pb.ReviewSubmitted(
                    reviewer_user_id=reviewer,
                    subject_user_id=subject,
                    helpful=helpful,
                    agreed_with_consensus=agreed,
                    positive=positive,
                ),
            ),
            metadata=self.system,
        )

    async def bug(
        self, user: str, severity: int = pb.BUG_SEVERITY_CRITICAL, event_id: str | None = None
    ) -> pb.ActivityEvent:
        return await self.profiles.RecordBugReport(
            pb.RecordBugReportRequest(
                event_id=event_id or f"bug-{uuid.uuid4()}",
                occurred_at=ts(self.clock()),
                report=pb.BugReport(user_id=user, severity=severity),  # type: ignore[arg-type]
            ),
            metadata=self.system,
        )

    async def violation(self, user: str, code: str = "spam", note: str = "") -> pb.ActivityEvent:
        return await self.profiles.RecordPolicyViolation(
            pb.RecordPolicyViolationRequest(
                event_id=f"violation-{uuid.uuid4()}",
                occurred_at=ts(self.clock()),
                violation=pb.PolicyViolation(user_id=user, policy_code=code, note=note),
            ),
            metadata=self.system,
        )

    async def task(
        self,
        user: str,
        reviewer: str,
        venture: str,
        *,
        tier: int = wpb.TASK_TIER_S,
        quality: int = 5,
        accepted_at: datetime | None = None,
    ) -> wpb.TaskReward:
        return await self.wallets.RecordTaskAccepted(
            wpb.RecordTaskAcceptedRequest(
                task_id=f"task-{uuid.uuid4()}",
                user_id=user,
                tier=tier,  # type: ignore[arg-type]
                quality=quality,
                reviewer_ids=[reviewer],
                venture_id=venture,
                accepted_at=ts(accepted_at or self.clock() - timedelta(minutes=1)),
            ),
            metadata=self.system,
        )

    async def venture(self, pool_bps: int = 1000) -> str:
        """A venture the board creates (tasks are rewarded against one)."""
        venture = await self.conversions.CreateVenture(
            cpb.CreateVentureRequest(
                request_id=str(uuid.uuid4()),
                name=f"venture-{uuid.uuid4()}",
                conversion_pool_bps=pool_bps,
            ),
            metadata=self.user(str(uuid.uuid4()), "board"),
        )
        return venture.id

    async def profile(self, user: str) -> pb.Profile:
        return await self.profiles.GetProfile(pb.GetProfileRequest(user_id=user))

    async def set_kyc(self, user: str, status: int = pb.KYC_STATUS_PASSED) -> None:
        await self.profiles.SetKycStatus(
            pb.SetKycStatusRequest(request_id=str(uuid.uuid4()), user_id=user, status=status),  # type: ignore[arg-type]
            metadata=self.system,
        )

    async def report_posture(self, user: str, compliant: bool = True) -> None:
        await self.profiles.ReportDevicePosture(
            pb.ReportDevicePostureRequest(
                request_id=str(uuid.uuid4()),
                user_id=user,
                compliant=compliant,
                reported_at=ts(self.clock()),
            ),
            metadata=self.system,
        )


async def channel_to(running: RunningServer) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")


async def sql_rows(db: Database, sql: str, **params: Any) -> list[Any]:
    async with db.transaction() as session:
        return list((await session.execute(text(sql), params)).all())


async def sql_value(db: Database, sql: str, **params: Any) -> Any:
    async with db.transaction() as session:
        return (await session.execute(text(sql), params)).scalar()
