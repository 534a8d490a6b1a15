"""RecordTaskAccepted at the service level: formula, gates, daily cap, idempotency, races."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DataError

from server.audit.domain import chain_for
from server.core.errors import IdempotencyConflict, InvalidArgument, NotFound
from server.core.params_cache import Parameters
from server.db.driver import Driver
from server.db.session import Database, sqlstate_of
from server.wallet import queries, reward_batch, reward_fold
from server.wallet.domain import RewardView, validate_task_accepted
from server.wallet.verify import verify_rows
from tests.wallet.support import (
    NOW,
    SYSTEM,
    World,
    make_user,
    make_venture,
    wallet_row,
    wallet_service,
)


async def _world(db: Database) -> World:
    w = World(db, wallet_service(db), await make_venture(db))
    w.rev100 = await make_user(db, rep=100)
    w.rev121 = await make_user(db, rep=121)
    return w


@pytest.fixture
async def world(db: Database) -> World:
    return await _world(db)


async def test_award_writes_everything_in_one_go(world: World) -> None:
    user = await make_user(world.db, xp=0)
    reward = await world.record(user)
    assert (reward.buz_computed, reward.buz_awarded, reward.buz_capped) == (150, 150, 0)
    assert reward.xp_awarded == 150 and reward.reviewer_cred_milli == 1000
    assert reward.withheld_reasons == () and not reward.withheld and not reward.replay
    assert reward.ledger_entry is not None
    assert (reward.ledger_entry.type, reward.ledger_entry.amount) == ("ISSUE", 150)
    assert (reward.ledger_entry.ref_kind, reward.ledger_entry.ref_id) == ("TASK", reward.task_id)
    assert (await wallet_row(world.db, user)).buz_balance == 150
    assert await world.scalar("SELECT xp FROM profiles WHERE user_id = :u", u=user) == 150
    assert await world.scalar("SELECT level FROM profiles WHERE user_id = :u", u=user) == 2
    day = reward.accepted_day
    assert (
        await world.scalar(
            "SELECT buz_issued FROM daily_user_stats WHERE user_id = :u AND day = :d", u=user, d=day
        )
        == 150
    )
    assert (
        await world.scalar(
            "SELECT xp_gain FROM daily_user_stats WHERE user_id = :u AND day = :d", u=user, d=day
        )
        == 150
    )
    assert (
        await world.scalar(
            "SELECT tasks_accepted * 100 + quality_sum * 10 + quality_count FROM user_metrics"
            " WHERE user_id = :u",
            u=user,
        )
        == 131
    )
    details = await world.scalar(
        "SELECT details FROM audit_events WHERE action = 'task.accepted' AND ref_id = :t",
        t=reward.task_id,
    )
    assert details["buz_awarded"] == 150 and details["reasons"] == []
    assert (
        await world.scalar(
            "SELECT ledger_entry_id FROM task_rewards WHERE task_id = :t", t=reward.task_id
        )
        == reward.ledger_entry.id
    )


async def test_round_half_up_at_point_five_end_to_end(world: World) -> None:
    tie = await make_user(world.db, rep_milli=50_410)  # cred exactly 0.710
    user = await make_user(world.db)
    reward = await world.record(user, reviewer_ids=[str(tie)])
    assert reward.reviewer_cred_milli == 710
    assert reward.buz_awarded == 107  # 150 × 1.0 × 0.710 = 106.5 → 107


async def test_reviewer_cred_uses_the_mean_and_clamps(world: World) -> None:
    low = await make_user(world.db, rep=0)
    user = await make_user(world.db)
    clamped_low = await world.record(user, reviewer_ids=[str(low)], tier="C", quality=1)
    assert (clamped_low.reviewer_cred_milli, clamped_low.buz_awarded) == (700, 21)
    high = await world.record(user, reviewer_ids=[str(world.rev121)], tier="S", quality=5)
    assert (high.reviewer_cred_milli, high.buz_awarded) == (1100, 616)
    mean = await world.record(user, reviewer_ids=[str(world.rev100), str(low)])
    assert mean.reviewer_cred_milli == 707  # mean rep 50 → sqrt(0.5)


GATES = [
    ({"kyc": "PENDING"}, "KYC_REQUIRED"),
    ({"kyc": "NONE"}, "KYC_REQUIRED"),
    ({"rep_milli": 59_999}, "REPUTATION_TOO_LOW"),
    ({"compliant": False}, "DEVICE_NOT_COMPLIANT"),
    ({"compliant": None}, "DEVICE_NOT_COMPLIANT"),  # no report at all
    ({"reported_at": NOW - timedelta(hours=73)}, "DEVICE_NOT_COMPLIANT"),  # stale report
]


@pytest.mark.parametrize(("profile", "reason"), GATES)
async def test_each_gate_alone_withholds_buz_keeps_xp(
    world: World, profile: dict[str, Any], reason: str
) -> None:
    user = await make_user(world.db, **profile)
    reward = await world.record(user)
    assert reward.buz_computed == 150 and reward.buz_awarded == 0 and reward.buz_capped == 0
    assert reward.withheld and reward.withheld_reasons == (reason,)
    assert reward.xp_awarded == 150 and reward.ledger_entry is None
    assert (await wallet_row(world.db, user)).head_seq == 0
    assert await world.scalar("SELECT xp FROM profiles WHERE user_id = :u", u=user) == 150
    # withheld BUZ does not use up the day's cap
    assert (
        await world.scalar("SELECT buz_issued FROM daily_user_stats WHERE user_id = :u", u=user)
        == 0
    )


async def test_gate_boundary_rep_exactly_60_passes(world: World) -> None:
    user = await make_user(world.db, rep_milli=60_000)
    assert (await world.record(user)).buz_awarded == 150


async def test_all_gates_failing_reports_all_in_order(world: World) -> None:
    user = await make_user(world.db, kyc="FAILED", rep=10, compliant=False)
    reward = await world.record(user)
    assert reward.withheld_reasons == (
        "KYC_REQUIRED",
        "REPUTATION_TOO_LOW",
        "DEVICE_NOT_COMPLIANT",
    )


async def test_cap_partial_award_at_the_boundary(world: World) -> None:
    user = await make_user(world.db)
    s5 = {"tier": "S", "quality": 5, "reviewer_ids": [str(world.rev121)]}  # 616 each
    for _ in range(3):
        assert (await world.record(user, **s5)).buz_awarded == 616
    partial = await world.record(user, **s5)
    assert (partial.buz_awarded, partial.buz_capped) == (152, 464)  # 1848 + 152 = 2000
    assert partial.withheld_reasons == ("DAILY_CAP_REACHED",)
    assert partial.xp_awarded == 616
    nothing = await world.record(user, **s5)
    assert (nothing.buz_awarded, nothing.buz_capped, nothing.ledger_entry) == (0, 616, None)
    assert nothing.withheld_reasons == ("DAILY_CAP_REACHED",)
    assert (await wallet_row(world.db, user)).buz_balance == 2000


async def test_next_utc_day_resets_and_acceptance_time_decides(world: World) -> None:
    user = await make_user(world.db)
    s5 = {"tier": "S", "quality": 5, "reviewer_ids": [str(world.rev121)]}
    today = datetime.combine(NOW.date(), datetime.min.time(), tzinfo=UTC)
    day0_last_instant = today - timedelta(days=1, microseconds=1)  # day0's last microsecond
    day1_start = today - timedelta(days=1)  # the UTC day after day0
    day0 = today - timedelta(days=2, hours=-12)
    for _ in range(4):
        await world.record(user, accepted_at=day0, **s5)
    assert (await world.record(user, accepted_at=day0, **s5)).buz_awarded == 0
    # a task accepted on the following UTC day (processed now) has a fresh cap
    fresh = await world.record(user, accepted_at=day1_start, **s5)
    assert fresh.buz_awarded == 616 and fresh.accepted_day == day1_start.date()
    # a task accepted on the capped day but processed later still counts against that day
    late = await world.record(user, accepted_at=day0 + timedelta(hours=11), **s5)
    assert late.buz_awarded == 0 and late.accepted_day == day0.date()
    assert day0_last_instant.date() == day0.date()
    assert (await world.record(user, accepted_at=day0_last_instant, **s5)).buz_awarded == 0


async def test_replay_and_conflict(world: World) -> None:
    user = await make_user(world.db)
    event = world.event(user)
    first = await world.service.record_task_accepted(SYSTEM, event)
    again = await world.service.record_task_accepted(SYSTEM, event)
    assert again.replay and not first.replay
    assert replace(again, replay=False, created_at=first.created_at) == first
    assert (await wallet_row(world.db, user)).head_seq == 1
    for change in (
        {"quality": 4},
        {"tier": "B"},
        {"reviewer_ids": [str(world.rev121)]},
        {"accepted_at": event.accepted_at - timedelta(seconds=1)},  # type: ignore[operator]
    ):
        with pytest.raises(IdempotencyConflict) as info:
            await world.service.record_task_accepted(SYSTEM, replace(event, **change))
        assert info.value.effective_reason == "IDEMPOTENCY_CONFLICT"
    assert (
        await world.scalar("SELECT tasks_accepted FROM user_metrics WHERE user_id = :u", u=user)
        == 1
    )
    got = await world.service.get_task_reward(SYSTEM, event.task_id)
    assert got.buz_awarded == 150 and not got.replay
    with pytest.raises(NotFound):
        await world.service.get_task_reward(SYSTEM, "no-such-task")


@pytest.mark.parametrize(
    "change",
    [
        {"task_id": ""},
        {"task_id": "x" * 129},
        {"user_id": "not-a-uuid"},
        {"tier": "D"},
        {"tier": ""},
        {"quality": 0},
        {"quality": 6},
        {"reviewer_ids": []},
        {"reviewer_ids": ["nope"]},
        {"reviewer_ids": [str(uuid.uuid4())] * 2},
        {"reviewer_ids": [str(uuid.uuid4()) for _ in range(51)]},
        {"venture_id": ""},
        {"accepted_at": None},
        {"accepted_at": timedelta(minutes=6)},  # relative to the time the test runs
        {"accepted_at": datetime(2026, 1, 1)},  # naive on purpose
    ],
)
async def test_invalid_arguments(world: World, change: dict[str, Any]) -> None:
    user = await make_user(world.db)
    if isinstance(change.get("accepted_at"), timedelta):
        # Not NOW + 6 min: NOW is taken at import, and a long suite would make that the past.
        change = {"accepted_at": datetime.now(UTC) + change["accepted_at"]}
    with pytest.raises(InvalidArgument):
        await world.record(user, **change)


async def test_assignee_as_reviewer_is_invalid(world: World) -> None:
    user = await make_user(world.db)
    with pytest.raises(InvalidArgument):
        await world.record(user, reviewer_ids=[str(user)])


async def test_unknown_references_are_not_found(world: World) -> None:
    user = await make_user(world.db)
    for change in (
        {"user_id": str(uuid.uuid4())},
        {"reviewer_ids": [str(world.rev100), str(uuid.uuid4())]},
        {"venture_id": str(uuid.uuid4())},
    ):
        with pytest.raises(NotFound):
            await world.record(user, **change)
    assert await world.scalar("SELECT count(*) FROM task_rewards") == 0


# --- concurrency --------------------------------------------------------------------------


@pytest.fixture
async def big_world(database_url: str) -> AsyncIterator[World]:
    database = Database.from_url(database_url, pool_size=20, max_overflow=0)
    try:
        yield await _world(database)
    finally:
        await database.dispose()


async def test_200_concurrent_tasks_one_user_and_50_replays(big_world: World) -> None:
    w = big_world
    user = await make_user(w.db)
    s5 = {"tier": "S", "quality": 5, "reviewer_ids": [str(w.rev121)]}
    events = [w.event(user, task_id=f"t{i}", **s5) for i in range(200)]
    replayed = w.event(user, task_id="replayed", **s5)
    calls = [w.service.record_task_accepted(SYSTEM, e) for e in events]
    calls += [w.service.record_task_accepted(SYSTEM, replayed) for _ in range(50)]
    results = await asyncio.gather(*calls)

    assert sum(r.buz_awarded for r in results[:200]) + results[200].buz_awarded == 2000
    replays = results[200:]
    assert sum(not r.replay for r in replays) == 1
    assert len({(r.buz_awarded, r.buz_capped, r.xp_awarded) for r in replays}) == 1
    assert await w.scalar("SELECT count(*) FROM task_rewards") == 201
    assert await w.scalar("SELECT sum(buz_awarded) FROM task_rewards") == 2000
    assert await w.scalar("SELECT count(*) FROM ledger_entries WHERE ref_id = 'replayed'") == (
        1 if replays[0].buz_awarded else 0
    )
    assert (
        await w.scalar("SELECT tasks_accepted FROM user_metrics WHERE user_id = :u", u=user) == 201
    )
    assert await w.scalar("SELECT xp FROM profiles WHERE user_id = :u", u=user) == 201 * 616
    assert await w.scalar("SELECT level FROM profiles WHERE user_id = :u", u=user) == 10
    assert (
        await w.scalar("SELECT sum(buz_issued) FROM daily_user_stats WHERE user_id = :u", u=user)
        == 2000
    )
    wallet = await wallet_row(w.db, user)
    assert wallet.buz_balance == 2000
    async with w.db.transaction() as s:
        result = verify_rows(*await queries.ledger_rows(s, wallet.id))
    assert result.ok, result.detail
    assert result.replayed_buz_balance == 2000


# --- the driver path: transaction, errors, lock order ---------------------------------------


async def _wait_for_lock_waiters(db: Database, count: int) -> None:
    """Until `count` backends of this database wait on a lock (10 s at most)."""
    for _ in range(1000):
        waiting = await _scalar(
            db,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} lock waiters never showed up")


async def _scalar(db: Database, sql: str, **params: Any) -> Any:
    async with db.transaction() as s:
        return (await s.execute(text(sql), params)).scalar()


def _task_in_chain(chain_id: str) -> str:
    return next(f"task-{i}" for i in range(10_000) if chain_for("task", f"task-{i}") == chain_id)


async def test_same_task_id_two_assignees_concurrently_one_wins(
    big_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Different assignees do not share the wallet lock: the loser's S2 snapshot predates
    the winner's commit, so the task_rewards primary key catches it (23505), it rolls back
    and answers from the stored row (IDEMPOTENCY_CONFLICT: the assignee differs).
    Batches of one, so the two calls are two transactions (as from two server processes)."""
    w = big_world
    w.service = wallet_service(w.db, batch_max_size=1, batch_max_inflight=2)
    users = [await make_user(w.db) for _ in range(2)]
    task_id = "contested"
    loads = 0
    load_reward = queries.load_reward

    async def counting(session: Any, task: str, *, replay: bool) -> Any:
        nonlocal loads
        loads += 1
        return await load_reward(session, task, replay=replay)

    monkeypatch.setattr(queries, "load_reward", counting)
    # Hold the task's audit chain head so both calls take their S2 snapshot before either
    # commits: deterministic, the loser can only learn of the winner from the primary key.
    async with w.db.transaction() as blocker:
        await blocker.execute(
            text(
                "INSERT INTO audit_chain_heads (chain_id, seq, hash, updated_at)"
                " VALUES (:c, 0, :g, now()) ON CONFLICT (chain_id)"
                " DO UPDATE SET chain_id = EXCLUDED.chain_id"
            ),
            {"c": chain_for("task", task_id), "g": "0" * 64},
        )
        calls = [
            asyncio.ensure_future(w.record(u, task_id=task_id, tier="C", quality=3)) for u in users
        ]
        await _wait_for_lock_waiters(w.db, 2)
    results = await asyncio.gather(*calls, return_exceptions=True)
    won = [r for r in results if isinstance(r, RewardView)]
    lost = [r for r in results if not isinstance(r, RewardView)]
    assert len(won) == 1 and len(lost) == 1
    assert isinstance(lost[0], IdempotencyConflict)
    assert lost[0].effective_reason == "IDEMPOTENCY_CONFLICT"
    assert loads == 1  # answered after the rollback, from the stored row
    winner = won[0].user_id
    loser = next(u for u in users if u != winner)
    assert await w.scalar("SELECT count(*) FROM task_rewards") == 1
    assert await w.scalar("SELECT user_id FROM task_rewards") == winner
    assert (await wallet_row(w.db, loser)).head_seq == 0
    assert (await wallet_row(w.db, winner)).head_seq == 1
    assert await w.scalar("SELECT xp FROM profiles WHERE user_id = :u", u=loser) == 0
    assert await w.scalar("SELECT count(*) FROM user_metrics WHERE user_id = :u", u=loser) == 0
    assert await w.scalar("SELECT count(*) FROM audit_events WHERE action = 'task.accepted'") == 1


