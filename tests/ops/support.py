"""OpsService test helpers: callers, stubs, and a server whose jobs have test bodies.

The real jobs get their bodies with the issues that build their use cases; these tests give
the same four names bodies of their own (a gated keyed daily job, a quick one, a failing
one, one still without a body) through the composition root's `jobs()`, so the API paths
around them are exercised the way production runs them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import grpc.aio
import pytest
from google.protobuf import json_format, struct_pb2
from smartstart.ops.v1 import ops_service_pb2 as pb
from smartstart.profile.v1 import profile_service_pb2 as profile_pb
from smartstart.profile.v1 import profile_service_pb2_grpc as profile_grpc

import server.services as composition
from server.app import RunningServer
from server.jobs import Job, JobContext, utc_date_key
from server.jobs.registry import Counts
from server.services import (
    BADGE_EVALUATION,
    CONVERSION_WINDOWS,
    DAILY_MAINTENANCE,
    WORM_MAINTENANCE,
    Services,
)
from tests.fixtures_server import MintToken, ServerFactory, bearer, error_info

ADMIN = str(uuid.UUID(int=0xAD))
SYSTEM = str(uuid.UUID(int=0x5))
USER = str(uuid.UUID(int=0x11))

Metadata = tuple[tuple[str, str], ...]


@dataclass
class Callers:
    admin: Metadata
    system: Metadata
    user: Metadata


def callers(mint_token: MintToken) -> Callers:
    return Callers(
        admin=bearer(mint_token(ADMIN, roles=("admin",))),
        system=bearer(mint_token(SYSTEM, roles=("system",))),
        user=bearer(mint_token(USER, roles=("user",))),
    )


def json_value(value: object) -> struct_pb2.Value:
    message = struct_pb2.Value()
    json_format.ParseDict(value, message)
    return message


def update(
    key: str, value: object = None, *, etag: str = "", **fields: str
) -> pb.UpdateSettingRequest:
    """An UpdateSettingRequest of `value` (when given) and the named string fields."""
    setting = pb.Setting(key=key, etag=etag, description=fields.get("description", ""))
    paths = [p for p in ("description",) if p in fields]
    if value is not None:
        setting.value.CopyFrom(json_value(value))
        paths.insert(0, "value")
    request = pb.UpdateSettingRequest(setting=setting, reason=fields.get("reason", "test"))
    request.update_mask.paths.extend(
        fields.get("paths", "").split(",") if "paths" in fields else paths
    )
    return request


async def expect_error(
    call: Awaitable[object], code: grpc.StatusCode, reason: str | None = None
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    if reason is not None:
        info = error_info(caught.value)
        assert info is not None and info.reason == reason
    return caught.value


@dataclass
class JobBodies:
    """Bodies the tests steer: the daily one blocks until `release` is set."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    daily_calls: list[str | None] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    badge_calls: int = 0

    async def daily(self, ctx: JobContext[Services]) -> Counts:
        self.daily_calls.append(ctx.run_key)
        self.started.set()
        await self.release.wait()
        return {"users_processed": 3}

    async def badges(self, ctx: JobContext[Services]) -> Counts:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(0.01)  # long enough for overlapping runs to show
            self.badge_calls += 1
            return {"badges_awarded": self.badge_calls}
        finally:
            self.active -= 1

    async def failing(self, ctx: JobContext[Services]) -> Counts:
        raise RuntimeError("window table unreachable")

    def table(self) -> tuple[Job[Services], ...]:
        return (
            Job(DAILY_MAINTENANCE, "0 2 * * *", self.daily, "daily", run_key=utc_date_key),
            Job(BADGE_EVALUATION, "0 * * * *", self.badges, "badges"),
            Job(CONVERSION_WINDOWS, "*/15 * * * *", self.failing, "windows"),
            Job(WORM_MAINTENANCE, "*/5 * * * *", None, "chains"),
        )


JobServer = Callable[..., Awaitable[RunningServer]]


def with_test_jobs(
    monkeypatch: pytest.MonkeyPatch, server_factory: ServerFactory, bodies: JobBodies
) -> JobServer:
    """A server factory whose servers run `bodies` as the four jobs."""
    monkeypatch.setattr(composition, "jobs", bodies.table)
    return server_factory


async def register_user(channel: grpc.aio.Channel, system: Metadata, name: str) -> str:
    stub = profile_grpc.ProfileServiceStub(channel)
    user = await stub.RegisterUser(
        profile_pb.RegisterUserRequest(
            request_id=f"reg-{name}",
            external_id=name,
            email=f"{name}@example.com",
            display_name=name.title(),
        ),
        metadata=system,
    )
    return str(user.user_id)
