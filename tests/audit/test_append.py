"""The audit append primitive: chained, concurrent-safe, redacted, all-or-nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append, append_many
from server.audit.domain import chain_for, chained_fields
from server.core.chain import GENESIS, chain_hash, payload_hash
from server.core.context import Principal, RequestContext
from server.db.session import Database

CTX = RequestContext(request_id="req-1", principal=Principal("actor-1", frozenset({"admin"})))


async def events(db: Database) -> list[Any]:
    async with db.transaction() as session:
        return list(
            (
                await session.execute(text("SELECT * FROM audit_events ORDER BY chain_id, seq"))
            ).mappings()
        )


def assert_chains_verify(rows: list[Any], heads: dict[str, tuple[int, str]]) -> None:
    """Recompute every chain from the stored rows alone, as a verifier would."""
    by_chain: dict[str, list[Any]] = {}
    for row in rows:
        by_chain.setdefault(row["chain_id"], []).append(row)
    assert set(by_chain) == set(heads)
    for chain_id, chain in by_chain.items():
        prev = GENESIS
        for expected_seq, row in enumerate(chain, start=1):
            assert row["seq"] == expected_seq
            assert row["prev_hash"] == prev
            assert row["payload_hash"] == payload_hash(row["details"])
            fields = chained_fields(
                chain_id=chain_id,
                seq=row["seq"],
                occurred_at=row["occurred_at"],
                actor_id=row["actor_id"],
                action=row["action"],
                scope=row["scope"],
                ref_id=row["ref_id"],
                request_id=row["request_id"],
                payload_hash=row["payload_hash"],
            )
            assert chain_hash(prev, fields) == row["hash"]
            prev = row["hash"]
        assert heads[chain_id] == (len(chain), prev)


async def heads_of(db: Database) -> dict[str, tuple[int, str]]:
    async with db.transaction() as session:
        rows = (
            await session.execute(text("SELECT chain_id, seq, hash FROM audit_chain_heads"))
        ).all()
    return {r.chain_id: (int(r.seq), r.hash) for r in rows}


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