async def test_same_task_id_many_assignees_racing(big_world: World) -> None:
    w = big_world
    users = [await make_user(w.db) for _ in range(6)]
    for round_ in range(5):
        task_id = f"race-{round_}"
        results = await asyncio.gather(
            *(w.record(u, task_id=task_id) for u in users), return_exceptions=True
        )
        assert sum(isinstance(r, RewardView) for r in results) == 1, results
        assert all(isinstance(r, RewardView | IdempotencyConflict) for r in results), results
    assert await w.scalar("SELECT count(*) FROM task_rewards") == 5
    assert await w.scalar("SELECT count(*) FROM ledger_entries") == 5


async def test_failure_after_the_last_statement_rolls_everything_back(world: World) -> None:
    user = await make_user(world.db)
    valid = validate_task_accepted(SYSTEM, world.event(user), datetime.now(UTC))
    params = await Parameters(world.db).current()

    class Boom(Exception):
        pass

    async def tx(session: Any) -> None:
        (outcome,) = await reward_batch.record_batch(session, [valid], params, NOW)
        assert isinstance(outcome, reward_fold.Recorded)
        assert outcome.decision.awarded == 150  # S1..S3 done, in this transaction
        raise Boom

    with pytest.raises(Boom):
        await world.db.run(tx)
    assert await world.scalar("SELECT count(*) FROM task_rewards") == 0
    assert await world.scalar("SELECT count(*) FROM ledger_entries") == 0
    assert await world.scalar("SELECT count(*) FROM audit_events") == 0
    assert await world.scalar("SELECT count(*) FROM daily_user_stats") == 0
    assert await world.scalar("SELECT count(*) FROM user_metrics") == 0
    assert await world.scalar("SELECT xp FROM profiles WHERE user_id = :u", u=user) == 0
    assert (await wallet_row(world.db, user)).head_seq == 0
    # and the same call then succeeds normally
    assert (await world.service.record_task_accepted(SYSTEM, world.event(user))).buz_awarded


