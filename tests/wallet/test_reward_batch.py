"""RecordTaskAccepted group commit against the real database, through WalletService.

Calls gathered in one event-loop turn land in one batch (the first submit starts a runner
task, which runs after every gathered task has queued its call); each test checks that
through `service.rewards.stats`, so it proves the behaviour of a batch, not of lone calls.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from server.audit.domain import chain_for
from server.core.chain import GENESIS
from server.core.errors import IdempotencyConflict, NotFound
from server.core.params import DEFAULTS
from server.db.session import Database
from server.profile.gamification import level_for_xp
from server.wallet import queries
from server.wallet import service as wallet_service_module
from server.wallet.domain import RewardView, TaskAccepted
from server.wallet.reward_batch import TaskIdTaken
from server.wallet.service import WalletService
from server.wallet.verify import verify_rows
from tests.audit.support import assert_chains_verify, heads_of
from tests.audit.support import events as audit_rows
from tests.wallet.support import (
    SYSTEM,
    World,
    make_user,
    make_venture,
    wallet_row,
    wallet_service,
)

THRESHOLDS = DEFAULTS.levels.thresholds
TIMEOUT_S = 60.0


@pytest.fixture
async def world(db: Database) -> World:
    w = World(db, wallet_service(db), await make_venture(db))
    w.rev100 = await make_user(db, rep=100)  # cred 1.0
    w.rev121 = await make_user(db, rep=121)  # cred 1.1
    return w


def recent() -> datetime:
    """An acceptance time a minute ago (taken when the test runs, not at import)."""
    return datetime.now(UTC) - timedelta(minutes=1)


async def one_batch(service: WalletService, events: Sequence[TaskAccepted]) -> list[Any]:
    """Submit `events` in one loop turn; assert they ran as exactly one batch."""
    before = list(service.rewards.stats.sizes)
    got = await asyncio.wait_for(
        asyncio.gather(
            *(service.record_task_accepted(SYSTEM, e) for e in events), return_exceptions=True
        ),
        TIMEOUT_S,
    )
    assert service.rewards.stats.sizes == [*before, len(events)], "not one batch"
    return list(got)


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    async with db.transaction() as s:
        return (await s.execute(text(sql), params)).scalar()


async def rows(db: Database, sql: str, **params: Any) -> list[Any]:
    async with db.transaction() as s:
        return list((await s.execute(text(sql), params)).all())


async def verify_wallets(db: Database, users: Sequence[uuid.UUID]) -> None:
    for user in users:
        wallet = await wallet_row(db, user)
        async with db.transaction() as s:
            result = verify_rows(*await queries.ledger_rows(s, wallet.id))
        assert result.ok, result
        assert result.replayed_buz_balance == wallet.buz_balance
        assert result.entries_checked == wallet.head_seq


async def verify_audit(db: Database) -> None:
    """Every audit chain recomputes from its stored rows; a head without events (created by
    a batch whose calls on that chain all failed) is still at genesis."""
    heads = await heads_of(db)
    used = {c: h for c, h in heads.items() if h != (0, GENESIS)}
    assert_chains_verify(await audit_rows(db), used)


async def wait_for_lock_waiters(db: Database, count: int) -> None:
    """Until `count` backends of this database wait on a lock (polled; 30 s at most)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        waiting = await scalar(
            db,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        if waiting >= count:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{count} lock waiters never showed up (saw {waiting})")
        await asyncio.sleep(0.01)


FALLBACK = "running its calls one by one"


def watch_fallback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="server.wallet.service")


def assert_no_fallback(caplog: pytest.LogCaptureFixture) -> None:
    """The batch succeeded as a whole (a whole-batch failure reruns each call alone, which
    could hide a wrong batch result behind right answers)."""
    assert not [r for r in caplog.records if FALLBACK in r.getMessage()]


def task_in_chain(chain_id: str, prefix: str) -> str:
    return next(
        f"{prefix}-{i}" for i in range(10_000) if chain_for("task", f"{prefix}-{i}") == chain_id
    )


