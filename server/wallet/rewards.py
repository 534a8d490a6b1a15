"""RecordTaskAccepted and GetTaskReward: the task-reward use case, one transaction each.

One call, one READ COMMITTED transaction (Database.run retries 40001/40P01):

1. claim the task id: `pg_advisory_xact_lock(hashtextextended('task:' || task_id, 0))`,
   then read `task_rewards` by task id in a NEW statement (a READ COMMITTED statement
   snapshot is taken before its locks are granted, so the read must follow the lock).
   A concurrent duplicate waits on the lock until the first call commits, then sees its
   row: same payload hash → the stored reward with replay = true; different →
   IdempotencyConflict (ALREADY_EXISTS, IDEMPOTENCY_CONFLICT). The advisory lock is used
   instead of claim-by-INSERT because the reward row's NOT NULL outcome columns (cred,
   computed, awarded, xp) are only known after the decision: a claim row would need
   placeholder values and a second write. The primary key on task_id stays the last line
   of defence.
2. lock the assignee's wallet row FOR UPDATE (joined with KYC status and reputation):
   this serialises the awards of one user, so the next statement's read of the day's
   issued BUZ is current and the daily cap cannot be overrun by concurrent tasks.
3. one statement reads, after the lock: BUZ already issued on the acceptance's UTC day
   (daily_user_stats.buz_issued), the venture, the reviewers' reputations; device posture
   comes from server.profile.users.posture_of (the one reader of posture reports).
4. server.wallet.domain.decide_reward with the parameters of one Parameters snapshot.
5. if BUZ is awarded: one ISSUE ledger entry (server.wallet.ledger, reusing the lock).
6. one statement (data-modifying CTE) writes the reward record, daily_user_stats
   (buz_issued, xp_gain for the acceptance day), user_metrics (tasks_accepted, quality)
   and the profile's XP; the level follows with level_for_xp (a second UPDATE only when it
   changes).
7. the audit event `task.accepted` (scope "task", ref id = task id).

The payload hash covers every request field after normalisation (task id, assignee, tier,
quality, reviewer ids in the given order, venture, acceptance time), computed with the
canonical encoding of server/chain.py, so it is the same whether the call came over gRPC
or from another service.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server import idempotency
from server.audit.append import AuditEvent, append
from server.chain import payload_hash
from server.context import RequestContext
from server.db.session import Database
from server.errors import IdempotencyConflict, InvalidArgument, NotFound
from server.params import Parameters
from server.profile.domain import MILLI, level_for_xp
from server.profile.users import posture_of
from server.wallet import ledger
from server.wallet.domain import RewardDecision, decide_reward
from server.wallet.ledger import EntryView, RefKind
from server.wallet.models import TIERS

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


@dataclass(frozen=True, slots=True)
class RewardParams:
    """The business parameters a reward decision uses, decoded from one snapshot."""

    tier_base: Mapping[str, int]
    quality_multiplier: Mapping[int, Decimal]
    cred_low_milli: int
    cred_high_milli: int
    min_rep: int
    daily_cap: int
    require_kyc: bool
    require_device: bool
    max_report_age: timedelta
    level_thresholds: tuple[int, ...]

    @classmethod
    def from_snapshot(cls, values: Mapping[str, Any]) -> RewardParams:
        bounds = values["buz.reviewer_cred_bounds"]
        return cls(
            tier_base={str(k): int(v) for k, v in values["buz.tier_base"].items()},
            quality_multiplier={
                int(k): Decimal(str(v)) for k, v in values["buz.quality_multipliers"].items()
            },
            cred_low_milli=int(Decimal(str(bounds["min"])) * MILLI),
            cred_high_milli=int(Decimal(str(bounds["max"])) * MILLI),
            min_rep=int(values["gates.min_reputation"]),
            daily_cap=int(values["buz.daily_cap"]),
            require_kyc=bool(values["gates.require_kyc"]),
            require_device=bool(values["gates.require_device_compliance"]),
            max_report_age=timedelta(hours=int(values["device.max_report_age_hours"])),
            level_thresholds=tuple(int(t) for t in values["levels.thresholds"]),
        )


@dataclass(frozen=True, slots=True)
class _Valid:
    task_id: str
    user_id: uuid.UUID
    tier: str
    quality: int
    reviewer_ids: tuple[uuid.UUID, ...]
    venture_id: uuid.UUID
    accepted_at: datetime
    accepted_day: date
    payload_hash: str


def _uuid(raw: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument.field(field, "must be a UUID") from None


def validate(event: TaskAccepted, now: datetime) -> _Valid:
    task_id = idempotency.validate_key(event.task_id, "task_id")
    user_id = _uuid(event.user_id, "user_id")
    if event.tier not in TIERS:
        raise InvalidArgument.field("tier", "must be S, A, B or C")
    if not 1 <= event.quality <= 5:
        raise InvalidArgument.field("quality", "must be 1..5")
    if not 1 <= len(event.reviewer_ids) <= MAX_REVIEWERS:
        raise InvalidArgument.field("reviewer_ids", f"must name 1..{MAX_REVIEWERS} reviewers")
    reviewers = tuple(_uuid(r, f"reviewer_ids[{i}]") for i, r in enumerate(event.reviewer_ids))
    if len(set(reviewers)) != len(reviewers):
        raise InvalidArgument.field("reviewer_ids", "must be distinct")
    if user_id in reviewers:
        raise InvalidArgument.field("reviewer_ids", "must not include the assignee")
    if not event.venture_id:
        raise InvalidArgument.field("venture_id", "is required")
    venture_id = _uuid(event.venture_id, "venture_id")
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
    return _Valid(
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


_CLAIM_TASK = text("SELECT pg_advisory_xact_lock(hashtextextended('task:' || :task_id, 0))")
_READ_REWARD = text("SELECT * FROM task_rewards WHERE task_id = :task_id")
_LOCK_ASSIGNEE = text(
    "SELECT w.id, w.user_id, w.buz_balance, w.pending_lock, w.head_seq, w.head_hash,"
    " u.kyc_status, p.rep_milli"
    " FROM wallets w JOIN users u ON u.id = w.user_id JOIN profiles p ON p.user_id = w.user_id"
    " WHERE w.user_id = :user_id FOR UPDATE OF w"
)
# After the wallet lock (a new statement, so a fresh snapshot): the day's issued BUZ is the
# value the previous award of this user committed.
_FACTS = text(
    "SELECT"
    " (SELECT buz_issued FROM daily_user_stats WHERE user_id = :user_id AND day = :day)"
    "  AS issued,"
    " EXISTS (SELECT 1 FROM ventures WHERE id = :venture_id) AS venture_exists,"
    " ARRAY(SELECT p.user_id::text FROM profiles p"
    "  WHERE p.user_id = ANY(CAST(:reviewers AS uuid[])) ORDER BY p.user_id) AS reviewer_ids,"
    " ARRAY(SELECT p.rep_milli FROM profiles p"
    "  WHERE p.user_id = ANY(CAST(:reviewers AS uuid[])) ORDER BY p.user_id) AS reviewer_reps"
)
_RECORD = text(
    "WITH reward AS ("
    " INSERT INTO task_rewards (task_id, user_id, venture_id, tier, quality, reviewer_ids,"
    "  accepted_at, accepted_day, payload_hash, reviewer_cred_milli, buz_computed,"
    "  buz_awarded, buz_capped, withheld_reasons, xp_awarded, ledger_entry_id)"
    " VALUES (:task_id, :user_id, :venture_id, :tier, :quality,"
    "  CAST(:reviewer_ids AS text[]), :accepted_at, :day, :payload_hash, :cred,"
    "  :computed, :awarded, :capped, CAST(:reasons AS text[]), :xp, :entry_id)"
    " RETURNING created_at),"
    " daily AS ("
    " INSERT INTO daily_user_stats (user_id, day, xp_gain, buz_issued)"
    " VALUES (:user_id, :day, :xp, :awarded)"
    " ON CONFLICT (user_id, day) DO UPDATE SET"
    "  xp_gain = daily_user_stats.xp_gain + EXCLUDED.xp_gain,"
    "  buz_issued = daily_user_stats.buz_issued + EXCLUDED.buz_issued),"
    " metrics AS ("
    " INSERT INTO user_metrics (user_id, tasks_accepted, quality_sum, quality_count)"
    " VALUES (:user_id, 1, :quality, 1)"
    " ON CONFLICT (user_id) DO UPDATE SET"
    "  tasks_accepted = user_metrics.tasks_accepted + 1,"
    "  quality_sum = user_metrics.quality_sum + EXCLUDED.quality_sum,"
    "  quality_count = user_metrics.quality_count + 1, updated_at = now()),"
    " profile AS ("
    " UPDATE profiles SET xp = xp + :xp, updated_at = now() WHERE user_id = :user_id"
    " RETURNING xp, level)"
    " SELECT (SELECT created_at FROM reward) AS created_at,"
    " (SELECT xp FROM profile) AS xp, (SELECT level FROM profile) AS level"
)
_SET_LEVEL = text("UPDATE profiles SET level = :level, updated_at = now() WHERE user_id = :user_id")


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


async def load_reward(session: AsyncSession, task_id: str, *, replay: bool) -> RewardView | None:
    row = (await session.execute(_READ_REWARD, {"task_id": task_id})).first()
    if row is None:
        return None
    return _reward_from_row(row, await _load_entry(session, row.ledger_entry_id), replay=replay)


class RewardService:
    def __init__(self, database: Database, params: Parameters) -> None:
        self._db = database
        self._params = params

    async def record_task_accepted(self, ctx: RequestContext, event: TaskAccepted) -> RewardView:
        """Reward one accepted task exactly once (see the module docstring)."""
        valid = validate(event, datetime.now(UTC))
        params = RewardParams.from_snapshot(await self._params.snapshot())

        async def tx(session: AsyncSession) -> RewardView:
            return await _record(session, ctx, valid, params)

        return await self._db.run(tx)

    async def get_task_reward(self, ctx: RequestContext, task_id: str) -> RewardView:
        idempotency.validate_key(task_id, "task_id")
        async with self._db.transaction() as session:
            found = await load_reward(session, task_id, replay=False)
        if found is None:
            raise NotFound("no reward recorded for this task", metadata={"task_id": task_id})
        return found


async def _record(
    session: AsyncSession, ctx: RequestContext, valid: _Valid, params: RewardParams
) -> RewardView:
    # 1. claim the task id (a concurrent duplicate waits here until we commit)
    await session.execute(_CLAIM_TASK, {"task_id": valid.task_id})
    stored = (await session.execute(_READ_REWARD, {"task_id": valid.task_id})).first()
    if stored is not None:
        if stored.payload_hash != valid.payload_hash:
            raise IdempotencyConflict(
                "task_id was already recorded with a different payload",
                metadata={"task_id": valid.task_id},
            )
        entry = await _load_entry(session, stored.ledger_entry_id)
        return _reward_from_row(stored, entry, replay=True)
    # 2. serialise this user's awards on the wallet row
    assignee = (await session.execute(_LOCK_ASSIGNEE, {"user_id": valid.user_id})).first()
    if assignee is None:
        raise NotFound("assignee not found", metadata={"user_id": str(valid.user_id)})
    wallet = ledger.WalletState(
        wallet_id=assignee.id,
        user_id=assignee.user_id,
        buz_balance=int(assignee.buz_balance),
        pending_lock=int(assignee.pending_lock),
        head_seq=int(assignee.head_seq),
        head_hash=str(assignee.head_hash),
    )
    # 3. facts read under the lock
    facts = (
        await session.execute(
            _FACTS,
            {
                "user_id": valid.user_id,
                "day": valid.accepted_day,
                "venture_id": valid.venture_id,
                "reviewers": [str(r) for r in valid.reviewer_ids],
            },
        )
    ).one()
    if not facts.venture_exists:
        raise NotFound("venture not found", metadata={"venture_id": str(valid.venture_id)})
    found_reviewers = set(facts.reviewer_ids)
    missing = [str(r) for r in valid.reviewer_ids if str(r) not in found_reviewers]
    if missing:
        raise NotFound("reviewer not found", metadata={"reviewer_id": missing[0]})
    device_compliant = True
    if params.require_device:
        posture = await posture_of(session, valid.user_id, datetime.now(UTC), params.max_report_age)
        device_compliant = posture.device_compliant
    # 4. decide
    decision = decide_reward(
        tier=valid.tier,
        quality=valid.quality,
        reviewer_reps_milli=[int(r) for r in facts.reviewer_reps],
        kyc_status=assignee.kyc_status if params.require_kyc else "PASSED",
        rep_milli=int(assignee.rep_milli),
        device_compliant=device_compliant,
        issued_today=int(facts.issued or 0),
        tier_base=params.tier_base,
        quality_multiplier=params.quality_multiplier,
        cred_low_milli=params.cred_low_milli,
        cred_high_milli=params.cred_high_milli,
        min_rep=params.min_rep,
        daily_cap=params.daily_cap,
    )
    # 5. issue
    entry = None
    if decision.awarded > 0:
        entry = await ledger.issue(
            session,
            ctx,
            user_id=valid.user_id,
            amount=decision.awarded,
            ref_kind=RefKind.TASK,
            ref_id=valid.task_id,
            locked=wallet,
        )
    # 6. reward record, daily stats, metrics, XP (one statement), level
    reasons = [str(r) for r in decision.reasons]
    written = (
        await session.execute(
            _RECORD,
            {
                "task_id": valid.task_id,
                "user_id": valid.user_id,
                "venture_id": valid.venture_id,
                "tier": valid.tier,
                "quality": valid.quality,
                "reviewer_ids": [str(r) for r in valid.reviewer_ids],
                "accepted_at": valid.accepted_at,
                "day": valid.accepted_day,
                "payload_hash": valid.payload_hash,
                "cred": decision.cred_milli,
                "computed": decision.computed,
                "awarded": decision.awarded,
                "capped": decision.capped,
                "reasons": reasons,
                "xp": decision.xp,
                "entry_id": entry.id if entry else None,
            },
        )
    ).one()
    level = level_for_xp(int(written.xp), params.level_thresholds)
    if level != int(written.level):
        await session.execute(_SET_LEVEL, {"level": level, "user_id": valid.user_id})
    # 7. audit
    await append(
        session,
        ctx,
        AuditEvent(
            action="task.accepted",
            scope="task",
            ref_id=valid.task_id,
            details=_audit_details(valid, decision, entry, level),
        ),
    )
    return RewardView(
        task_id=valid.task_id,
        user_id=valid.user_id,
        venture_id=valid.venture_id,
        tier=valid.tier,
        quality=valid.quality,
        reviewer_ids=tuple(str(r) for r in valid.reviewer_ids),
        accepted_at=valid.accepted_at,
        accepted_day=valid.accepted_day,
        reviewer_cred_milli=decision.cred_milli,
        buz_computed=decision.computed,
        buz_awarded=decision.awarded,
        buz_capped=decision.capped,
        withheld_reasons=tuple(reasons),
        xp_awarded=decision.xp,
        ledger_entry=entry,
        replay=False,
        created_at=written.created_at,
    )


def _audit_details(
    valid: _Valid, decision: RewardDecision, entry: EntryView | None, level: int
) -> dict[str, Any]:
    return {
        "user_id": str(valid.user_id),
        "venture_id": str(valid.venture_id),
        "tier": valid.tier,
        "quality": valid.quality,
        "reviewer_count": len(valid.reviewer_ids),
        "accepted_day": valid.accepted_day.isoformat(),
        "reviewer_cred_milli": decision.cred_milli,
        "buz_computed": decision.computed,
        "buz_awarded": decision.awarded,
        "buz_capped": decision.capped,
        "buz_withheld": decision.withheld_buz,
        "reasons": [str(r) for r in decision.reasons],
        "xp_awarded": decision.xp,
        "level": level,
        "ledger_seq": entry.seq if entry else None,
    }