async def test_driver_refuses_to_run_before_the_transaction_began(db: Database) -> None:
    """SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement:
    session.connection() alone has not begun, so a raw statement would autocommit."""
    async with db.transaction() as session:
        conn = await session.connection()
        driver = (await conn.get_raw_connection()).driver_connection
        assert not driver.is_in_transaction()
        with pytest.raises(RuntimeError, match="outside"):
            await Driver(conn, driver).fetchrow("SELECT 1", ())
        await conn.exec_driver_sql("SELECT 1")
        assert driver.is_in_transaction()
        assert (await Driver(conn, driver).fetchrow("SELECT $1::int", (7,)))[0] == 7


async def _driver_of(session: Any) -> Any:
    conn = await session.connection()
    await conn.exec_driver_sql("SELECT 1")  # BEGIN
    return await Driver.of(conn)


async def test_driver_errors_are_dbapi_errors_and_deadlocks_are_retried(db: Database) -> None:
    attempts = 0

    async def tx(session: Any) -> int:
        nonlocal attempts
        attempts += 1
        d = await _driver_of(session)
        if attempts == 1:
            await d.fetchrow(
                "DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '40P01'; END $$", ()
            )
        return int((await d.fetchrow("SELECT 41 + 1", ()))[0])

    assert await db.run(tx) == 42 and attempts == 2
    async with db.transaction() as session:
        d = await _driver_of(session)
        with pytest.raises(DataError) as info:
            await d.fetchrow("SELECT 1 / $1::int", (0,))
    assert sqlstate_of(info.value) == "22012"


