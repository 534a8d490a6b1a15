"""server.batching.Batcher as a pure concurrency primitive (plain asyncio, no database).

Ordering is forced with asyncio.Event (a batch is held open until the test releases it) and
with counters polled between yields, never with timed sleeps, so the tests are
deterministic on a loaded machine.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from server.config import ConfigError, load_settings
from server.core.batching import Batcher

TIMEOUT_S = 30.0  # generous: only reached when something hangs


class Boom(Exception):
    """What a fake run_batch raises for a whole batch."""


class ItemError(Exception):
    """A per-item failure, returned (not raised) by a fake run_batch."""


def ok(item: int) -> int:
    return item * 10


class FakeRun:
    """A run_batch that records what it saw, counts how many calls run at once and, while
    `release` is clear, holds every batch open inside the call."""

    def __init__(
        self,
        decide: Callable[[Sequence[int]], Sequence[Any]] | None = None,
        *,
        hold: bool = False,
        pause: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.decide = decide or (lambda items: [ok(i) for i in items])
        self.pause = pause
        self.batches: list[list[int]] = []
        self.finished = 0
        self.running = 0
        self.peak = 0
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, items: Sequence[int]) -> Sequence[Any]:
        self.batches.append(list(items))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
            if self.pause is not None:
                await self.pause()
            return self.decide(items)
        finally:
            self.running -= 1
            self.finished += 1


async def until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the loop until `condition()` holds (no timed sleep decides any ordering)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


async def spin(turns: int = 20) -> None:
    """Give every ready task plenty of turns (used before asserting something did NOT
    happen: a runner that would wrongly start gets the chance to)."""
    for _ in range(turns):
        await asyncio.sleep(0)


class Caller:
    """Submits items from tasks and records which ones have been queued. `queued` grows in
    the same step as Batcher.submit appends the item (no await in between), so once an item
    is in `queued` it is in the batcher's queue."""

    def __init__(self, batcher: Batcher[int, int]) -> None:
        self.batcher = batcher
        self.queued: list[int] = []

    async def _submit(self, item: int) -> int:
        self.queued.append(item)
        return await self.batcher.submit(item)

    def start(self, item: int) -> asyncio.Task[int]:
        return asyncio.create_task(self._submit(item))

    async def start_queued(self, items: Sequence[int]) -> list[asyncio.Task[int]]:
        tasks = [self.start(i) for i in items]
        await until(lambda: all(i in self.queued for i in items), f"{items} queued")
        return tasks


def batcher(fake: FakeRun, *, max_batch: int = 100, max_inflight: int = 1) -> Batcher[int, int]:
    return Batcher("test", fake, max_batch=max_batch, max_inflight=max_inflight)


async def results(tasks: Sequence[Awaitable[Any]]) -> list[Any]:
    return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=TIMEOUT_S)


# --- shape of batches -----------------------------------------------------------------------


async def test_an_idle_submit_runs_at_once_as_a_batch_of_one() -> None:
    fake = FakeRun()
    b = batcher(fake, max_inflight=4)
    assert await asyncio.wait_for(b.submit(3), TIMEOUT_S) == 30
    assert await asyncio.wait_for(b.submit(4), TIMEOUT_S) == 40
    assert fake.batches == [[3], [4]]
    assert b.stats.sizes == [1, 1]
    assert (b.stats.batches, b.stats.items, b.stats.largest) == (2, 2, 1)


async def test_submits_of_one_loop_turn_share_one_batch() -> None:
    fake = FakeRun()
    b = batcher(fake, max_inflight=4)  # extra runners find the queue empty and exit
    assert await results([b.submit(i) for i in range(7)]) == [ok(i) for i in range(7)]
    assert fake.batches == [list(range(7))]
    assert b.stats.sizes == [7]


async def test_items_queued_while_a_batch_runs_form_the_next_batch() -> None:
    fake = FakeRun(hold=True)
    b = batcher(fake, max_inflight=1)
    c = Caller(b)
    first = c.start(0)
    await until(lambda: fake.batches == [[0]], "the first batch to start")
    later = await c.start_queued(range(1, 9))
    await spin()
    assert fake.batches == [[0]]  # held open: nothing else starts
    fake.release.set()
    assert await results([first, *later]) == [ok(i) for i in range(9)]
    assert fake.batches == [[0], list(range(1, 9))]
    assert b.stats.sizes == [1, 8]


