"""Helpers shared by tests that check the audit log (no tests here): read it back and
recompute every chain from the stored rows alone, as an outside verifier would."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from server.audit.domain import chained_fields
from server.core.chain import GENESIS, chain_hash, payload_hash
from server.db.session import Database


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
