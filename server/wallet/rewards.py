"""RecordTaskAccepted and GetTaskReward: the task-reward use case, one transaction each.

RecordTaskAccepted is one READ COMMITTED transaction (Database.run retries 40001/40P01 and
lost connections) of three statements, five round trips with BEGIN and COMMIT:

S1. lock the assignee's wallet row FOR UPDATE and profile row FOR NO KEY UPDATE (joined
    with KYC status, reputation and XP). The wallet lock serialises one user's awards, so
    the day's issued BUZ read next is current and the daily cap cannot be overrun; it also
    serialises duplicates of one task for one assignee. The profile is locked here because
    S3 moves its XP and level: taking it before the audit head keeps the lock order
    wallet → profile → audit head, the order of every other writer (a profile update
    precedes its audit append), so the two cannot deadlock. NOT_FOUND without a wallet
    (unless the task id is already recorded: that answers first, as a replay/conflict).
S2. one statement, after the lock (a READ COMMITTED statement's snapshot is taken when it
    starts, so it sees what the previous holder of the wallet lock committed): the stored
    reward of this task id (payload hash), BUZ issued on the acceptance's UTC day
    (daily_user_stats), whether the venture exists, the reviewers found and their
    reputations, the latest device report (server.profile.domain.is_device_compliant
    judges it) and the head of this event's audit chain, created and locked by a
    data-modifying CTE (server.audit.append.HEAD_UPSERT). A stored row with the same
    payload hash → that reward with replay = true; a different hash → IdempotencyConflict
    (ALREADY_EXISTS, IDEMPOTENCY_CONFLICT).
    Then, in Python: server.wallet.domain.decide_reward with one Parameters snapshot's
    parameters (decoded once per snapshot), the level (level_for_xp of the locked XP plus
    the award), the ledger entry (server.wallet.ledger.prepare_entry: balance check, chain,
    hash) and the audit event `task.accepted` (server.audit.append.prepare; scope "task",
    ref id = task id).
S3. one statement (data-modifying CTEs): the ISSUE ledger entry and the wallet's balance
    and head (ledger.ENTRY_CTES, only when BUZ is awarded), the reward record,
    daily_user_stats (buz_issued, xp_gain for the acceptance day), user_metrics
    (tasks_accepted, quality), the profile's XP and level, the audit event and its chain
    head (append.EVENT_CTES).

A duplicate task id naming ANOTHER assignee does not share the wallet lock: it is caught
by the task_rewards primary key, whose INSERT waits for the first transaction and fails
with 23505 once it commits. That transaction rolls back and the call answers from the
stored row (replay when the payload hash matches, else IdempotencyConflict).

S2 and S3 run on the asyncpg connection under the session (module-constant statements,
prepared once per connection; no SQLAlchemy compilation or result machinery) inside the
transaction SQLAlchemy's adapter began for S1; see server.db.driver.Driver.

The payload hash covers every request field after normalisation (task id, assignee, tier,
quality, reviewer ids in the given order, venture, acceptance time), computed with the
canonical encoding of server/chain.py, so it is the same whether the call came over gRPC
or from another service.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server import idempotency
from server.audit import append as append_mod
from server.audit.append import AuditEvent
from server.chain import GENESIS, payload_hash
from server.context import RequestContext
from server.convert import parse_uuid
from server.db.driver import Driver
from server.db.session import Database
from server.errors import IdempotencyConflict, InvalidArgument, NotFound
from server.params import Parameters
from server.profile.domain import MILLI, DeviceReport, is_device_compliant, level_for_xp
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


def validate(event: TaskAccepted, now: datetime) -> _Valid:
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


# --- the hot path: three statements on the driver connection ------------------------------
#
# Statement texts are module constants (asyncpg prepares each once per connection and caches
# it). `{name}` placeholders are numbered $1, $2, ... by first use (_Binds); the ledger and
# audit fragments come from their one writer (server/wallet/ledger.py ENTRY_CTES,
# server/audit/append.py HEAD_UPSERT / EVENT_CTES), under a prefix so names cannot collide.


class _Binds:
    """str.format_map placeholders for asyncpg: `{name}` → `$n`, numbered by first use."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def scope(self, prefix: str) -> _Scope:
        return _Scope(self, prefix)


class _Scope:
    def __init__(self, binds: _Binds, prefix: str) -> None:
        self._binds, self._prefix = binds, prefix

    def __getitem__(self, name: str) -> str:
        key = self._prefix + name
        names = self._binds.names
        if key not in names:
            names[key] = f"${len(names) + 1}"
        return names[key]


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    names: tuple[str, ...]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] for name in self.names]


