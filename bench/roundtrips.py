"""Database round trips per request: `python -m bench.roundtrips [--calls N]`.

Starts the server in this process (server.app.start_server on 127.0.0.1:0, the bench's
embedded PostgreSQL or DATABASE_URL, a fresh database), onboards a few users through the
API, then sends RecordTaskAccepted and GetProfile calls over gRPC while SQLAlchemy engine
events count what each call sends to PostgreSQL: statements, BEGIN, COMMIT and the pool's
pre-ping on checkout (when enabled). Prints one JSON document: per-call averages of calls
sent one after another, the same with the calls sent at once (batched), and the distinct
SQL statements of one call, in order. Not a timing tool (no figures, only counts).
Statements a use case sends on the raw asyncpg connection (bypassing SQLAlchemy) are
counted through asyncpg's query logger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any

import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp
from smartstart.conversion.v1 import conversion_service_pb2 as cpb
from smartstart.conversion.v1 import conversion_service_pb2_grpc as cpb_grpc
from smartstart.profile.v1 import profile_service_pb2 as ppb
from smartstart.profile.v1 import profile_service_pb2_grpc as ppb_grpc
from smartstart.wallet.v1 import wallet_service_pb2 as wpb
from smartstart.wallet.v1 import wallet_service_pb2_grpc as wpb_grpc
from sqlalchemy import event

from bench import database
from bench.server import JWT_SECRET
from server.app import start_server
from server.config import load_settings
from server.db.session import Database
from server.interceptors.tokens import HS256, mint_token
from server.logging import configure_logging


class Counts:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.events: Counter[str] = Counter()
        self.on = False

    def reset(self) -> None:
        self.statements.clear()
        self.events.clear()


def _attach(db: Database, counts: Counts) -> None:
    sync = db.engine.sync_engine

    @event.listens_for(sync, "before_cursor_execute")
    def _stmt(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if counts.on:
            counts.statements.append(" ".join(statement.split())[:160])
            counts.events["statement"] += 1

    def autocommit(conn: Any) -> bool:
        # Autocommit connections (Database.read) send no BEGIN/COMMIT/ROLLBACK at all.
        return bool(conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT")

    @event.listens_for(sync, "begin")
    def _begin(conn: Any) -> None:
        if counts.on and not autocommit(conn):
            counts.events["BEGIN"] += 1

    @event.listens_for(sync, "commit")
    def _commit(conn: Any) -> None:
        if counts.on and not autocommit(conn):
            counts.events["COMMIT"] += 1

    @event.listens_for(sync, "rollback")
    def _rollback(conn: Any) -> None:
        if counts.on and not autocommit(conn):
            counts.events["ROLLBACK"] += 1

    # Statements a use case sends on the asyncpg connection itself bypass the engine events:
    # asyncpg's query logger sees them (it also sees the adapter's BEGIN/COMMIT/ROLLBACK,
    # which the engine events above already count, so those are skipped here).
    logged: set[int] = set()

    def _driver_query(record: Any) -> None:
        if not counts.on:
            return
        query = " ".join(str(record.query).split())
        if query.split(" ", 1)[0].rstrip(";").upper() in {
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT",
        }:
            return
        counts.statements.append(query[:160])
        counts.events["statement (driver)"] += 1

    @event.listens_for(sync.pool, "checkout")
    def _logger_on_checkout(dbapi_conn: Any, *args: Any) -> None:
        driver = dbapi_conn.driver_connection
        if id(driver) not in logged:
            logged.add(id(driver))
            driver.add_query_logger(_driver_query)

    if getattr(sync.pool, "_pre_ping", False):

        @event.listens_for(sync.pool, "checkout")
        def _checkout(*args: Any) -> None:
            if counts.on:
                counts.events["checkout pre-ping"] += 1


def _ts(epoch: float) -> Timestamp:
    return Timestamp(seconds=int(epoch))


async def _measure(calls: int) -> dict[str, Any]:
    db_info = await asyncio.to_thread(
        database.provision, os.environ.get("DATABASE_URL", "").strip()
    )
    settings = replace(
        load_settings(),
        grpc_addr="127.0.0.1:0",
        database_url=db_info.url,
        jobs_enabled=False,
        jwt_dev_secret=JWT_SECRET,
        jwt_public_key_file="",
        jwt_jwks_file="",
        rate_limit_anonymous=10**9,
        rate_limit_authenticated=10**9,
    )
    db = Database.from_url(db_info.url, pool_size=4, max_overflow=0)
    counts = Counts()
    _attach(db, counts)
    running = await start_server(settings, db)
    token = mint_token(
        sub=str(uuid.UUID(int=1)),
        roles=["system", "board"],
        ttl_s=3600,
        key=JWT_SECRET,
        algorithm=HS256,
    )
    auth = (("authorization", f"Bearer {token}"),)
    out: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            profile = ppb_grpc.ProfileServiceStub(channel)
            wallet = wpb_grpc.WalletServiceStub(channel)
            conversion = cpb_grpc.ConversionServiceStub(channel)
            users: list[str] = []
            for i in range(3):
                u = await profile.RegisterUser(
                    ppb.RegisterUserRequest(
                        request_id=f"rt-{i}",
                        external_id=f"rt-{i}",
                        email=f"rt-{i}@bench.invalid",
                        display_name=f"RT {i}",
                    ),
                    metadata=auth,
                )
                await profile.SetKycStatus(
                    ppb.SetKycStatusRequest(
                        request_id=f"rt-kyc-{i}", user_id=u.user_id, status=ppb.KYC_STATUS_PASSED
                    ),
                    metadata=auth,
                )
                await profile.ReportDevicePosture(
                    ppb.ReportDevicePostureRequest(
                        request_id=f"rt-dev-{i}",
                        user_id=u.user_id,
                        compliant=True,
                        reported_at=_ts(time.time() - 1),
                    ),
                    metadata=auth,
                )
                users.append(u.user_id)
            await asyncio.to_thread(database.raise_reputation, db_info, users, 100_000)
            venture = (
                await conversion.CreateVenture(
                    cpb.CreateVentureRequest(
                        request_id="rt-venture", name="round trips", conversion_pool_bps=1000
                    ),
                    metadata=auth,
                )
            ).id

            async def issue(i: int) -> None:
                reply = await wallet.RecordTaskAccepted(
                    wpb.RecordTaskAcceptedRequest(
                        task_id=f"rt-task-{i}",
                        user_id=users[0],
                        tier=wpb.TASK_TIER_C,
                        quality=3,
                        reviewer_ids=[users[1]],
                        venture_id=venture,
                        accepted_at=_ts(time.time() - 86_400 * (i + 1)),
                    ),
                    metadata=auth,
                )
                assert reply.buz_awarded > 0, reply

            async def get_profile(i: int) -> None:
                await profile.GetProfile(ppb.GetProfileRequest(user_id=users[i % 3]))

            for name, fn in (("RecordTaskAccepted", issue), ("GetProfile", get_profile)):
                await fn(10_000)  # warm: prepared statements and caches
                counts.reset()
                counts.on = True
                await fn(0)
                one_call = list(counts.statements)
                for i in range(1, calls):
                    await fn(i)
                counts.on = False
                per_call = {k: round(v / calls, 2) for k, v in counts.events.items()}
                per_call["round trips"] = round(sum(counts.events.values()) / calls, 2)
                # The same number of calls at once: group commit / coalesced reads share
                # their statements (the figure under load).
                counts.reset()
                counts.on = True
                await asyncio.gather(*(fn(calls + i) for i in range(calls)))
                counts.on = False
                together = round(sum(counts.events.values()) / calls, 2)
                out[name] = {
                    "calls": calls,
                    "per_call": per_call,
                    "round_trips_per_call_when_concurrent": together,
                    "statements": one_call,
                }
    finally:
        await running.stop(0)
        await db.dispose()
        await asyncio.to_thread(database.teardown, db_info)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.roundtrips")
    p.add_argument("--calls", type=int, default=20)
    args = p.parse_args(argv)
    configure_logging("warning", json=True)
    print(json.dumps(asyncio.run(_measure(args.calls)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
