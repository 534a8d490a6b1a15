"""Fixtures of the profile tests: a server on a clock the test moves, and `Api` over it.
A module overrides `clock` to start elsewhere."""

from __future__ import annotations

import grpc.aio
import pytest

from server.app import RunningServer
from tests.fixtures_server import MintToken, ServerFactory
from tests.profile.support import Api, MovableClock, clock_at


@pytest.fixture
def clock() -> MovableClock:
    return clock_at("2026-03-01")


@pytest.fixture
async def running(server_factory: ServerFactory, clock: MovableClock) -> RunningServer:
    return await server_factory(clock=clock)


@pytest.fixture
async def api(running: RunningServer, mint_token: MintToken, clock: MovableClock) -> Api:
    return Api(grpc.aio.insecure_channel(f"127.0.0.1:{running.port}"), mint_token, clock)
