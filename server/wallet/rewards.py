"""RecordTaskAccepted and GetTaskReward: the task-reward use case.

RecordTaskAccepted validates the call here, then hands it to a group-commit batcher
(server/batching.py): calls that arrive while earlier ones are in the database share one
transaction, server/wallet/reward_batch.py, which decides and writes each call's reward
exactly as if it were alone (in arrival order, one user's awards seeing the previous
ones). An idle server runs batches of one; under load a batch holds what queued meanwhile
(at most SMARTSTART_BATCH_MAX_SIZE), and at most SMARTSTART_BATCH_MAX_INFLIGHT batches are
in the database at once.

A batch that fails as a whole (the task_rewards primary key taken by a concurrent call
naming another assignee, or any database error a retry did not cure) does not fail its
calls: each is run again on its own, so only the call at fault sees an error. A lone call
that finds its task id taken answers from the stored row: replay = true when the payload
hash matches, else IdempotencyConflict (ALREADY_EXISTS, IDEMPOTENCY_CONFLICT).

The payload hash covers every request field after normalisation (task id, assignee, tier,
quality, reviewer ids in the given order, venture, acceptance time), computed with the
canonical encoding of server/chain.py, so it is the same whether the call came over gRPC
or from another service.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server import idempotency
from server.batching import Batcher
from server.chain import payload_hash
from server.context import RequestContext
from server.convert import parse_uuid
from server.db.session import Database
from server.errors import IdempotencyConflict, InvalidArgument, NotFound
from server.params import Parameters
from server.wallet import ledger
from server.wallet.domain import RewardParams
from server.wallet.ledger import EntryView
from server.wallet.models import TIERS
from server.wallet.reward_batch import (
    Outcome,
    Recorded,
    Replay,
    TaskIdTaken,
    ValidCall,
    record_batch,
)

_log = logging.getLogger(__name__)

MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_REVIEWERS = 50


@dataclass(frozen=True, slots=True)
class TaskAccepted:
    """A "task accepted" event as the caller sent it (validated by the use case)."""

    task_id: str
    user_id: str
    tier: str
    quality: int
    reviewer_ids: Sequence[str]
    venture_id: str
    accepted_at: datetime | None


@dataclass(frozen=True, slots=True)
class RewardView:
    task_id: str
    user_id: uuid.UUID
    venture_id: uuid.UUID | None
    tier: str
    quality: int
    reviewer_ids: tuple[str, ...]
    accepted_at: datetime
    accepted_day: date
    reviewer_cred_milli: int
    buz_computed: int
    buz_awarded: int
    buz_capped: int
    withheld_reasons: tuple[str, ...]
    xp_awarded: int
    ledger_entry: EntryView | None
    replay: bool
    created_at: datetime

    @property
    def withheld(self) -> bool:
        return self.buz_awarded < self.buz_computed


def validate(ctx: RequestContext, event: TaskAccepted, now: datetime) -> ValidCall:
    task_id = idempotency.validate_key(event.task_id, "task_id")
    user_id = parse_uuid(event.user_id, "user_id")
    if event.tier not in TIERS:
        raise InvalidArgument.field("tier", "must be S, A, B or C")
    if not 1 <= event.quality <= 5:
        raise InvalidArgument.field("quality", "must be 1..5")
    if not 1 <= len(event.reviewer_ids) <= MAX_REVIEWERS:
        raise InvalidArgument.field("reviewer_ids", f"must name 1..{MAX_REVIEWERS} reviewers")
    reviewers = tuple(parse_uuid(r, f"reviewer_ids[{i}]") for i, r in enumerate(event.reviewer_ids))
    if len(set(reviewers)) != len(reviewers):
        raise InvalidArgument.field("reviewer_ids", "must be distinct")
    if user_id in reviewers:
        raise InvalidArgument.field("reviewer_ids", "must not include the assignee")
    if not event.venture_id:
        raise InvalidArgument.field("venture_id", "is required")
    venture_id = parse_uuid(event.venture_id, "venture_id")
    if event.accepted_at is None:
        raise InvalidArgument.field("accepted_at", "is required")
    if event.accepted_at.tzinfo is None:
        raise InvalidArgument.field("accepted_at", "must carry a time zone")
    accepted_at = event.accepted_at.astimezone(UTC)
    if accepted_at > now + MAX_FUTURE_SKEW:
        raise InvalidArgument.field("accepted_at", "must not be more than 5 minutes in the future")
    digest = payload_hash(
        {
            "task_id": task_id,
            "user_id": str(user_id),
            "tier": event.tier,
            "quality": event.quality,
            "reviewer_ids": [str(r) for r in reviewers],
            "venture_id": str(venture_id),
            "accepted_at": accepted_at,
        }
    )
    return ValidCall(
        ctx=ctx,
        task_id=task_id,
        user_id=user_id,
        tier=event.tier,
        quality=event.quality,
        reviewer_ids=reviewers,
        venture_id=venture_id,
        accepted_at=accepted_at,
        accepted_day=accepted_at.date(),
        payload_hash=digest,
    )


_READ_REWARD = text("SELECT * FROM task_rewards WHERE task_id = :task_id")


def _reward_from_row(row: Any, entry: EntryView | None, *, replay: bool) -> RewardView:
    return RewardView(
        task_id=row.task_id,
        user_id=row.user_id,
        venture_id=row.venture_id,
        tier=row.tier,
        quality=int(row.quality),
        reviewer_ids=tuple(row.reviewer_ids),
        accepted_at=row.accepted_at,
        accepted_day=row.accepted_day,
        reviewer_cred_milli=int(row.reviewer_cred_milli),
        buz_computed=int(row.buz_computed),
        buz_awarded=int(row.buz_awarded),
        buz_capped=int(row.buz_capped),
        withheld_reasons=tuple(row.withheld_reasons),
        xp_awarded=int(row.xp_awarded),
        ledger_entry=entry,
        replay=replay,
        created_at=row.created_at,
    )


async def _load_entry(session: AsyncSession, entry_id: int | None) -> EntryView | None:
    if entry_id is None:
        return None
    return await ledger.load_entry(session, entry_id)


async def _load_stored(session: AsyncSession, task_id: str) -> tuple[str, RewardView] | None:
    """The stored reward of `task_id` (as a replay) and its payload hash, or None."""
    row = (await session.execute(_READ_REWARD, {"task_id": task_id})).first()
    if row is None:
        return None
    view = _reward_from_row(row, await _load_entry(session, row.ledger_entry_id), replay=True)
    return str(row.payload_hash), view


async def load_reward(session: AsyncSession, task_id: str, *, replay: bool) -> RewardView | None:
    stored = await _load_stored(session, task_id)
    if stored is None:
        return None
    return replace(stored[1], replay=replay)


def _view(recorded: Recorded) -> RewardView:
    call, decision = recorded.call, recorded.decision
    return RewardView(
        task_id=call.task_id,
        user_id=call.user_id,
        venture_id=call.venture_id,
        tier=call.tier,
        quality=call.quality,
        reviewer_ids=tuple(str(r) for r in call.reviewer_ids),
        accepted_at=call.accepted_at,
        accepted_day=call.accepted_day,
        reviewer_cred_milli=decision.cred_milli,
        buz_computed=decision.computed,
        buz_awarded=decision.awarded,
        buz_capped=decision.capped,
        withheld_reasons=tuple(str(r) for r in decision.reasons),
        xp_awarded=decision.xp,
        ledger_entry=recorded.entry,
        replay=False,
        created_at=recorded.created_at,
    )


class RewardService:
    def __init__(
        self,
        database: Database,
        params: Parameters,
        *,
        batch_max_size: int = 64,
        batch_max_inflight: int = 1,
    ) -> None:
        self._db = database
        self._params = params
        self._decoded: tuple[Mapping[str, Any], RewardParams] | None = None
        self.batcher: Batcher[ValidCall, RewardView] = Batcher(
            "record_task_accepted",
            self._record_batch,
            max_batch=batch_max_size,
            max_inflight=batch_max_inflight,
        )

    async def _reward_params(self) -> RewardParams:
        """RewardParams of the current snapshot, decoded once per snapshot object."""
        snapshot = await self._params.snapshot()
        decoded = self._decoded
        if decoded is None or decoded[0] is not snapshot:
            decoded = self._decoded = (snapshot, RewardParams.from_snapshot(snapshot))
        return decoded[1]

    async def record_task_accepted(self, ctx: RequestContext, event: TaskAccepted) -> RewardView:
        """Reward one accepted task exactly once (see the module docstring)."""
        return await self.batcher.submit(validate(ctx, event, datetime.now(UTC)))

    async def _record_batch(self, calls: Sequence[ValidCall]) -> list[RewardView | Exception]:
        params = await self._reward_params()
        try:
            outcomes = await self._db.run(lambda session: record_batch(session, calls, params))
        except Exception as error:
            if len(calls) == 1:
                if isinstance(error, TaskIdTaken):
                    return [await self._answer_stored(calls[0])]
                raise
            # One call took the whole batch down (its task id taken concurrently, or a
            # failure a retry did not cure): run each alone so only that one sees it.
            _log.info(
                "task reward batch of %d failed (%s); running its calls one by one",
                len(calls),
                type(error).__name__,
            )
            # In arrival order, one at a time: the rare path, so it holds one connection.
            answers: list[RewardView | Exception] = []
            for call in calls:
                try:
                    answers.extend(await self._record_batch([call]))
                except Exception as alone_error:
                    answers.append(alone_error)
            return answers
        return await self._answers(calls, outcomes)

    async def _answers(
        self, calls: Sequence[ValidCall], outcomes: Sequence[Outcome]
    ) -> list[RewardView | Exception]:
        recorded = {o.call.task_id: _view(o) for o in outcomes if isinstance(o, Recorded)}
        answers: list[RewardView | Exception] = []
        for call, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, Recorded):
                answers.append(recorded[call.task_id])
            elif isinstance(outcome, Replay):
                earlier = recorded.get(outcome.task_id)
                if earlier is not None:  # recorded by an earlier call of this batch
                    answers.append(replace(earlier, replay=True))
                else:
                    answers.append(await self._load_replay(call))
            else:
                answers.append(outcome)
        return answers

    async def _load_replay(self, call: ValidCall) -> RewardView:
        async with self._db.transaction() as session:
            found = await load_reward(session, call.task_id, replay=True)
        if found is None:  # pragma: no cover - stored rewards are write-once
            raise RuntimeError("stored reward vanished")
        return found

    async def _answer_stored(self, call: ValidCall) -> RewardView | Exception:
        """A concurrent call naming another assignee recorded this task id first (same
        assignee: serialised on the wallet lock, S2 sees the row). Ours rolled back."""
        async with self._db.transaction() as session:
            stored = await _load_stored(session, call.task_id)
        if stored is None:  # pragma: no cover - the key was taken by a committed row
            raise RuntimeError("task_rewards primary key violated, but no row is stored")
        stored_hash, view = stored
        if stored_hash != call.payload_hash:
            return IdempotencyConflict(
                "task_id was already recorded with a different payload",
                metadata={"task_id": call.task_id},
            )
        return view

    async def get_task_reward(self, ctx: RequestContext, task_id: str) -> RewardView:
        idempotency.validate_key(task_id, "task_id")
        async with self._db.transaction() as session:
            found = await load_reward(session, task_id, replay=False)
        if found is None:
            raise NotFound("no reward recorded for this task", metadata={"task_id": task_id})
        return found
