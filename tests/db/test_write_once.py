"""The database itself rejects changes to evidence, and CHECKs guard money invariants."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from server.core.chain import GENESIS
from server.db.session import Database, sqlstate_of

SEED = """
INSERT INTO users (id, external_id, email, display_name, joined_at) VALUES
  ('00000000-0000-0000-0000-000000000001', 'ext-1', 'a@example.com', 'A', now()),
  ('00000000-0000-0000-0000-000000000002', 'ext-2', 'b@example.com', 'B', now());
INSERT INTO wallets (id, user_id, buz_balance) VALUES
  ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 100);
INSERT INTO ledger_entries (wallet_id, seq, type, amount, balance_after, pending_after,
                            prev_hash, hash)
  VALUES ('00000000-0000-0000-0000-0000000000a1', 1, 'ISSUE', 100, 100, 0, :genesis, 'h1');
INSERT INTO audit_events (chain_id, seq, occurred_at, actor_id, action, scope, ref_id,
                          payload_hash, prev_hash, hash)
  VALUES ('audit:00', 1, now(), 'system', 'wallet.issue', 'wallet', 'w1', 'p', :genesis, 'h1');
INSERT INTO service_keys (id, public_key_pem) VALUES ('svc-1', 'pem');
INSERT INTO audit_checkpoints (heads, merkle_root, key_id, signature)
  VALUES ('{}', 'root', 'svc-1', '\\x00');
INSERT INTO ventures (id, name, pool_bps, granted_bps)
  VALUES ('00000000-0000-0000-0000-0000000000b1', 'V', 1000, 10);
INSERT INTO conversion_windows (id, label, opens_at, closes_at, equity_rate_bps, status,
                                created_by)
  VALUES ('00000000-0000-0000-0000-0000000000c1', '2026-Q1', '2026-01-01Z', '2026-04-01Z', 100,
          'OPEN', 'job:conversion_windows');
INSERT INTO conversion_requests (id, user_id, window_id, venture_id, buz_requested,
                                 equity_rate_bps, buz_locked, equity_bp, status)
  VALUES ('00000000-0000-0000-0000-0000000000d1', '00000000-0000-0000-0000-000000000001',
          '00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000b1',
          1000, 100, 1000, 10, 'APPROVED');
INSERT INTO equity_grants (venture_id, user_id, conversion_id, bps)
  VALUES ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-000000000001',
          '00000000-0000-0000-0000-0000000000d1', 10);
INSERT INTO badge_awards (user_id, badge_id)
  SELECT '00000000-0000-0000-0000-000000000001', id FROM badges WHERE code = 'EQUITY_PIONEER';
INSERT INTO signing_keys (id, user_id, public_key_pem)
  VALUES ('k-1', '00000000-0000-0000-0000-000000000001', 'pem');
