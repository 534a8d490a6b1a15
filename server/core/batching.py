"""Group commit: concurrent calls of one use case share a transaction.

A hot write path pays per transaction (BEGIN, a few statements, COMMIT: round trips,
statement overhead in PostgreSQL and in the driver, a WAL flush) far more than per row.
`Batcher` lets calls that arrive while earlier ones are in the database wait a moment and
then go together: each call submits its item and awaits its own outcome; a runner takes
what is queued (up to `max_batch`) and hands it to `run_batch` as one list.

There is no timer. A call that finds a free runner starts one at once (on the next turn of
the event loop, so calls that arrived in the same turn join it): an idle server answers
with batches of one and no added latency. Under load at most `max_inflight` batches are in
the database; what arrives meanwhile queues, so batches grow with the load and shrink as it
falls.

`run_batch` returns one outcome per item, in order: a result or the exception for that
item alone, so one bad item does not fail the others. If `run_batch` itself raises, every
item of that batch gets the exception. A caller that goes away (cancelled) does not cancel
the batch: its item is still processed (use cases batched here are idempotent on a key, so
a retry finds the stored result).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import Histogram

I = TypeVar("I")  # noqa: E741 (item)
O = TypeVar("O")  # noqa: E741 (outcome)

BATCH_SIZE = Histogram(
    "smartstart_batch_size",
    "Items per group-committed transaction, by use case.",
    ["use_case"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

RunBatch = Callable[[Sequence[I]], Awaitable[Sequence[O | BaseException]]]


@dataclass(slots=True)
class BatchStats:
    """Counters for tests and logs (the histogram is what operators watch)."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)

    def record(self, size: int) -> None:
        self.batches += 1
        self.items += size
        self.largest = max(self.largest, size)
        if len(self.sizes) < 10_000:
            self.sizes.append(size)


class Batcher(Generic[I, O]):
    def __init__(
        self,
        name: str,
        run_batch: RunBatch[I, O],
        *,
        max_batch: int,
        max_inflight: int,
    ) -> None:
        if max_batch < 1 or max_inflight < 1:
            raise ValueError("max_batch and max_inflight must be at least 1")
        self._name = name
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._pending: list[tuple[I, asyncio.Future[O]]] = []
        self._runners: set[asyncio.Task[None]] = set()  # strong references, for drain
        self._active = 0  # runners still taking batches (a finished task may linger a turn)
        self._observe = BATCH_SIZE.labels(use_case=name).observe
        self.stats = BatchStats()

    async def submit(self, item: I) -> O:
        """Queue `item` and wait for its outcome (its result, or its exception raised)."""
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._active < self._max_inflight:
            self._active += 1
            # A fresh context: the runner serves many calls, so it must not carry (and log
            # as) the call context of the one that happened to start it.
            runner = asyncio.create_task(
                self._run(), name=f"batch:{self._name}", context=contextvars.Context()
            )
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
        return await future

    async def drain(self) -> None:
        """Wait until every queued and running batch has finished (used on shutdown)."""
        while self._runners:
            await asyncio.gather(*self._runners, return_exceptions=True)

    async def _run(self) -> None:
        try:
            await self._take_batches()
        finally:
            # No await between the last look at the queue and this: a submit cannot slip in
            # between and find no runner.
            self._active -= 1

    async def _take_batches(self) -> None:
        while self._pending:
            batch = [entry for entry in self._pending[: self._max_batch] if not entry[1].done()]
            del self._pending[: self._max_batch]
            if not batch:
                continue
            self.stats.record(len(batch))
            self._observe(len(batch))
            items = [item for item, _ in batch]
            try:
                outcomes: Sequence[O | BaseException] = await self._run_batch(items)
                if len(outcomes) != len(batch):
                    raise RuntimeError(
                        f"{self._name}: {len(outcomes)} outcomes for {len(batch)} items"
                    )
            except Exception as error:  # every item of the batch shares the failure
                outcomes = [error] * len(batch)
            except BaseException:  # the runner itself is cancelled: nobody is left hanging
                for _, future in batch:
                    future.cancel()
                raise
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