def amounts(reward: RewardView) -> tuple[Any, ...]:
    entry = reward.ledger_entry
    return (
        reward.buz_computed,
        reward.buz_awarded,
        reward.buz_capped,
        reward.withheld_reasons,
        reward.xp_awarded,
        reward.reviewer_cred_milli,
        None if entry is None else (entry.seq, entry.amount, entry.balance_after),
    )


# --- a. mixed outcomes in one batch ---------------------------------------------------------


async def test_one_batch_with_mixed_outcomes_answers_each_call_alone(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    watch_fallback(caplog)
    w = world
    u1, u2, u3 = [await make_user(w.db) for _ in range(3)]
    pre_same = w.event(u1, task_id="pre-same", accepted_at=recent())
    pre_diff = w.event(u2, task_id="pre-diff", accepted_at=recent())
    stored_same = await w.service.record_task_accepted(SYSTEM, pre_same)
    await w.service.record_task_accepted(SYSTEM, pre_diff)
    assert w.service.rewards.stats.sizes == [1, 1]

    def ev(user: uuid.UUID, task_id: str, **overrides: Any) -> TaskAccepted:
        return w.event(user, task_id=task_id, accepted_at=recent(), **overrides)

    dup = ev(u3, "dup-same", tier="B", quality=4)  # 80 × 1.2 = 96
    dif = ev(u1, "dup-diff")
    calls = [
        ev(u1, "ok-1"),  # 0
        ev(u2, "ok-2", tier="S", quality=5, reviewer_ids=[str(w.rev121)]),  # 1: 616
        ev(u1, "no-venture", venture_id=str(uuid.uuid4())),  # 2
        ev(u2, "no-reviewer", reviewer_ids=[str(w.rev100), str(uuid.uuid4())]),  # 3
        ev(uuid.uuid4(), "no-assignee"),  # 4
        dup,  # 5
        ev(u3, "ok-3"),  # 6
        dup,  # 7: replay of 5
        dif,  # 8
        replace(dif, quality=4),  # 9: conflict with 8
        pre_same,  # 10: replay of a reward stored before the batch
        replace(pre_diff, quality=5),  # 11: conflict with a reward stored before the batch
        ev(u3, "retry", venture_id=str(uuid.uuid4())),  # 12: not found, writes nothing ...
        ev(u3, "retry", tier="C"),  # 13: ... so the same id with another payload records
    ]
    got = await one_batch(w.service, calls)

    recorded = {0: 150, 1: 616, 5: 96, 6: 150, 8: 150, 13: 50}
    for i, amount in recorded.items():
        answer = got[i]
        assert isinstance(answer, RewardView), (i, answer)
        assert answer.task_id == calls[i].task_id and str(answer.user_id) == calls[i].user_id
        assert (answer.buz_awarded, answer.xp_awarded, answer.replay) == (amount, amount, False)
        assert answer.ledger_entry is not None and answer.ledger_entry.amount == amount
        assert answer.ledger_entry.ref_id == calls[i].task_id
        stored = await w.service.get_task_reward(SYSTEM, calls[i].task_id)
        assert stored == replace(answer, created_at=stored.created_at)
    for i, key in ((2, "venture_id"), (3, "reviewer_id"), (4, "user_id"), (12, "venture_id")):
        assert isinstance(got[i], NotFound), (i, got[i])
        assert key in got[i].metadata
    assert got[4].metadata["user_id"] == calls[4].user_id
    for i in (9, 11):
        assert isinstance(got[i], IdempotencyConflict), (i, got[i])
        assert got[i].effective_reason == "IDEMPOTENCY_CONFLICT"
        assert got[i].metadata == {"task_id": calls[i].task_id}
    in_batch_replay = got[7]
    assert isinstance(in_batch_replay, RewardView) and in_batch_replay.replay
    assert in_batch_replay == replace(got[5], replay=True)
    loaded_replay = got[10]
    assert isinstance(loaded_replay, RewardView) and loaded_replay.replay
    assert replace(loaded_replay, replay=False, created_at=stored_same.created_at) == stored_same

    # written: the two rewards stored before plus the six recorded here, nothing else
    written = {"pre-same", "pre-diff", "ok-1", "ok-2", "dup-same", "ok-3", "dup-diff", "retry"}
    failed = ["no-venture", "no-reviewer", "no-assignee"]
    assert {r.task_id for r in await rows(w.db, "SELECT task_id FROM task_rewards")} == written
    assert Counter(
        r.ref_id for r in await rows(w.db, "SELECT ref_id FROM ledger_entries")
    ) == Counter(written)
    assert Counter(
        r.ref_id
        for r in await rows(w.db, "SELECT ref_id FROM audit_events WHERE action = 'task.accepted'")
    ) == Counter(written)
    assert (
        await scalar(w.db, "SELECT count(*) FROM audit_events WHERE ref_id = ANY(:f)", f=failed)
        == 0
    )
    assert await scalar(w.db, "SELECT quality FROM task_rewards WHERE task_id = 'dup-diff'") == 3
    assert await scalar(w.db, "SELECT tier FROM task_rewards WHERE task_id = 'retry'") == "C"
    metrics = {
        r.user_id: (r.tasks_accepted, r.quality_sum, r.quality_count)
        for r in await rows(
            w.db, "SELECT user_id, tasks_accepted, quality_sum, quality_count FROM user_metrics"
        )
    }
    # u1: pre-same, ok-1, dup-diff; u2: pre-diff, ok-2; u3: dup-same, ok-3, retry
    assert metrics == {u1: (3, 9, 3), u2: (2, 8, 2), u3: (3, 10, 3)}
    balances = {u: (await wallet_row(w.db, u)).buz_balance for u in (u1, u2, u3)}
    assert balances == {u1: 450, u2: 766, u3: 296}
    xp = {
        r.user_id: r.xp for r in await rows(w.db, "SELECT user_id, xp FROM profiles WHERE xp > 0")
    }
    assert xp == balances  # all gates pass, no cap: XP equals BUZ here
    await verify_wallets(w.db, [u1, u2, u3])
    await verify_audit(w.db)
    assert_no_fallback(caplog)


# --- b. the daily cap inside one batch ------------------------------------------------------


async def test_daily_cap_is_applied_call_by_call_inside_one_batch(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    watch_fallback(caplog)
    w = world
    user, other = await make_user(w.db), await make_user(w.db)
    at = recent()
    day = at.date()
    yesterday_at = at - timedelta(days=1)
    async with w.db.transaction() as s:  # 1,750 BUZ issued today by earlier tasks
        await s.execute(
            text(
                "INSERT INTO daily_user_stats (user_id, day, xp_gain, buz_issued)"
                " VALUES (:u, :d, 0, 1750)"
            ),
            {"u": user, "d": day},
        )
    first = await w.record(user, task_id="before", accepted_at=at)
    assert (first.buz_awarded, first.ledger_entry.seq if first.ledger_entry else None) == (150, 1)
    # now 1,900 issued today; the batch: 150 each, one call for another user, one for
    # yesterday (its own cap) in between
    calls = [
        w.event(user, task_id="cap-1", accepted_at=at),
        w.event(other, task_id="other-1", accepted_at=at),
        w.event(user, task_id="cap-2", accepted_at=at),
        w.event(user, task_id="yesterday", accepted_at=yesterday_at),
        w.event(user, task_id="cap-3", accepted_at=at),
    ]
    got = await one_batch(w.service, calls)
    assert all(isinstance(r, RewardView) for r in got), got
    cap1, other1, cap2, yesterday, cap3 = got
    cap = ("DAILY_CAP_REACHED",)
    assert (cap1.buz_awarded, cap1.buz_capped, cap1.withheld_reasons) == (100, 50, cap)
    assert cap1.ledger_entry is not None
    assert (cap1.ledger_entry.seq, cap1.ledger_entry.amount) == (2, 100)
    assert cap1.ledger_entry.balance_after == 250
    assert (other1.buz_awarded, other1.buz_capped, other1.withheld_reasons) == (150, 0, ())
    for capped in (cap2, cap3):
        assert (capped.buz_awarded, capped.buz_capped, capped.withheld_reasons) == (0, 150, cap)
        assert capped.ledger_entry is None
    assert (yesterday.buz_awarded, yesterday.buz_capped) == (150, 0)
    assert yesterday.accepted_day == day - timedelta(days=1)
    assert yesterday.ledger_entry is not None
    assert (yesterday.ledger_entry.seq, yesterday.ledger_entry.balance_after) == (3, 400)
    assert all(r.xp_awarded == 150 for r in got)  # XP is never capped

    issued = {
        r.day: (r.buz_issued, r.xp_gain)
        for r in await rows(
            w.db, "SELECT day, buz_issued, xp_gain FROM daily_user_stats WHERE user_id = :u", u=user
        )
    }
    # BUZ counts for the cap on the day of acceptance; XP for reputation on the day of the
    # award (today), also the task accepted yesterday.
    assert issued == {day: (2000, 150 * 5), day - timedelta(days=1): (150, 0)}
    wallet = await wallet_row(w.db, user)
    assert (wallet.buz_balance, wallet.head_seq) == (150 + 100 + 150, 3)
    assert (await wallet_row(w.db, other)).buz_balance == 150
    xp = await scalar(w.db, "SELECT xp FROM profiles WHERE user_id = :u", u=user)
    level = await scalar(w.db, "SELECT level FROM profiles WHERE user_id = :u", u=user)
    assert xp == 5 * 150 and level == level_for_xp(xp, THRESHOLDS)
    # each event records the level after its own XP (the fold accumulates XP call by call)
    by_task = {
        r.ref_id: r.details
        for r in await rows(
            w.db, "SELECT ref_id, details FROM audit_events WHERE action = 'task.accepted'"
        )
    }
    for n, task in enumerate(["before", "cap-1", "cap-2", "yesterday", "cap-3"], start=1):
        assert by_task[task]["level"] == level_for_xp(150 * n, THRESHOLDS), task
    await verify_wallets(w.db, [user, other])
    await verify_audit(w.db)
    assert_no_fallback(caplog)


# --- c. many users interleaved in one batch = the same calls one at a time ------------------


async def test_many_interleaved_calls_in_one_batch_match_the_same_calls_one_at_a_time(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    watch_fallback(caplog)
    w = world
    kinds: list[dict[str, Any]] = [{}, {}, {}, {}, {"kyc": "PENDING"}]  # one user gated
    batched = [await make_user(w.db, **k) for k in kinds]
    mirror = [await make_user(w.db, **k) for k in kinds]
    one_by_one = wallet_service(w.db, batch_max_size=1)
    rng = random.Random(11)
    today, yesterday = recent(), recent() - timedelta(days=1)
    reviewer_sets = [[str(w.rev100)], [str(w.rev121)], [str(w.rev100), str(w.rev121)]]
    plan = [
        (
            rng.randrange(len(kinds)),
            {
                "tier": rng.choice("SABC"),
                "quality": rng.randint(1, 5),
                "reviewer_ids": rng.choice(reviewer_sets),
                "accepted_at": rng.choice([today, today, yesterday]),
            },
        )
        for _ in range(60)
    ]
    events = [w.event(batched[u], task_id=f"b-{k}", **o) for k, (u, o) in enumerate(plan)]
    got = await one_batch(w.service, events)
    assert all(isinstance(r, RewardView) and not r.replay for r in got), got

    # the same calls, one transaction each, in the same order, for the mirror users
    alone = [
        await one_by_one.record_task_accepted(
            SYSTEM, replace(e, task_id=f"m-{k}", user_id=str(mirror[plan[k][0]]))
        )
        for k, e in enumerate(events)
    ]
    assert one_by_one.rewards.stats.sizes == [1] * len(events)
    assert [amounts(r) for r in got] == [amounts(r) for r in alone]
    assert any(r.buz_capped for r in got)  # the plan does reach the cap
    assert any("KYC_REQUIRED" in r.withheld_reasons for r in got)

    per_user: dict[uuid.UUID, list[RewardView]] = defaultdict(list)
    for r in got:
        per_user[r.user_id].append(r)
    assert set(per_user) == set(batched)  # the plan names every user
    metrics = {
        r.user_id: r
        for r in await rows(
            w.db, "SELECT * FROM user_metrics WHERE user_id = ANY(:u)", u=list(batched)
        )
    }
    profiles = {
        r.user_id: r
        for r in await rows(
            w.db,
            "SELECT user_id, xp, level, rep_through FROM profiles WHERE user_id = ANY(:u)",
            u=list(batched),
        )
    }
    daily = {
        (r.user_id, r.day): (r.buz_issued, r.xp_gain)
        for r in await rows(
            w.db, "SELECT * FROM daily_user_stats WHERE user_id = ANY(:u)", u=list(batched)
        )
    }
    expected_daily: dict[tuple[uuid.UUID, date], list[int]] = defaultdict(lambda: [0, 0])
    for user, rewards_ in per_user.items():
        m = metrics[user]
        assert m.tasks_accepted == m.quality_count == len(rewards_)
        assert m.quality_sum == sum(r.quality for r in rewards_)
        xp = sum(r.xp_awarded for r in rewards_)
        assert (profiles[user].xp, profiles[user].level) == (xp, level_for_xp(xp, THRESHOLDS))
        wallet = await wallet_row(w.db, user)
        assert wallet.buz_balance == sum(r.buz_awarded for r in rewards_)
        assert wallet.head_seq == sum(1 for r in rewards_ if r.ledger_entry is not None)
        # XP counts on the day of the award: the users' first, whose eve their first gain
        # made their first folded day (server/profile/gains.py).
        awarded_on = profiles[user].rep_through + timedelta(days=1)
        for r in rewards_:
            expected_daily[user, r.accepted_day][0] += r.buz_awarded
            expected_daily[user, awarded_on][1] += r.xp_awarded
    assert daily == {k: tuple(v) for k, v in expected_daily.items()}
    assert all(buz <= 2000 for buz, _ in daily.values())
    assert await scalar(w.db, "SELECT count(*) FROM task_rewards") == 120
    assert (
        await scalar(w.db, "SELECT count(*) FROM audit_events WHERE action = 'task.accepted'")
        == 120
    )
    await verify_wallets(w.db, [*batched, *mirror])
    await verify_audit(w.db)
    assert_no_fallback(caplog)


# --- d. the whole-batch fallback --------------------------------------------------------------


async def test_batch_losing_a_task_id_to_another_process_reruns_each_call_alone(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A call naming another assignee does not share a wallet lock with the batch: the batch
    only learns of it at the task_rewards primary key, rolls back and reruns each call alone.
    The other call stands for another server process (its own batcher, batches of one)."""
    w = world
    other = wallet_service(w.db, batch_max_size=1)
    a, b, c, d = [await make_user(w.db) for _ in range(4)]
    contested = "contested"
    chain = chain_for("task", contested)
    # The chain's head exists (committed) before the blocker locks it, so waiters queue on
    # the row's tuple lock in arrival order: the other process's call, first, goes first.
    earlier = task_in_chain(chain, "earlier")
    await w.record(d, task_id=earlier, accepted_at=recent())

    transactions: list[tuple[tuple[str, ...], str]] = []  # (task ids, outcome)
    real_record_batch = wallet_service_module.record_batch

    async def observed(session: Any, calls: Any, params: Any, now: Any) -> Any:
        ids = tuple(call.task_id for call in calls)
        try:
            outcomes = await real_record_batch(session, calls, params, now)
        except Exception as error:
            transactions.append((ids, type(error).__name__))
            raise
        transactions.append((ids, "ok"))
        return outcomes

    monkeypatch.setattr(wallet_service_module, "record_batch", observed)
    caplog.set_level(logging.INFO, logger="server.wallet.service")

    theirs_event = w.event(b, task_id=contested, tier="C", accepted_at=recent())
    ours_events = [
        w.event(a, task_id=contested, accepted_at=recent()),
        w.event(c, task_id="good-1", accepted_at=recent()),
        w.event(a, task_id="good-2", accepted_at=recent()),
        w.event(d, task_id="good-3", accepted_at=recent()),
    ]
    async with w.db.transaction() as blocker:
        await blocker.execute(
            text("SELECT 1 FROM audit_chain_heads WHERE chain_id = :c FOR UPDATE"), {"c": chain}
        )
        theirs = asyncio.ensure_future(other.record_task_accepted(SYSTEM, theirs_event))
        await wait_for_lock_waiters(w.db, 1)
        ours = [
            asyncio.ensure_future(w.service.record_task_accepted(SYSTEM, e)) for e in ours_events
        ]
        await wait_for_lock_waiters(w.db, 2)
    their = await asyncio.wait_for(theirs, TIMEOUT_S)
    got = await asyncio.wait_for(asyncio.gather(*ours, return_exceptions=True), TIMEOUT_S)

    # the other process won the task id
    assert isinstance(their, RewardView) and not their.replay
    assert (their.user_id, their.buz_awarded) == (b, 50)
    # in the batch: the contested call lost, the others were recorded
    assert isinstance(got[0], IdempotencyConflict), got[0]
    assert got[0].effective_reason == "IDEMPOTENCY_CONFLICT"
    for reward, event in zip(got[1:], ours_events[1:], strict=True):
        assert isinstance(reward, RewardView), reward
        assert (reward.task_id, reward.buz_awarded, reward.replay) == (event.task_id, 150, False)
    # it ran as one batch, which failed on the primary key and was rerun call by call
    assert w.service.rewards.stats.sizes == [1, 4]
    assert other.rewards.stats.sizes == [1]
    ids = tuple(e.task_id for e in ours_events)
    assert (ids, TaskIdTaken.__name__) in transactions, transactions
    first_failure = transactions.index((ids, TaskIdTaken.__name__))
    reruns = transactions[first_failure + 1 :]
    assert sorted(reruns) == sorted(((i,), "ok") for i in ids), transactions
    assert any(
        "batch of 4 failed (TaskIdTaken)" in record.getMessage() for record in caplog.records
    )

    assert (
        await scalar(w.db, "SELECT count(*) FROM task_rewards WHERE task_id = :t", t=contested) == 1
    )
    assert (
        await scalar(w.db, "SELECT user_id FROM task_rewards WHERE task_id = :t", t=contested) == b
    )
    assert await scalar(w.db, "SELECT count(*) FROM task_rewards") == 1 + 1 + 3
    assert await scalar(w.db, "SELECT count(*) FROM ledger_entries") == 1 + 1 + 3
    assert (
        await scalar(w.db, "SELECT count(*) FROM audit_events WHERE action = 'task.accepted'")
        == 1 + 1 + 3
    )
    assert (
        await scalar(
            w.db,
            "SELECT count(*) FROM audit_events WHERE ref_id = :t AND details->>'user_id' = :u",
            t=contested,
            u=str(a),
        )
        == 0
    )
    balances = {u: (await wallet_row(w.db, u)).buz_balance for u in (a, b, c, d)}
    assert balances == {a: 150, b: 50, c: 150, d: 300}
    tasks = {
        r.user_id: r.tasks_accepted
        for r in await rows(w.db, "SELECT user_id, tasks_accepted FROM user_metrics")
    }
    assert tasks == {a: 1, b: 1, c: 1, d: 2}
    await verify_wallets(w.db, [a, b, c, d])
    await verify_audit(w.db)


def start_batches(
    services: Sequence[WalletService], events: Sequence[Sequence[TaskAccepted]]
) -> list[asyncio.Future[RewardView]]:
    """Submit each service's events in this loop turn: one batch per service."""
    return [
        asyncio.ensure_future(service.record_task_accepted(SYSTEM, e))
        for service, batch in zip(services, events, strict=True)
        for e in batch
    ]


# --- e. concurrent batches over overlapping users ------------------------------------------


async def test_concurrent_batches_over_overlapping_users_never_deadlock(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Two processes (two services, two batchers), each a batch of 30 calls per round over
    the same users in different orders (or overlapping or disjoint subsets): batches lock
    wallets and audit heads in one global order, so none waits in a cycle. A deadlock would
    be retried by Database.run and hidden from the results: the retry log shows it.

    Left alone, one batch's S1 often finishes before the other's starts. So in some rounds
    a blocker holds a row in the middle of the lock order (a wallet both batches need, or
    an audit head both need, with disjoint users) until both batches wait: each then holds
    some rows and waits for more, which is where an inconsistent order would deadlock."""
    w = world
    users = [await make_user(w.db) for _ in range(8)]
    services = [wallet_service(w.db) for _ in range(2)]
    caplog.set_level(logging.INFO, logger="server.db.session")
    watch_fallback(caplog)
    rng = random.Random(5)
    now = recent()
    days = [now, now - timedelta(days=1), now - timedelta(days=2)]
    wallet_ids = {u: (await wallet_row(w.db, u)).id for u in users}
    middle_wallet_user = sorted(users, key=wallet_ids.__getitem__)[len(users) // 2]
    plan = (
        [  # (users of each service, what the blocker holds)
            ([users[:5], users[3:]], None),
            ([users, users], "wallet"),
            ([users[:4], users[4:]], "head"),
            ([users, users], None),
            ([users, users], "wallet"),
            ([users[:4], users[4:]], "head"),
        ]
        * 2
    )
    answers: list[RewardView] = []
    for round_, (pools, hold) in enumerate(plan):
        events: list[list[TaskAccepted]] = []
        for s, pool in enumerate(pools):
            order = [pool[k % len(pool)] for k in range(30)]
            rng.shuffle(order)
            events.append(
                [
                    w.event(user, task_id=f"r{round_}-s{s}-{k}", accepted_at=rng.choice(days))
                    for k, user in enumerate(order)
                ]
            )

        if hold is None:
            calls = start_batches(services, events)
        else:
            if hold == "wallet":
                sql, key = "SELECT 1 FROM wallets WHERE user_id = :k FOR UPDATE", middle_wallet_user
            else:
                chains = [{chain_for("task", e.task_id) for e in batch} for batch in events]
                existing = set((await heads_of(w.db)).keys())
                common = sorted(chains[0] & chains[1] & existing)
                sql = "SELECT 1 FROM audit_chain_heads WHERE chain_id = :k FOR UPDATE"
                key = common[len(common) // 2]
            async with w.db.transaction() as blocker:
                assert (await blocker.execute(text(sql), {"k": key})).scalar() == 1
                calls = start_batches(services, events)
                await wait_for_lock_waiters(w.db, 2)
        got = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), TIMEOUT_S)
        assert all(isinstance(r, RewardView) and not r.replay for r in got), got
        answers += got
    for service in services:
        assert service.rewards.stats.sizes == [30] * len(plan)
    retries = [r.getMessage() for r in caplog.records if "retrying transaction" in r.getMessage()]
    assert retries == []

    n = Counter((r.user_id, r.accepted_day) for r in answers)
    awarded: Counter[tuple[uuid.UUID, date]] = Counter()
    for r in answers:
        awarded[r.user_id, r.accepted_day] += r.buz_awarded
    # every call computes 150: per user and day exactly min(cap, 150 × calls) is issued
    assert awarded == Counter({k: min(2000, 150 * count) for k, count in n.items()})
    assert any(150 * count > 2000 for count in n.values())  # the cap was reached somewhere
    daily = {
        (r.user_id, r.day): r.buz_issued
        for r in await rows(w.db, "SELECT user_id, day, buz_issued FROM daily_user_stats")
    }
    assert daily == dict(awarded)
    assert await scalar(w.db, "SELECT count(*) FROM task_rewards") == len(answers)
    for user in users:
        mine = [r for r in answers if r.user_id == user]
        wallet = await wallet_row(w.db, user)
        assert wallet.buz_balance == sum(r.buz_awarded for r in mine)
        xp = await scalar(w.db, "SELECT xp FROM profiles WHERE user_id = :u", u=user)
        assert xp == 150 * len(mine)
        assert await scalar(
            w.db, "SELECT tasks_accepted FROM user_metrics WHERE user_id = :u", u=user
        ) == len(mine)
    await verify_wallets(w.db, users)
    await verify_audit(w.db)
    assert_no_fallback(caplog)