def _compose(*parts: tuple[str, str]) -> _Statement:
    """One statement from (prefix, template) parts, concatenated; placeholders get the prefix."""
    binds = _Binds()
    sql = "".join(template.format_map(binds.scope(prefix)) for prefix, template in parts)
    return _Statement(sql, tuple(binds.names))


_AUDIT_SCOPE = "task"


# S1 (through SQLAlchemy, so the adapter issues BEGIN first): lock the assignee's wallet
# (serialises one user's awards, so the day's issued BUZ read by S2 is current and the daily
# cap exact) and profile (S3 moves XP and level; locked here, before the audit head, so the
# lock order is always wallet → profile → audit head, the order every other use case that
# touches them follows: the profile update of UpdateMyProfile precedes its audit append).
_LOCK_ASSIGNEE = (
    "SELECT w.id, w.buz_balance, w.pending_lock, w.head_seq, w.head_hash,"
    " u.kyc_status, p.rep_milli, p.xp"
    " FROM wallets w JOIN users u ON u.id = w.user_id JOIN profiles p ON p.user_id = w.user_id"
    " WHERE w.user_id = $1 FOR UPDATE OF w FOR NO KEY UPDATE OF p"
)
# S2, after the lock (a new statement, hence a snapshot that sees what the previous holder
# of the wallet lock committed): the stored reward of this task id, BUZ already issued on
# the acceptance's UTC day, the venture, the reviewers' reputations, the latest device
# report (server.profile.users.posture_of's ordering) and this event's audit chain head,
# created and locked by the data-modifying CTE.
_FACTS = _compose(
    ("", "WITH head AS ("),
    ("head.", append_mod.HEAD_UPSERT),
    (
        "",
        ") SELECT"
        " (SELECT payload_hash FROM task_rewards WHERE task_id = {task_id}) AS stored_hash,"
        " (SELECT buz_issued FROM daily_user_stats WHERE user_id = {user_id} AND day = {day})"
        "  AS issued,"
        " EXISTS (SELECT 1 FROM ventures WHERE id = {venture_id}) AS venture_exists,"
        " rv.ids AS reviewer_ids, rv.reps AS reviewer_reps,"
        " d.compliant AS device_compliant, d.reported_at AS device_reported_at,"
        " h.seq AS audit_seq, h.hash AS audit_hash"
        " FROM head h"
        " CROSS JOIN LATERAL (SELECT array_agg(p.user_id) AS ids, array_agg(p.rep_milli) AS reps"
        "  FROM profiles p WHERE p.user_id = ANY(CAST({reviewers} AS uuid[]))) rv"
        " LEFT JOIN LATERAL (SELECT r.compliant, r.reported_at FROM device_posture_reports r"
        "  WHERE r.user_id = {user_id} ORDER BY r.reported_at DESC, r.created_at DESC LIMIT 1)"
        " d ON true",
    ),
)
# S3: everything the award writes, one statement: the ledger entry and wallet head (only
# when BUZ is awarded), the reward record, daily stats, metrics, XP and level, the audit
# event and the audit head.
_REWARD_CTES = (
    "reward AS ("
    " INSERT INTO task_rewards (task_id, user_id, venture_id, tier, quality, reviewer_ids,"
    "  accepted_at, accepted_day, payload_hash, reviewer_cred_milli, buz_computed,"
    "  buz_awarded, buz_capped, withheld_reasons, xp_awarded, ledger_entry_id)"
    " VALUES ({task_id}, {user_id}, {venture_id}, {tier}, {quality},"
    "  CAST({reviewer_ids} AS text[]), {accepted_at}, {day}, {payload_hash}, {cred},"
    "  CAST({computed} AS bigint), CAST({awarded} AS bigint), {capped},"
    "  CAST({reasons} AS text[]), CAST({xp} AS bigint), (SELECT id FROM ledger_entry))"
    " RETURNING created_at),"
    " daily AS ("
    " INSERT INTO daily_user_stats (user_id, day, xp_gain, buz_issued)"
    " VALUES ({user_id}, {day}, {xp}, {awarded})"
    " ON CONFLICT (user_id, day) DO UPDATE SET"
    "  xp_gain = daily_user_stats.xp_gain + EXCLUDED.xp_gain,"
    "  buz_issued = daily_user_stats.buz_issued + EXCLUDED.buz_issued),"
    " metrics AS ("
    " INSERT INTO user_metrics (user_id, tasks_accepted, quality_sum, quality_count)"
    " VALUES ({user_id}, 1, {quality}, 1)"
    " ON CONFLICT (user_id) DO UPDATE SET"
    "  tasks_accepted = user_metrics.tasks_accepted + 1,"
    "  quality_sum = user_metrics.quality_sum + EXCLUDED.quality_sum,"
    "  quality_count = user_metrics.quality_count + 1, updated_at = now()),"
    " profile AS ("
    " UPDATE profiles SET xp = xp + {xp}, level = {level}, updated_at = now()"
    " WHERE user_id = {user_id})"
)
_NO_ENTRY_CTES = (
    "ledger_entry AS (SELECT NULL::bigint AS id), ledger_head AS (SELECT NULL::bigint AS entry_id)"
)
_RECORD_RETURNING = (
    " SELECT (SELECT created_at FROM reward) AS created_at,"
    " (SELECT entry_id FROM ledger_head) AS entry_id,"
    " (SELECT event_id FROM audit_head) AS event_id"
)
_RECORD_WITH_ENTRY = _compose(
    ("", "WITH "),
    ("entry.", ledger.ENTRY_CTES),
    ("", ", "),
    ("", _REWARD_CTES),
    ("", ", "),
    ("audit.", append_mod.EVENT_CTES),
    ("", _RECORD_RETURNING),
)
_RECORD_NO_ENTRY = _compose(
    ("", "WITH "),
    ("", _NO_ENTRY_CTES),
    ("", ", "),
    ("", _REWARD_CTES),
    ("", ", "),
    ("audit.", append_mod.EVENT_CTES),
    ("", _RECORD_RETURNING),
)
_READ_REWARD = text("SELECT * FROM task_rewards WHERE task_id = :task_id")
TASK_REWARDS_PKEY = "pk_task_rewards"


