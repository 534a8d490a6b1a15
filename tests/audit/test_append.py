"""The audit append primitive: chained, concurrent-safe, redacted, all-or-nothing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append, append_many
from server.audit.domain import chain_for
from server.core.context import Principal, RequestContext
from server.db.session import Database
from tests.audit.support import assert_chains_verify, events, heads_of

CTX = RequestContext(request_id="req-1", principal=Principal("actor-1", frozenset({"admin"})))


async def test_concurrent_appends_keep_every_chain_whole(db: Database) -> None:
    # 12 entities over 32 chains: some chains are shared, so writers really contend.
    refs = [f"entity-{i}" for i in range(12)]

    async def write(n: int) -> None:
        async def tx(session: AsyncSession) -> None:
            await append(session, CTX, AuditEvent("thing.changed", "thing", refs[n % 12], {"n": n}))

        await db.run(tx)

    await asyncio.gather(*(write(n) for n in range(120)))
    rows = await events(db)
    assert len(rows) == 120
    assert sorted(r["details"]["n"] for r in rows) == list(range(120))
    assert_chains_verify(rows, await heads_of(db))


async def test_append_many_across_chains_in_one_transaction(db: Database) -> None:
    batch = [AuditEvent("a.b", "scope", f"ref-{i}", {"i": i}) for i in range(6)]
    assert len({chain_for(e.scope, e.ref_id) for e in batch}) > 1

    async def tx(session: AsyncSession) -> None:
        await append_many(session, CTX, batch)

    await db.run(tx)
    rows = await events(db)
    assert len(rows) == 6
    assert all((r["actor_id"], r["request_id"]) == ("actor-1", "req-1") for r in rows)
    assert_chains_verify(rows, await heads_of(db))


async def test_secrets_never_reach_the_log_and_the_hash_covers_what_is_stored(
    db: Database,
) -> None:
    details = {"note": "ok", "token": "t", "nested": {"Password": "p", "keep": 1}}

    async def tx(session: AsyncSession) -> None:
        await append(session, CTX, AuditEvent("user.login", "user", "u-1", details))

    await db.run(tx)
    (row,) = await events(db)
    assert row["details"] == {"note": "ok", "nested": {"keep": 1}}
    assert_chains_verify([row], await heads_of(db))


async def test_a_rolled_back_transaction_leaves_no_event_and_no_head_move(db: Database) -> None:
    async def ok(session: AsyncSession) -> None:
        await append(session, CTX, AuditEvent("x.y", "thing", "r", {}))

    await db.run(ok)
    before = await heads_of(db)

    async def fails(session: AsyncSession) -> None:
        await append(session, CTX, AuditEvent("x.y", "thing", "r", {}))
        raise RuntimeError("the use case failed after appending")

    with pytest.raises(RuntimeError):
        await db.run(fails)
    assert await heads_of(db) == before
    assert len(await events(db)) == 1
