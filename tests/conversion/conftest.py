"""Conversion fixtures: a server whose clock the test moves (`clock`; a module overrides it
to start elsewhere), and the conversion API over it (`api`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc.aio
import pytest

from server.app import RunningServer
from tests.conversion.support import Api, Clock
from tests.fixtures_server import MintToken, ServerFactory


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


@pytest.fixture
async def running(server_factory: ServerFactory, clock: Clock) -> RunningServer:
    return await server_factory(clock=clock)


@pytest.fixture
async def api(running: RunningServer, mint_token: MintToken, clock: Clock) -> AsyncIterator[Api]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield Api.over(channel, mint_token, clock)