class _TaskIdTaken(Exception):
    """S3 hit the task_rewards primary key: a concurrent call recorded this task id first."""


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


def _replay_or_conflict(valid: _Valid, stored_hash: str, view: RewardView) -> RewardView:
    if stored_hash != valid.payload_hash:
        raise _conflict(valid)
    return view


def _conflict(valid: _Valid) -> IdempotencyConflict:
    return IdempotencyConflict(
        "task_id was already recorded with a different payload",
        metadata={"task_id": valid.task_id},
    )


class RewardService:
    def __init__(self, database: Database, params: Parameters) -> None:
        self._db = database
        self._params = params
        self._decoded: tuple[Mapping[str, Any], RewardParams] | None = None

    async def _reward_params(self) -> RewardParams:
        """RewardParams of the current snapshot, decoded once per snapshot object."""
        snapshot = await self._params.snapshot()
        decoded = self._decoded
        if decoded is None or decoded[0] is not snapshot:
            decoded = self._decoded = (snapshot, RewardParams.from_snapshot(snapshot))
        return decoded[1]

    async def record_task_accepted(self, ctx: RequestContext, event: TaskAccepted) -> RewardView:
        """Reward one accepted task exactly once (see the module docstring)."""
        valid = validate(event, datetime.now(UTC))
        params = await self._reward_params()

        async def tx(session: AsyncSession) -> RewardView:
            return await _record(session, ctx, valid, params)

        try:
            return await self._db.run(tx)
        except _TaskIdTaken:
            pass
        # A concurrent call naming another assignee recorded this task id first (same
        # assignee: serialised on the wallet lock, S2 sees the row). Ours rolled back.
        async with self._db.transaction() as session:
            stored = await _load_stored(session, valid.task_id)
        if stored is None:  # pragma: no cover - the key was taken by a committed row
            raise RuntimeError("task_rewards primary key violated, but no row is stored")
        return _replay_or_conflict(valid, *stored)

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
    conn = await session.connection()
    # S1: lock the assignee's wallet and profile (SQLAlchemy: its adapter issues BEGIN)
    assignee = (await conn.exec_driver_sql(_LOCK_ASSIGNEE, (valid.user_id,))).first()
    db = await Driver.of(conn)
    if assignee is None:
        # A recorded task id answers before an unknown assignee (the order of old).
        stored = await _load_stored(session, valid.task_id)
        if stored is not None:
            return _replay_or_conflict(valid, *stored)
        raise NotFound("assignee not found", metadata={"user_id": str(valid.user_id)})
    wallet = ledger.WalletState(
        wallet_id=assignee.id,
        user_id=valid.user_id,
        buz_balance=int(assignee.buz_balance),
        pending_lock=int(assignee.pending_lock),
        head_seq=int(assignee.head_seq),
        head_hash=str(assignee.head_hash),
    )
    # S2: facts read under the lock; the audit head created and locked
    chain_id = append_mod.chain_for(_AUDIT_SCOPE, valid.task_id)
    facts = await db.fetchrow(
        _FACTS.sql,
        _FACTS.args(
            {
                "head.chain_id": chain_id,
                "head.genesis": GENESIS,
                "task_id": valid.task_id,
                "user_id": valid.user_id,
                "day": valid.accepted_day,
                "venture_id": valid.venture_id,
                "reviewers": list(valid.reviewer_ids),
            }
        ),
    )
    if facts["stored_hash"] is not None:
        if facts["stored_hash"] != valid.payload_hash:
            raise _conflict(valid)
        stored = await _load_stored(session, valid.task_id)
        if stored is None:  # pragma: no cover - committed before our snapshot, never deleted
            raise RuntimeError("stored reward vanished")
        return stored[1]
    if not facts["venture_exists"]:
        raise NotFound("venture not found", metadata={"venture_id": str(valid.venture_id)})
    found_reviewers = set(facts["reviewer_ids"] or ())
    missing = [str(r) for r in valid.reviewer_ids if r not in found_reviewers]
    if missing:
        raise NotFound("reviewer not found", metadata={"reviewer_id": missing[0]})
    device_compliant = True
    if params.require_device:
        reported_at = facts["device_reported_at"]
        latest = (
            None
            if reported_at is None
            else DeviceReport(compliant=bool(facts["device_compliant"]), reported_at=reported_at)
        )
        device_compliant = is_device_compliant(latest, datetime.now(UTC), params.max_report_age)
    # decide (pure)
    decision = decide_reward(
        tier=valid.tier,
        quality=valid.quality,
        reviewer_reps_milli=[int(r) for r in facts["reviewer_reps"]],
        kyc_status=assignee.kyc_status if params.require_kyc else "PASSED",
        rep_milli=int(assignee.rep_milli),
        device_compliant=device_compliant,
        issued_today=int(facts["issued"] or 0),
        tier_base=params.tier_base,
        quality_multiplier=params.quality_multiplier,
        cred_low_milli=params.cred_low_milli,
        cred_high_milli=params.cred_high_milli,
        min_rep=params.min_rep,
        daily_cap=params.daily_cap,
    )
    level = level_for_xp(int(assignee.xp) + decision.xp, params.level_thresholds)
    entry = None
    if decision.awarded > 0:
        entry = ledger.prepare_entry(
            wallet,
            ctx,
            type=ledger.EntryType.ISSUE,
            amount=decision.awarded,
            ref_kind=RefKind.TASK,
            ref_id=valid.task_id,
        )
    audit = append_mod.prepare(
        ctx,
        AuditEvent(
            action="task.accepted",
            scope=_AUDIT_SCOPE,
            ref_id=valid.task_id,
            details=_audit_details(valid, decision, entry, level),
        ),
        chain_id=chain_id,
        head_seq=int(facts["audit_seq"]),
        head_hash=str(facts["audit_hash"]),
    )
    reasons = [str(r) for r in decision.reasons]
    reviewer_ids = [str(r) for r in valid.reviewer_ids]
    values: dict[str, Any] = {
        "task_id": valid.task_id,
        "user_id": valid.user_id,
        "venture_id": valid.venture_id,
        "tier": valid.tier,
        "quality": valid.quality,
        "reviewer_ids": reviewer_ids,
        "accepted_at": valid.accepted_at,
        "day": valid.accepted_day,
        "payload_hash": valid.payload_hash,
        "cred": decision.cred_milli,
        "computed": decision.computed,
        "awarded": decision.awarded,
        "capped": decision.capped,
        "reasons": reasons,
        "xp": decision.xp,
        "level": level,
    }
    for name, value in audit.params().items():
        values["audit." + name] = value
    statement = _RECORD_NO_ENTRY
    if entry is not None:
        statement = _RECORD_WITH_ENTRY
        for name, value in entry.params().items():
            values["entry." + name] = value
    # S3: write it all
    try:
        written = await db.fetchrow(statement.sql, statement.args(values))
    except IntegrityError as error:
        if getattr(error.orig, "constraint_name", None) == TASK_REWARDS_PKEY:
            raise _TaskIdTaken from error
        raise
    if written["event_id"] is None or (entry is not None and written["entry_id"] is None):
        raise RuntimeError("wallet or audit head moved under a held lock")
    view = None
    if entry is not None:
        view = entry.view(int(written["entry_id"]))
        ledger.advance(wallet, entry)
    return RewardView(
        task_id=valid.task_id,
        user_id=valid.user_id,
        venture_id=valid.venture_id,
        tier=valid.tier,
        quality=valid.quality,
        reviewer_ids=tuple(reviewer_ids),
        accepted_at=valid.accepted_at,
        accepted_day=valid.accepted_day,
        reviewer_cred_milli=decision.cred_milli,
        buz_computed=decision.computed,
        buz_awarded=decision.awarded,
        buz_capped=decision.capped,
        withheld_reasons=tuple(reasons),
        xp_awarded=decision.xp,
        ledger_entry=view,
        replay=False,
        created_at=written["created_at"],
    )


def _audit_details(
    valid: _Valid, decision: RewardDecision, entry: ledger.NewEntry | None, level: int
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