async def test_max_batch_is_respected_in_arrival_order() -> None:
    fake = FakeRun(hold=True)
    b = batcher(fake, max_batch=3, max_inflight=1)
    c = Caller(b)
    first = c.start(0)
    await until(lambda: len(fake.batches) == 1, "the first batch to start")
    later = await c.start_queued(range(1, 11))
    fake.release.set()
    assert await results([first, *later]) == [ok(i) for i in range(11)]
    assert fake.batches == [[0], [1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    assert b.stats.sizes == [1, 3, 3, 3, 1] and b.stats.largest == 3


@pytest.mark.parametrize("max_inflight", [1, 2, 3])
async def test_never_more_than_max_inflight_batches_at_once(max_inflight: int) -> None:
    fake = FakeRun(hold=True)
    b = batcher(fake, max_batch=2, max_inflight=max_inflight)
    c = Caller(b)
    tasks = await c.start_queued(range(20))
    await until(lambda: fake.running == max_inflight, f"{max_inflight} batches running")
    await spin()
    more = await c.start_queued(range(20, 30))  # arrivals while all runners are busy
    await spin()
    assert fake.running == max_inflight and len(fake.batches) == max_inflight
    fake.release.set()
    assert await results([*tasks, *more]) == [ok(i) for i in range(30)]
    assert fake.peak == max_inflight
    assert sorted(i for batch in fake.batches for i in batch) == list(range(30))
    assert all(len(batch) <= 2 for batch in fake.batches)


async def test_callers_submitting_again_as_soon_as_answered_are_always_served() -> None:
    """A runner winding down (queue empty) must not be counted as busy by a submit made
    right after an answer: such an item would wait forever for a runner."""
    fake = FakeRun()
    b = batcher(fake, max_batch=4, max_inflight=1)

    async def sequential(start: int) -> list[int]:
        return [await b.submit(i) for i in range(start, start + 50)]

    got = await results([sequential(0), sequential(1000)])
    assert got == [[ok(i) for i in range(s, s + 50)] for s in (0, 1000)]
    assert b.stats.items == 100


# --- outcomes and failures ------------------------------------------------------------------


async def test_a_per_item_exception_reaches_only_that_caller() -> None:
    errors = {i: ItemError(f"item {i}") for i in (2, 5)}
    fake = FakeRun(lambda items: [errors.get(i, ok(i)) for i in items])
    b = batcher(fake)
    got = await results([b.submit(i) for i in range(7)])
    assert b.stats.sizes == [7]
    for i, outcome in enumerate(got):
        if i in errors:
            assert outcome is errors[i]
        else:
            assert outcome == ok(i)


async def test_a_raising_run_batch_fails_its_items_but_not_the_next_batch() -> None:
    failure = Boom("database down")

    def decide(items: Sequence[int]) -> list[int]:
        if 100 in items:
            raise failure
        return [ok(i) for i in items]

    fake = FakeRun(decide, hold=True)
    b = batcher(fake, max_inflight=1)
    c = Caller(b)
    doomed = await c.start_queued([100, 101, 102])
    await until(lambda: len(fake.batches) == 1, "the failing batch to start")
    later = await c.start_queued([1, 2])
    fake.release.set()
    got = await results([*doomed, *later])
    assert got[:3] == [failure, failure, failure]
    assert got[3:] == [ok(1), ok(2)]
    assert fake.batches == [[100, 101, 102], [1, 2]]
    # and the batcher keeps working afterwards
    assert await asyncio.wait_for(b.submit(7), TIMEOUT_S) == ok(7)


async def test_a_cancelled_runner_cancels_its_batch_instead_of_stranding_it() -> None:
    def decide(items: Sequence[int]) -> list[int]:
        if 100 in items:
            raise asyncio.CancelledError  # as when the event loop tears the runner down
        return [ok(i) for i in items]

    fake = FakeRun(decide)
    b = batcher(fake, max_inflight=1)
    c = Caller(b)
    doomed = await c.start_queued([100, 101])
    got = await results(doomed)
    assert all(isinstance(g, asyncio.CancelledError) for g in got), got
    # a new runner takes later items
    assert await asyncio.wait_for(b.submit(7), TIMEOUT_S) == ok(7)


@pytest.mark.parametrize("delta", [-1, +1])
async def test_a_wrong_number_of_outcomes_fails_the_batch_with_runtime_error(
    delta: int,
) -> None:
    def decide(items: Sequence[int]) -> list[int]:
        outcomes = [ok(i) for i in items]
        if 100 in items:
            return outcomes[:-1] if delta < 0 else [*outcomes, 0]
        return outcomes

    fake = FakeRun(decide, hold=True)
    b = batcher(fake, max_inflight=1)
    c = Caller(b)
    doomed = await c.start_queued([100, 101])
    await until(lambda: len(fake.batches) == 1, "the bad batch to start")
    later = await c.start_queued([1])
    fake.release.set()
    got = await results([*doomed, *later])
    for outcome in got[:2]:
        assert isinstance(outcome, RuntimeError)
        assert "outcomes for 2 items" in str(outcome)
    assert got[2] == ok(1)


# --- cancellation ---------------------------------------------------------------------------


async def test_a_caller_cancelled_before_its_batch_starts_is_dropped() -> None:
    fake = FakeRun(hold=True)
    b = batcher(fake, max_inflight=1)
    c = Caller(b)
    first = c.start(0)
    await until(lambda: len(fake.batches) == 1, "the first batch to start")
    queued = await c.start_queued([1, 2, 3])
    queued[1].cancel()
    await until(queued[1].done, "the cancellation")
    fake.release.set()
    got = await results([first, *queued])
    assert got[0] == ok(0) and got[1] == ok(1) and got[3] == ok(3)
    assert isinstance(got[2], asyncio.CancelledError)
    assert fake.batches == [[0], [1, 3]]  # run_batch never saw item 2
    assert b.stats.sizes == [1, 2]


async def test_a_batch_of_only_cancelled_callers_never_runs_and_strands_nothing() -> None:
    fake = FakeRun(hold=True)
    b = batcher(fake, max_batch=2, max_inflight=1)
    c = Caller(b)
    first = c.start(0)
    await until(lambda: len(fake.batches) == 1, "the first batch to start")
    gone = await c.start_queued([1, 2])  # exactly one max_batch slice, all cancelled
    kept = await c.start_queued([3])
    for task in gone:
        task.cancel()
    await until(lambda: all(t.done() for t in gone), "the cancellations")
    fake.release.set()
    got = await results([first, *kept])
    assert got == [ok(0), ok(3)]
    assert fake.batches == [[0], [3]]
    # the runner accounting is intact: a later idle submit still runs
    assert await asyncio.wait_for(b.submit(4), TIMEOUT_S) == ok(4)
    assert fake.batches[-1] == [4]


async def test_a_caller_cancelled_after_its_batch_started_does_not_stop_the_others() -> None:
    def decide(items: Sequence[int]) -> list[Any]:
        # the cancelled caller's outcome is an exception: it must be dropped quietly
        return [ItemError("gone") if i == 1 else ok(i) for i in items]

    fake = FakeRun(decide, hold=True)
    b = batcher(fake, max_inflight=1)
    c = Caller(b)
    tasks = await c.start_queued([0, 1, 2])
    await until(lambda: len(fake.batches) == 1, "the batch to start")
    tasks[1].cancel()
    await until(tasks[1].done, "the cancellation")
    assert fake.finished == 0  # the batch is still running
    fake.release.set()
    got = await results(tasks)
    assert got[0] == ok(0) and got[2] == ok(2)
    assert isinstance(got[1], asyncio.CancelledError)
    assert fake.batches == [[0, 1, 2]] and fake.finished == 1


# --- drain ----------------------------------------------------------------------------------


async def test_drain_waits_for_running_and_queued_batches() -> None:
    fake = FakeRun(hold=True)
    b = batcher(fake, max_batch=2, max_inflight=1)
    await asyncio.wait_for(b.drain(), TIMEOUT_S)  # idle: returns at once
    c = Caller(b)
    first = c.start(0)
    await until(lambda: len(fake.batches) == 1, "the first batch to start")
    queued = await c.start_queued([1, 2, 3])
    drain = asyncio.create_task(b.drain())
    await spin()
    assert not drain.done() and fake.finished == 0
    fake.release.set()
    await asyncio.wait_for(drain, TIMEOUT_S)
    assert fake.finished == 3  # [0], [1, 2], [3]: every queued batch ran before drain returned
    assert fake.batches == [[0], [1, 2], [3]]
    assert await results([first, *queued]) == [ok(i) for i in range(4)]


# --- stress ---------------------------------------------------------------------------------


@pytest.mark.parametrize("max_inflight", [1, 3])
async def test_stress_every_caller_gets_exactly_its_own_outcome(max_inflight: int) -> None:
    rng = random.Random(20240601)
    n = 2000
    errors = {i: ItemError(f"item {i}") for i in range(0, n, 97)}

    async def pause() -> None:
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(rng.random() / 2000)

    # outcomes name their item: a mix-up between callers would show
    fake = FakeRun(lambda items: [errors.get(i, ("done", i)) for i in items], pause=pause)
    b: Batcher[int, Any] = Batcher("stress", fake, max_batch=16, max_inflight=max_inflight)
    delays = [rng.random() / 500 if rng.random() < 0.5 else 0.0 for _ in range(n)]
    cancel = set(rng.sample(range(n), 60))

    async def call(i: int) -> Any:
        if delays[i]:
            await asyncio.sleep(delays[i])
        return await b.submit(i)

    tasks = [asyncio.create_task(call(i)) for i in range(n)]
    # cancel some callers at various moments (before or after their batch starts)
    for k, i in enumerate(sorted(cancel)):
        if k % 3:
            await asyncio.sleep(0)
        tasks[i].cancel()
    got = await results(tasks)
    await asyncio.wait_for(b.drain(), TIMEOUT_S)

    for i, outcome in enumerate(got):
        if isinstance(outcome, asyncio.CancelledError):
            assert i in cancel
        elif i in errors:
            assert outcome is errors[i]
        else:
            assert outcome == ("done", i)
    seen = [i for batch in fake.batches for i in batch]
    assert len(seen) == len(set(seen))  # no item ran twice
    served = {i for i, o in enumerate(got) if not isinstance(o, asyncio.CancelledError)}
    assert served <= set(seen)  # everyone answered was in a batch
    assert set(range(n)) - set(seen) <= cancel  # only cancelled items may have been dropped
    assert 1 <= fake.peak <= max_inflight
    assert b.stats.items == len(seen) and sum(b.stats.sizes) == len(seen)
    assert max(b.stats.sizes) <= 16 and b.stats.largest > 1  # it really batched


# --- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(("max_batch", "max_inflight"), [(0, 1), (1, 0), (-1, 4), (8, -2)])
def test_constructor_rejects_limits_below_one(max_batch: int, max_inflight: int) -> None:
    async def run_batch(items: Sequence[int]) -> list[int]:  # pragma: no cover - never runs
        return list(items)

    with pytest.raises(ValueError, match="at least 1"):
        Batcher("bad", run_batch, max_batch=max_batch, max_inflight=max_inflight)


def test_constructor_accepts_limits_of_one() -> None:
    async def run_batch(items: Sequence[int]) -> list[int]:  # pragma: no cover - never runs
        return list(items)

    b = Batcher("ok", run_batch, max_batch=1, max_inflight=1)
    assert b.stats.batches == 0


@pytest.mark.parametrize("name", ["SMARTSTART_BATCH_MAX_SIZE", "SMARTSTART_BATCH_MAX_INFLIGHT"])
@pytest.mark.parametrize("raw", ["0", "-2", "lots", "1.5"])
def test_batch_settings_refuse_values_below_one(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=f"{name} must be a whole number >= 1, not '{raw}'"):
        load_settings()


def test_batch_settings_defaults_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMARTSTART_BATCH_MAX_SIZE", raising=False)
    monkeypatch.delenv("SMARTSTART_BATCH_MAX_INFLIGHT", raising=False)
    assert (load_settings().batch_max_size, load_settings().batch_max_inflight) == (64, 1)
    monkeypatch.setenv("SMARTSTART_BATCH_MAX_SIZE", "1")
    monkeypatch.setenv("SMARTSTART_BATCH_MAX_INFLIGHT", " 3 ")
    assert (load_settings().batch_max_size, load_settings().batch_max_inflight) == (1, 3)
