"""Helpers shared by the conversion tests (no tests here): callers, stubs, a clock to move,
ventures and windows made through the API, ledger checks."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from smartstart.conversion.v1 import conversion_service_pb2 as pb
from smartstart.conversion.v1 import conversion_service_pb2_grpc as pb_grpc
from smartstart.wallet.v1 import wallet_service_pb2 as wallet_pb
from smartstart.wallet.v1 import wallet_service_pb2_grpc as wallet_grpc
from sqlalchemy import text

from server.db.session import Database
from server.wallet import queries as wallet_queries
from server.wallet.verify import verify_rows
from tests.fixtures_server import MintToken, bearer, error_info

Metadata = tuple[tuple[str, str], ...]

ADMIN = str(uuid.UUID(int=0xA0))
BOARD = str(uuid.UUID(int=0xB0))
SYSTEM = str(uuid.UUID(int=0x50))


class Clock:
    """A clock a test moves: the server's "now" (server_factory(clock=...))."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


async def fails(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str | None = None
) -> error_details_pb2.ErrorInfo:
    """Await `call`, which must fail with `code` (and ErrorInfo `reason`); the ErrorInfo."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    info = error_info(caught.value)
    assert info is not None
    if reason is not None:
        assert info.reason == reason, (info.reason, caught.value.details())
    return info


@dataclass
class Api:
    """The conversion and wallet stubs, and call metadata for each kind of caller."""

    conv: pb_grpc.ConversionServiceStub
    wallet: wallet_grpc.WalletServiceStub
    mint: MintToken
    board: Metadata
    admin: Metadata
    system: Metadata
    clock: Callable[[], datetime]  # the server's, for windows that open "now"

    @classmethod
    def over(
        cls,
        channel: grpc.aio.Channel,
        mint: MintToken,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> Api:
        return cls(
            conv=pb_grpc.ConversionServiceStub(channel),
            wallet=wallet_grpc.WalletServiceStub(channel),
            mint=mint,
            board=bearer(mint(BOARD, roles=("board",))),
            admin=bearer(mint(ADMIN, roles=("admin",))),
            system=bearer(mint(SYSTEM, roles=("system",))),
            clock=clock,
        )

    def user(self, user_id: uuid.UUID | str) -> Metadata:
        return bearer(self.mint(str(user_id)))

    async def fund(self, user_id: uuid.UUID, amount: int) -> None:
        """BUZ for a user, through the admin's adjustment (an ADJUST entry)."""
        await self.wallet.AdjustBalance(
            wallet_pb.AdjustBalanceRequest(
                user_id=str(user_id),
                delta=amount,
                reason="test funds",
                request_id=f"f-{uuid.uuid4()}",
            ),
            metadata=self.admin,
        )

    async def wallet_of(self, user_id: uuid.UUID) -> wallet_pb.Wallet:
        return await self.wallet.GetWallet(
            wallet_pb.GetWalletRequest(user_id=str(user_id)), metadata=self.admin
        )

    async def venture(self, pool_bps: int = 1000, name: str | None = None) -> pb.Venture:
        return await self.conv.CreateVenture(
            pb.CreateVentureRequest(
                name=name or f"venture {uuid.uuid4()}",
                conversion_pool_bps=pool_bps,
                request_id=f"v-{uuid.uuid4()}",
            ),
            metadata=self.board,
        )

    async def window(
        self,
        rate: int | None = 100,
        *,
        opens_at: datetime | None = None,
        closes_at: datetime | None = None,
        label: str = "test window",
    ) -> pb.Window:
        """A window; by default one that opens at once and closes in 30 days."""
        now = self.clock()
        request = pb.CreateWindowRequest(
            label=label,
            opens_at=ts(opens_at or now),
            closes_at=ts(closes_at or now + timedelta(days=30)),
            request_id=f"w-{uuid.uuid4()}",
        )
        if rate is not None:
            request.equity_rate_bps = rate
        return await self.conv.CreateWindow(request, metadata=self.board)

    async def request(
        self,
        user_id: uuid.UUID,
        window: pb.Window,
        venture: pb.Venture,
        buz: int,
        request_id: str | None = None,
    ) -> pb.Conversion:
        return await self.conv.RequestConversion(
            pb.RequestConversionRequest(
                window_id=window.id,
                venture_id=venture.id,
                buz_amount=buz,
                request_id=request_id or f"r-{uuid.uuid4()}",
            ),
            metadata=self.user(user_id),
        )

    def approve(self, conversion_id: str, note: str = "") -> Awaitable[pb.Conversion]:
        return self.conv.ApproveConversion(
            pb.ApproveConversionRequest(
                conversion_id=conversion_id, note=note, request_id=f"a-{uuid.uuid4()}"
            ),
            metadata=self.board,
        )

    def reject(self, conversion_id: str, note: str = "not now") -> Awaitable[pb.Conversion]:
        return self.conv.RejectConversion(
            pb.RejectConversionRequest(
                conversion_id=conversion_id, note=note, request_id=f"j-{uuid.uuid4()}"
            ),
            metadata=self.board,
        )

    def cancel(self, user_id: uuid.UUID, conversion_id: str) -> Awaitable[pb.Conversion]:
        return self.conv.CancelConversion(
            pb.CancelConversionRequest(conversion_id=conversion_id, request_id=f"c-{uuid.uuid4()}"),
            metadata=self.user(user_id),
        )


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    async with db.transaction() as session:
        return (await session.execute(text(sql), params)).scalar()


async def assert_books_balance(db: Database, *user_ids: uuid.UUID) -> None:
    """Each wallet's ledger replays to its balance and pending lock, the pending lock is
    what its PENDING requests locked, and each venture's pending_bps and granted_bps are
    what its requests reserve and its grants sum to."""
    for user_id in user_ids:
        async with db.transaction() as session:
            wallet = await wallet_queries.load_wallet(session, user_id)
            row, entries = await wallet_queries.ledger_rows(session, wallet.wallet_id)
        verification = verify_rows(row, entries)
        assert verification.ok, verification.detail
        locked = await scalar(
            db,
            "SELECT coalesce(sum(buz_locked), 0) FROM conversion_requests"
            " WHERE user_id = :u AND status = 'PENDING'",
            u=user_id,
        )
        assert wallet.pending_lock == locked
    async with db.transaction() as session:
        mismatched = (
            await session.execute(
                text(
                    "SELECT v.id FROM ventures v"
                    " WHERE v.pending_bps <> (SELECT coalesce(sum(equity_bp), 0)"
                    "   FROM conversion_requests r WHERE r.venture_id = v.id"
                    "   AND r.status = 'PENDING')"
                    " OR v.granted_bps <> (SELECT coalesce(sum(bps), 0) FROM equity_grants g"
                    "   WHERE g.venture_id = v.id)"
                )
            )
        ).all()
    assert mismatched == []


async def every_page(
    call: Callable[..., Awaitable[Any]], request: Any, field: str, metadata: Metadata
) -> list[Any]:
    """Every item of a paged list (`field` of each page), following next_page_token."""
    items: list[Any] = []
    while True:
        page = await call(request, metadata=metadata)
        items += list(getattr(page, field))
        if not page.next_page_token:
            return items
        request.page_token = page.next_page_token
