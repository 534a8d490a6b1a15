"""Helpers shared by the wallet tests (no tests here): users, ventures, ledger moves,
superuser tampering."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import text

from server.core.context import Principal, RequestContext, Role
from server.core.pagination import PageTokens
from server.core.params_cache import Parameters
from server.db.session import Database
from server.wallet import ledger
from server.wallet.domain import RewardView, TaskAccepted
from server.wallet.entries import EntryType, RefKind
from server.wallet.service import WalletService

# The ledger's moves by name, as the use cases call ledger.post.
issue = partial(ledger.post, type=EntryType.ISSUE)
lock = partial(ledger.post, type=EntryType.LOCK, ref_kind=RefKind.CONVERSION)
unlock = partial(ledger.post, type=EntryType.UNLOCK, ref_kind=RefKind.CONVERSION)
burn = partial(ledger.post, type=EntryType.BURN, ref_kind=RefKind.CONVERSION)

SYSTEM = RequestContext(
    request_id="test-system", principal=Principal("system", frozenset({Role.SYSTEM}))
)
ADMIN = RequestContext(
    request_id="test-admin",
    principal=Principal("00000000-0000-0000-0000-00000000a0a0", frozenset({Role.ADMIN})),
)


NOW = datetime.now(UTC)


class World:
    """A venture, two reviewers (rep 100 → cred 1.0; rep 121 → cred 1.1) and the service."""

    def __init__(self, db: Database, service: WalletService, venture: uuid.UUID) -> None:
        self.db = db
        self.service = service
        self.venture = venture
        self.rev100: uuid.UUID
        self.rev121: uuid.UUID

    def event(self, user: uuid.UUID, **overrides: Any) -> TaskAccepted:
        base = TaskAccepted(
            task_id=f"task-{uuid.uuid4()}",
            user_id=str(user),
            tier="A",
            quality=3,
            reviewer_ids=[str(self.rev100)],
            venture_id=str(self.venture),
            accepted_at=NOW - timedelta(minutes=1),
        )
        return replace(base, **overrides)

    async def record(self, user: uuid.UUID, **overrides: Any) -> RewardView:
        return await self.service.record_task_accepted(SYSTEM, self.event(user, **overrides))

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.db.transaction() as s:
            return (await s.execute(text(sql), params)).scalar()


def wallet_service(db: Database, **batching: int) -> WalletService:
    """The wallet use cases over `db`, as build_services makes them (batch settings aside)."""
    return WalletService(db, Parameters(db), PageTokens(""), **batching)


def user_ctx(user_id: uuid.UUID) -> RequestContext:
    return RequestContext(
        request_id="test-user", principal=Principal(str(user_id), frozenset({Role.USER}))
    )


async def make_user(
    db: Database,
    *,
    kyc: str = "PASSED",
    rep: int = 100,
    rep_milli: int | None = None,
    compliant: bool | None = True,
    reported_at: datetime | None = None,
    xp: int = 0,
) -> uuid.UUID:
    """A user with profile and wallet; KYC, reputation and a device report as asked."""
    user_id = uuid.uuid4()
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO users (id, external_id, email, display_name, joined_at, kyc_status)"
                " VALUES (:id, :ext, :email, 'Test', now(), :kyc)"
            ),
            {
                "id": user_id,
                "ext": f"ext-{user_id}",
                "email": f"{user_id}@example.test",
                "kyc": kyc,
            },
        )
        await session.execute(
            text("INSERT INTO profiles (user_id, rep_milli, xp) VALUES (:id, :rep, :xp)"),
            {"id": user_id, "rep": rep * 1000 if rep_milli is None else rep_milli, "xp": xp},
        )
        await session.execute(text("INSERT INTO wallets (user_id) VALUES (:id)"), {"id": user_id})
        if compliant is not None:
            await session.execute(
                text(
                    "INSERT INTO device_posture_reports (user_id, compliant, reported_at)"
                    " VALUES (:id, :c, :at)"
                ),
                {
                    "id": user_id,
                    "c": compliant,
                    "at": reported_at or datetime.now(UTC) - timedelta(hours=1),
                },
            )
    return user_id


async def make_venture(db: Database) -> uuid.UUID:
    async with db.transaction() as session:
        venture_id: uuid.UUID = (
            await session.execute(
                text("INSERT INTO ventures (name, pool_bps) VALUES (:n, 1000) RETURNING id"),
                {"n": f"venture-{uuid.uuid4()}"},
            )
        ).scalar_one()
    return venture_id


async def as_superuser(db: Database, *statements: str, **params: Any) -> None:
    """Run statements with the write-once triggers disabled, as a database superuser would."""
    async with db.transaction() as session:
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            await session.execute(text(statement), params)


async def wallet_row(db: Database, user_id: uuid.UUID) -> Any:
    async with db.transaction() as session:
        return (
            await session.execute(text("SELECT * FROM wallets WHERE user_id = :u"), {"u": user_id})
        ).one()
