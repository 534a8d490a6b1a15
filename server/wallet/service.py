"""WalletService use cases: read a wallet, page and verify its ledger, admin ADJUST, and the
task reward (RecordTaskAccepted, GetTaskReward, the caller's own rewards). One transaction
each.

Access (server/core/access.py): the interceptor enforces each RPC's declared level; here a
non-admin may only name their own wallet (another user's id is PERMISSION_DENIED, as the
contract states).

RecordTaskAccepted checks the call, then hands it to a group-commit batcher
(server/core/batching.py): calls that arrive while earlier ones are in the database share
one transaction, server/wallet/reward_batch.py, which decides and writes each call's reward
exactly as if it were alone (in arrival order, one user's awards seeing the previous ones).
An idle server runs batches of one; under load a batch holds what queued meanwhile (at most
SMARTSTART_BATCH_MAX_SIZE), and at most SMARTSTART_BATCH_MAX_INFLIGHT batches are in the
database at once.

A batch that fails as a whole (the task_rewards primary key taken by a concurrent call
naming another assignee, or any database error a retry did not cure) does not fail its
calls: each is run again on its own, so only the call at fault sees an error. A lone call
that finds its task id taken answers from the stored row: replay = true when the payload
hash matches, else IdempotencyConflict (ALREADY_EXISTS, IDEMPOTENCY_CONFLICT).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.core import idempotency
from server.core.access import Denial, caller_id, require_owner_or, user_ref
from server.core.batching import Batcher
from server.core.clock import Clock, system_clock
from server.core.context import RequestContext, Role
from server.core.errors import InvalidArgument, NotFound
from server.core.pagination import Page, PageTokens, page_size, time_key
from server.core.params_cache import Parameters
from server.core.validation import parse_uuid, request_key, text
from server.db.session import Database
from server.wallet import ledger, queries
from server.wallet.domain import (
    Adjustment,
    RewardView,
    TaskAccepted,
    ValidCall,
    WalletView,
    validate_task_accepted,
)
from server.wallet.entries import EntryType, EntryView
from server.wallet.reward_batch import TaskIdTaken, record_batch
from server.wallet.reward_fold import Outcome, Recorded, Replay, task_conflict
from server.wallet.verify import Verification, verify_rows

_log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 1000
RPC = "smartstart.wallet.v1.WalletService"
_ENTRY_TYPES = frozenset(EntryType)
_ENTRY_TYPES_TEXT = "must be " + ", ".join(EntryType)


class WalletService:
    def __init__(
        self,
        database: Database,
        params: Parameters,
        page_tokens: PageTokens,
        *,
        clock: Clock = system_clock,
        batch_max_size: int = 64,
        batch_max_inflight: int = 1,
    ) -> None:
        self._db = database
        self._params = params
        self._tokens = page_tokens
        self._clock = clock
        self.rewards: Batcher[ValidCall, RewardView] = Batcher(
            "record_task_accepted",
            self._record_batch,
            max_batch=batch_max_size,
            max_inflight=batch_max_inflight,
        )

    # --- wallets and their ledgers ------------------------------------------------------------

    async def get_my_wallet(self, ctx: RequestContext) -> WalletView:
        me = caller_id(ctx)
        async with self._db.transaction() as session:
            return await queries.load_wallet(session, me)

    async def get_wallet(self, ctx: RequestContext, user_id: str) -> WalletView:
        if not user_id:
            raise InvalidArgument.field("user_id", "is required")
        target = parse_uuid(user_id, "user_id")
        async with self._db.transaction() as session:
            return await queries.load_wallet(session, target)

    @staticmethod
    def _readable_wallet(ctx: RequestContext, user_id: str) -> uuid.UUID:
        """Empty or `me`: the caller's wallet; another user's needs role admin."""
        target = user_ref(ctx, user_id, empty_is_me=True)
        require_owner_or(ctx, target, Role.ADMIN, denial=Denial.PERMISSION_DENIED, what="wallet")
        return target

    async def list_ledger_entries(
        self,
        ctx: RequestContext,
        *,
        user_id: str,
        types: Sequence[str],
        page_size_requested: int,
        page_token: str,
    ) -> Page[EntryView]:
        target = self._readable_wallet(ctx, user_id)
        if any(t not in _ENTRY_TYPES for t in types):
            raise InvalidArgument.field("types", _ENTRY_TYPES_TEXT)
        wanted = sorted(set(types))
        size = page_size(page_size_requested)
        filters = {"user_id": str(target), "types": wanted}
        keyset = self._tokens.decode(page_token, filters)
        before = int(keyset[0]) if keyset else None
        async with self._db.transaction() as session:
            wallet = await queries.load_wallet(session, target)
            entries = await queries.list_entries(
                session, wallet.wallet_id, types=wanted, before_seq=before, limit=size + 1
            )
        return self._tokens.page(entries, size, filters, lambda e: [e.seq])

    async def verify_wallet(self, ctx: RequestContext, *, user_id: str) -> Verification:
        target = self._readable_wallet(ctx, user_id)
        async with self._db.transaction() as session:
            wallet = await queries.load_wallet(session, target)
            row, entries = await queries.ledger_rows(session, wallet.wallet_id)
        return verify_rows(row, entries)

    async def adjust_balance(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        user_id: str,
        delta: int,
        reason: str,
    ) -> Adjustment:
        request_key(request_id)
        target = parse_uuid(user_id, "user_id")
        if delta == 0:
            raise InvalidArgument.field("delta", "must not be 0")
        reason = text(reason, "reason", min_length=1, max_length=MAX_REASON_LENGTH)
        scope = idempotency.scope_for(f"{RPC}/AdjustBalance", ctx.actor_id)

        async def tx(session: AsyncSession) -> Adjustment:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                entry = await queries.load_entry(session, int(stored["entry_id"]))
                wallet = await queries.load_wallet(session, target)
                return Adjustment(wallet=wallet.after(entry), entry=entry)
            wallet = await queries.load_wallet(session, target)
            entry = await ledger.adjust(
                session, ctx, user_id=target, delta=delta, reason=reason, ref_id=request_id
            )
            await append(
                session,
                ctx,
                AuditEvent(
                    action="wallet.adjusted",
                    scope="wallet",
                    ref_id=str(target),
                    details={
                        "delta": delta,
                        "reason": reason,
                        "seq": entry.seq,
                        "balance_after": entry.balance_after,
                        "request_id": request_id,
                    },
                ),
            )
            await idempotency.complete(session, scope, request_id, {"entry_id": entry.id})
            return Adjustment(wallet=wallet.after(entry), entry=entry)

        return await self._db.run(tx)

    # --- task rewards ---------------------------------------------------------------------------

    async def record_task_accepted(self, ctx: RequestContext, event: TaskAccepted) -> RewardView:
        """Reward one accepted task exactly once (see the module docstring)."""
        return await self.rewards.submit(validate_task_accepted(ctx, event, self._clock()))

    async def get_task_reward(self, ctx: RequestContext, task_id: str) -> RewardView:
        request_key(task_id, "task_id")
        async with self._db.transaction() as session:
            found = await queries.load_reward(session, task_id, replay=False)
        if found is None:
            raise NotFound("no reward recorded for this task", metadata={"task_id": task_id})
        return found[1]

    async def list_my_rewards(
        self, ctx: RequestContext, *, page_size_requested: int, page_token: str
    ) -> Page[RewardView]:
        me = caller_id(ctx)
        size = page_size(page_size_requested)
        filters = {"user_id": str(me)}
        before = self._tokens.time_keyset(page_token, filters)
        async with self._db.transaction() as session:
            rows = await queries.list_rewards(session, me, before=before, limit=size + 1)
        return self._tokens.page(rows, size, filters, lambda r: time_key(r.created_at, r.task_id))

    async def _record_batch(self, calls: Sequence[ValidCall]) -> list[RewardView | Exception]:
        params, now = await self._params.current(), self._clock()
        try:
            outcomes = await self._db.run(lambda session: record_batch(session, calls, params, now))
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
        recorded = {o.call.task_id: o.view() for o in outcomes if isinstance(o, Recorded)}
        answers: list[RewardView | Exception] = []
        for call, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, Recorded):
                answers.append(recorded[call.task_id])
            elif isinstance(outcome, Replay):
                earlier = recorded.get(outcome.task_id)
                if earlier is not None:  # recorded by an earlier call of this batch
                    answers.append(replace(earlier, replay=True))
                else:
                    answers.append((await self._stored(call))[1])
            else:
                answers.append(outcome)
        return answers

    async def _stored(self, call: ValidCall) -> tuple[str, RewardView]:
        """The reward stored for the call's task id (payload hash, view as a replay)."""
        async with self._db.transaction() as session:
            found = await queries.load_reward(session, call.task_id, replay=True)
        if found is None:  # pragma: no cover - stored rewards are write-once
            raise RuntimeError("stored reward vanished")
        return found

    async def _answer_stored(self, call: ValidCall) -> RewardView | Exception:
        """A concurrent call naming another assignee recorded this task id first (same
        assignee: serialised on the wallet lock, S2 sees the row). Ours rolled back."""
        stored_hash, view = await self._stored(call)
        if stored_hash != call.payload_hash:
            return task_conflict(call)
        return view