async def test_driver_lost_connection_is_invalidated_and_retried(db: Database) -> None:
    attempts = 0

    async def tx(session: Any) -> int:
        nonlocal attempts
        attempts += 1
        d = await _driver_of(session)
        if attempts == 1:
            pid = (await d.fetchrow("SELECT pg_backend_pid()", ()))[0]
            async with db.transaction() as other:
                await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        return int((await d.fetchrow("SELECT 7", ()))[0])

    assert await db.run(tx) == 7 and attempts == 2
    async with db.transaction() as session:  # the pool hands out working connections
        assert (await session.execute(text("SELECT 1"))).scalar() == 1


async def test_recorded_task_id_answers_before_an_unknown_assignee(world: World) -> None:
    user = await make_user(world.db)
    event = world.event(user)
    await world.service.record_task_accepted(SYSTEM, event)
    with pytest.raises(IdempotencyConflict):
        await world.service.record_task_accepted(SYSTEM, replace(event, user_id=str(uuid.uuid4())))


async def test_profile_writer_and_award_do_not_deadlock(world: World) -> None:
    """Lock order: the award locks the profile with the wallet (S1), before the audit head.
    A profile writer (profile row, then its audit chain head) sharing the task's audit
    chain must not wait on a head the award holds while the award waits on the profile."""
    user = await make_user(world.db)
    chain = chain_for("user", str(user))
    task_id = _task_in_chain(chain)
    async with world.db.transaction() as writer:
        await writer.execute(text("SET LOCAL lock_timeout = '500ms'"))
        await writer.execute(
            text("UPDATE profiles SET bio = 'x', updated_at = now() WHERE user_id = :u"),
            {"u": user},
        )
        award = asyncio.ensure_future(world.record(user, task_id=task_id))
        await _wait_for_lock_waiters(world.db, 1)  # the award waits for the profile
        # the writer's audit append: must not wait on the award (lock_timeout would fail it)
        await writer.execute(
            text(
                "INSERT INTO audit_chain_heads (chain_id, seq, hash, updated_at)"
                " VALUES (:c, 0, :g, now()) ON CONFLICT (chain_id)"
                " DO UPDATE SET chain_id = EXCLUDED.chain_id"
            ),
            {"c": chain, "g": "0" * 64},
        )
    assert (await award).buz_awarded == 150