"""

WRITE_ONCE = {
    "ledger_entries": "note = 'x'",
    "audit_events": "action = 'x'",
    "audit_checkpoints": "merkle_root = 'x'",
    "equity_grants": "bps = 11",
}
NEVER_DELETED = {"badge_awards": "status = 'REVOKED'", "signing_keys": "retired_at = now()"}


async def _seed(db: Database) -> None:
    async with db.engine.begin() as conn:
        for statement in SEED.split(";\n"):
            if statement.strip():
                await conn.execute(text(statement), {"genesis": GENESIS})


async def _rejected(db: Database, sql: str) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught:
        async with db.transaction() as session:
            await session.execute(text(sql))
    return caught.value


@pytest.fixture
async def seeded(db: Database) -> Database:
    await _seed(db)
    return db


@pytest.mark.parametrize("table", sorted(WRITE_ONCE))
async def test_write_once_tables_reject_update_delete_truncate(
    seeded: Database, table: str
) -> None:
    for sql in (
        f"UPDATE {table} SET {WRITE_ONCE[table]}",
        f"DELETE FROM {table}",
        f"TRUNCATE {table} CASCADE",
    ):
        error = await _rejected(seeded, sql)
        assert f"{table} is write-once" in str(error.orig), sql
        assert sqlstate_of(error) == "P0001"
    async with seeded.transaction() as session:
        assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == 1


@pytest.mark.parametrize("table", sorted(NEVER_DELETED))
async def test_never_deleted_tables_reject_delete_but_allow_update(
    seeded: Database, table: str
) -> None:
    for sql in (f"DELETE FROM {table}", f"TRUNCATE {table} CASCADE"):
        error = await _rejected(seeded, sql)
        assert f"{table} is never deleted" in str(error.orig), sql
    async with seeded.transaction() as session:
        result = await session.execute(text(f"UPDATE {table} SET {NEVER_DELETED[table]}"))
        assert result.rowcount == 1  # type: ignore[attr-defined]


async def test_inserts_still_work_on_write_once_tables(seeded: Database) -> None:
    async with seeded.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO ledger_entries (wallet_id, seq, type, amount, balance_after,"
                " pending_after, prev_hash, hash) VALUES"
                " ('00000000-0000-0000-0000-0000000000a1', 2, 'LOCK', 10, 90, 10, 'h1', 'h2')"
            )
        )


@pytest.mark.parametrize(
    ("sql", "constraint"),
    [
        ("UPDATE wallets SET buz_balance = -1", "ck_wallets_balance_nonneg"),
        ("UPDATE wallets SET pending_lock = pending_lock - 1", "ck_wallets_pending_nonneg"),
        ("UPDATE ventures SET granted_bps = 1001", "ck_ventures_granted_within_pool"),
        ("UPDATE ventures SET pool_bps = 10001", "ck_ventures_pool_range"),
        (
            "INSERT INTO ledger_entries (wallet_id, seq, type, amount, balance_after,"
            " pending_after, prev_hash, hash) VALUES"
            " ('00000000-0000-0000-0000-0000000000a1', 2, 'ISSUE', -5, 95, 0, 'h1', 'h2')",
            "ck_ledger_entries_amount_sign",
        ),
        (
            "INSERT INTO ledger_entries (wallet_id, seq, type, amount, balance_after,"
            " pending_after, prev_hash, hash) VALUES"
            " ('00000000-0000-0000-0000-0000000000a1', 2, 'ISSUE', 5, 105, 0, 'other', 'h2'),"
            " ('00000000-0000-0000-0000-0000000000a1', 3, 'ISSUE', 5, 105, 0, 'other', 'h3')",
            "uq_ledger_entries_wallet_id_prev_hash",
        ),
        (
            "INSERT INTO endorsements (endorser_id, endorsee_id, skill_id, endorsed_on,"
            " weight_milli) SELECT '00000000-0000-0000-0000-000000000001',"
            " '00000000-0000-0000-0000-000000000001', gen_random_uuid(), current_date, 1000",
            "ck_endorsements_not_self",
        ),
        (
            "INSERT INTO conversion_requests (user_id, window_id, venture_id, buz_requested,"
            " equity_rate_bps, buz_locked, equity_bp) VALUES"
            " ('00000000-0000-0000-0000-000000000001',"
            " '00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000b1',"
            " 100, 100, 100, 1), ('00000000-0000-0000-0000-000000000001',"
            " '00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000b1',"
            " 100, 100, 100, 1)",
            "uq_conversion_requests_one_pending",
        ),
        ("UPDATE ventures SET pending_bps = 991", "ck_ventures_reserved_within_pool"),
        ("UPDATE ventures SET pending_bps = -1", "ck_ventures_pending_nonnegative"),
        ("INSERT INTO ventures (name, pool_bps) VALUES ('v', 10)", "uq_ventures_name_lower"),
        (
            "INSERT INTO conversion_windows (label, opens_at, closes_at, equity_rate_bps,"
            " created_by) VALUES ('again', '2026-01-01Z', '2026-02-01Z', 100,"
            " 'job:conversion_windows')",
            "uq_conversion_windows_job_opens_at",
        ),
        (
            "INSERT INTO conversion_windows (label, opens_at, closes_at, equity_rate_bps,"
            " created_by) VALUES ('x', '2026-01-01Z', '2026-02-01Z', 10001, 'board')",
            "ck_conversion_windows_rate_range",
        ),
        (
            "INSERT INTO job_runs (job, run_key, trigger, outcome) VALUES"
            " ('daily', '2026-01-01', 'SCHEDULE', 'SUCCEEDED'),"
            " ('daily', '2026-01-01', 'MANUAL', 'SUCCEEDED')",
            "uq_job_runs_succeeded_key",
        ),
    ],
)
async def test_constraints_reject_invalid_rows(seeded: Database, sql: str, constraint: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        async with seeded.transaction() as session:
            await session.execute(text(sql))
    assert constraint in str(caught.value.orig)
