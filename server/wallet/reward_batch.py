"""RecordTaskAccepted's transaction, for a batch of calls (server/batching.py).

One READ COMMITTED transaction (Database.run retries 40001/40P01 and lost connections)
of four statements, six round trips with BEGIN and COMMIT, whatever the batch's size:

S1. lock the assignees' wallet rows FOR UPDATE and profile rows FOR NO KEY UPDATE (joined
    with KYC status, reputation and XP), in ascending wallet id (ledger.lock_wallets'
    order). The wallet lock serialises one user's awards, so the day's issued BUZ read
    next is current and the daily cap cannot be overrun; it also serialises duplicates of
    one task for one assignee. The profile is locked here because S4 moves its XP and
    level.
S2. one statement, after the locks (a READ COMMITTED statement's snapshot is taken when it
    starts, so it sees what the previous holders of the wallet locks committed): the
    stored payload hashes of the batch's task ids, BUZ issued on each (assignee, UTC day),
    which ventures exist, the reviewers' reputations and each assignee's latest device
    report (server.profile.domain.is_device_compliant judges it).
    Then, in Python, call by call in arrival order (`_Fold`): a task id already stored
    → replay (same payload hash) or IdempotencyConflict (ALREADY_EXISTS); unknown assignee,
    venture or reviewer → NotFound for that call alone; else the pure decision
    (server.wallet.domain.decide_reward, with the day's BUZ including this batch's earlier
    awards), the level after the XP, the ISSUE ledger entry chained to the wallet's head
    (server.wallet.ledger.prepare_entry) and the `task.accepted` audit event, redacted and
    its payload hashed (server.audit.append.draft). A task id twice in one batch: the later
    call is a replay (or a conflict) of the earlier.
S3. lock the heads of the audit chains the events go to, in ascending chain order
    (server.audit.append.HEADS_UPSERT), and chain the events to them. Audit heads are
    shared by every writer, so they are taken last and held shortest: the fold above runs
    before, under the batch's own wallet locks only. The lock order stays wallet →
    profile → audit head, the order of every other writer, so they cannot deadlock.
S4. one statement (data-modifying CTEs over arrays): the ledger entries and wallet heads
    (server.wallet.ledger.ENTRIES_CTES), the reward records, daily_user_stats (buz_issued,
    xp_gain per acceptance day), user_metrics (tasks_accepted, quality), the profiles' XP
    and level, the audit events and chain heads (server.audit.append.EVENTS_CTES).

A task id stored concurrently by a call naming ANOTHER assignee does not share a wallet
lock: S4 hits the task_rewards primary key (23505, raised here as TaskIdTaken) once the
other transaction commits, and the whole batch rolls back; the caller (server.wallet.
rewards) then runs each call of the batch on its own.

S2 to S4 run on the asyncpg connection under the session (module-constant statements,
prepared once per connection; no SQLAlchemy compilation or result machinery) inside the
transaction SQLAlchemy's adapter began for S1; see server.db.driver.Driver.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import append as audit
from server.audit.append import AuditEvent, DraftEvent, NewEvent
from server.context import RequestContext
from server.db.driver import Driver
from server.db.statement import compose, unnest
from server.errors import DomainError, IdempotencyConflict, NotFound
from server.profile.domain import DeviceReport, is_device_compliant, level_for_xp
from server.wallet import ledger
from server.wallet.domain import RewardDecision, RewardParams, decide_reward
from server.wallet.ledger import NewEntry, RefKind, WalletState

AUDIT_SCOPE = "task"
TASK_REWARDS_PKEY = "pk_task_rewards"


class TaskIdTaken(Exception):
    """S4 hit the task_rewards primary key: a concurrent call recorded a task id first."""


@dataclass(frozen=True, slots=True)
class ValidCall:
    """One validated RecordTaskAccepted call (server.wallet.rewards.validate)."""

    ctx: RequestContext
    task_id: str
    user_id: uuid.UUID
    tier: str
    quality: int
    reviewer_ids: tuple[uuid.UUID, ...]
    venture_id: uuid.UUID
    accepted_at: datetime
    accepted_day: date
    payload_hash: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """A reward this transaction wrote (RewardView is built from it by the caller)."""

    call: ValidCall
    decision: RewardDecision
    entry: ledger.EntryView | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Replay:
    """The call names a task id already stored (before this batch or earlier in it) with
    the same payload: the caller answers with the stored reward, replay = true."""

    task_id: str


Outcome = Recorded | Replay | DomainError


# --- statements -----------------------------------------------------------------------------

# S1 (through SQLAlchemy, so the adapter issues BEGIN first).
_LOCK_ASSIGNEES = (
    "SELECT w.user_id, w.id, w.buz_balance, w.pending_lock, w.head_seq, w.head_hash,"
    " u.kyc_status, p.rep_milli, p.xp"
    " FROM wallets w JOIN users u ON u.id = w.user_id JOIN profiles p ON p.user_id = w.user_id"
    " WHERE w.user_id = ANY($1::uuid[]) ORDER BY w.id"
    " FOR UPDATE OF w FOR NO KEY UPDATE OF p"
)
# S2: one row of parallel arrays (asyncpg decodes them natively; no JSON).
_FACTS = compose(
    (
        "",
        "SELECT s.tasks AS stored_tasks, s.hashes AS stored_hashes,"
        "  i.users AS issued_users, i.days AS issued_days, i.amounts AS issued_amounts,"
        "  v.ids AS venture_ids, r.ids AS reviewer_ids, r.reps AS reviewer_reps,"
        "  d.users AS device_users, d.compliant AS device_compliant, d.at AS device_at"
        " FROM (SELECT array_agg(task_id) AS tasks, array_agg(payload_hash) AS hashes"
        "   FROM task_rewards WHERE task_id = ANY(CAST({task_ids} AS text[]))) s,"
        "  (SELECT array_agg(x.user_id) AS users, array_agg(x.day) AS days,"
        "   array_agg(x.buz_issued) AS amounts FROM daily_user_stats x"
        "   JOIN unnest(CAST({day_users} AS uuid[]), CAST({days} AS date[])) AS k(user_id, day)"
        "   ON x.user_id = k.user_id AND x.day = k.day) i,"
        "  (SELECT array_agg(id) AS ids FROM ventures"
        "   WHERE id = ANY(CAST({venture_ids} AS uuid[]))) v,"
        "  (SELECT array_agg(user_id) AS ids, array_agg(rep_milli) AS reps FROM profiles"
        "   WHERE user_id = ANY(CAST({reviewer_ids} AS uuid[]))) r,"
        # The latest report per assignee, the order of server.profile.users.posture_of.
        "  (SELECT array_agg(a.user_id) AS users, array_agg(l.compliant) AS compliant,"
        "   array_agg(l.reported_at) AS at FROM unnest(CAST({user_ids} AS uuid[])) AS a(user_id)"
        "   CROSS JOIN LATERAL (SELECT compliant, reported_at FROM device_posture_reports"
        "    WHERE user_id = a.user_id ORDER BY reported_at DESC, created_at DESC LIMIT 1) l) d",
    ),
)
# S3: the audit heads, created if need be and locked.
_LOCK_HEADS = compose(("", audit.HEADS_UPSERT))
_REWARD_COLUMNS_SQL = (
    ("task_id", "text"),
    ("user_id", "uuid"),
    ("venture_id", "uuid"),
    ("tier", "text"),
    ("quality", "integer"),
    ("reviewer_ids", "text"),  # comma-joined (unnest flattens arrays of arrays)
    ("accepted_at", "timestamptz"),
    ("accepted_day", "date"),
    ("payload_hash", "text"),
    ("reviewer_cred_milli", "integer"),
    ("buz_computed", "bigint"),
    ("buz_awarded", "bigint"),
    ("buz_capped", "bigint"),
    ("withheld_reasons", "text"),  # comma-joined
    ("xp_awarded", "bigint"),
    ("entry_wallet_id", "uuid"),
    ("entry_seq", "bigint"),
)
_DAILY_COLUMNS_SQL = (("user_id", "uuid"), ("day", "date"), ("xp", "bigint"), ("buz", "bigint"))
_METRICS_COLUMNS_SQL = (("user_id", "uuid"), ("tasks", "bigint"), ("quality_sum", "bigint"))
_PROFILE_COLUMNS_SQL = (("user_id", "uuid"), ("xp", "bigint"), ("level", "integer"))
_REWARD_CTES = (
    "reward AS ("  # noqa: S608 (constant names and casts; values are binds)
    " INSERT INTO task_rewards (task_id, user_id, venture_id, tier, quality, reviewer_ids,"
    "  accepted_at, accepted_day, payload_hash, reviewer_cred_milli, buz_computed,"
    "  buz_awarded, buz_capped, withheld_reasons, xp_awarded, ledger_entry_id)"
    " SELECT r.task_id, r.user_id, r.venture_id, r.tier, r.quality,"
    "  string_to_array(r.reviewer_ids, ','), r.accepted_at, r.accepted_day, r.payload_hash,"
    "  r.reviewer_cred_milli, r.buz_computed, r.buz_awarded, r.buz_capped,"
    "  string_to_array(r.withheld_reasons, ','), r.xp_awarded, le.id"
    f" FROM {unnest('r_', _REWARD_COLUMNS_SQL, 'r')}"
    " LEFT JOIN ledger_entries_new le"
    "  ON le.wallet_id = r.entry_wallet_id AND le.seq = r.entry_seq"
    " RETURNING task_id, created_at),"
    " daily AS ("
    " INSERT INTO daily_user_stats (user_id, day, xp_gain, buz_issued)"
    f" SELECT d.user_id, d.day, d.xp, d.buz FROM {unnest('d_', _DAILY_COLUMNS_SQL, 'd')}"
    " ON CONFLICT (user_id, day) DO UPDATE SET"
    "  xp_gain = daily_user_stats.xp_gain + EXCLUDED.xp_gain,"
    "  buz_issued = daily_user_stats.buz_issued + EXCLUDED.buz_issued),"
    " metrics AS ("
    " INSERT INTO user_metrics (user_id, tasks_accepted, quality_sum, quality_count)"
    " SELECT m.user_id, m.tasks, m.quality_sum, m.tasks"
    f" FROM {unnest('m_', _METRICS_COLUMNS_SQL, 'm')}"
    " ON CONFLICT (user_id) DO UPDATE SET"
    "  tasks_accepted = user_metrics.tasks_accepted + EXCLUDED.tasks_accepted,"
    "  quality_sum = user_metrics.quality_sum + EXCLUDED.quality_sum,"
    "  quality_count = user_metrics.quality_count + EXCLUDED.quality_count,"
    "  updated_at = now()),"
    " profile AS ("
    " UPDATE profiles p SET xp = p.xp + x.xp, level = x.level, updated_at = now()"
    f" FROM {unnest('p_', _PROFILE_COLUMNS_SQL, 'x')} WHERE p.user_id = x.user_id"
    " RETURNING p.user_id)"
)
_RECORD = compose(
    ("", "WITH "),
    ("", ledger.ENTRIES_CTES),
    ("", ", "),
    ("", _REWARD_CTES),
    ("", ", "),
    ("", audit.EVENTS_CTES),
    (
        "",
        " SELECT (SELECT array_agg(task_id) FROM reward) AS reward_tasks,"
        " (SELECT array_agg(created_at) FROM reward) AS reward_created,"
        " (SELECT array_agg(id) FROM ledger_entries_new) AS entry_ids,"
        " (SELECT array_agg(wallet_id) FROM ledger_entries_new) AS entry_wallets,"
        " (SELECT array_agg(seq) FROM ledger_entries_new) AS entry_seqs,"
        " (SELECT count(*) FROM wallet_heads_moved) AS wallets_moved,"
        " (SELECT count(*) FROM profile) AS profiles_moved,"
        " (SELECT count(*) FROM audit_events_new) AS events,"
        " (SELECT count(*) FROM audit_heads_moved) AS heads_moved",
    ),
)


# --- the fold -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Write:
    call: ValidCall
    decision: RewardDecision
    level: int
    entry: NewEntry | None
    draft: DraftEvent
    event: NewEvent | None = None  # chained once the heads are locked (S3)


@dataclass(slots=True)
class _Fold:
    """The batch's state as calls are applied in order: locked wallets move past each
    call's entry, XP and the day's issued BUZ accumulate."""

    params: RewardParams
    now: datetime
    assignees: Mapping[uuid.UUID, Any]
    wallets: dict[uuid.UUID, WalletState]
    xp: dict[uuid.UUID, int]
    stored: Mapping[str, str]  # task id → payload hash, stored before this transaction
    issued: dict[tuple[uuid.UUID, date], int]
    ventures: frozenset[uuid.UUID]
    reviewer_reps: Mapping[uuid.UUID, int]
    devices: Mapping[uuid.UUID, DeviceReport]
    writes: list[_Write] = field(default_factory=list)
    written: dict[str, str] = field(default_factory=dict)  # task id → payload hash, this batch

    def apply(self, call: ValidCall) -> Replay | _Write:
        seen = self.written.get(call.task_id) or self.stored.get(call.task_id)
        if seen is not None:  # a recorded task id answers before an unknown assignee
            if seen != call.payload_hash:
                raise _conflict(call)
            return Replay(call.task_id)
        assignee = self.assignees.get(call.user_id)
        if assignee is None:
            raise NotFound("assignee not found", metadata={"user_id": str(call.user_id)})
        if call.venture_id not in self.ventures:
            raise NotFound("venture not found", metadata={"venture_id": str(call.venture_id)})
        for reviewer in call.reviewer_ids:
            if reviewer not in self.reviewer_reps:
                raise NotFound("reviewer not found", metadata={"reviewer_id": str(reviewer)})
        params = self.params
        device_compliant = True
        if params.require_device:
            device_compliant = is_device_compliant(
                self.devices.get(call.user_id), self.now, params.max_report_age
            )
        day_key = (call.user_id, call.accepted_day)
        decision = decide_reward(
            tier=call.tier,
            quality=call.quality,
            reviewer_reps_milli=[self.reviewer_reps[r] for r in call.reviewer_ids],
            kyc_status=assignee.kyc_status if params.require_kyc else "PASSED",
            rep_milli=int(assignee.rep_milli),
            device_compliant=device_compliant,
            issued_today=self.issued.get(day_key, 0),
            tier_base=params.tier_base,
            quality_multiplier=params.quality_multiplier,
            cred_low_milli=params.cred_low_milli,
            cred_high_milli=params.cred_high_milli,
            min_rep=params.min_rep,
            daily_cap=params.daily_cap,
        )
        xp = self.xp[call.user_id] + decision.xp
        level = level_for_xp(xp, params.level_thresholds)
        wallet = self.wallets[call.user_id]
        entry = None
        if decision.awarded > 0:
            entry = ledger.prepare_entry(
                wallet,
                call.ctx,
                type=ledger.EntryType.ISSUE,
                amount=decision.awarded,
                ref_kind=RefKind.TASK,
                ref_id=call.task_id,
            )
        draft = audit.draft(
            call.ctx,
            AuditEvent(
                action="task.accepted",
                scope=AUDIT_SCOPE,
                ref_id=call.task_id,
                details=_audit_details(call, decision, entry, level),
            ),
        )
        # Everything for this call is computed: only now move the batch's state past it.
        if entry is not None:
            ledger.advance(wallet, entry)
        self.xp[call.user_id] = xp
        self.issued[day_key] = self.issued.get(day_key, 0) + decision.awarded
        self.written[call.task_id] = call.payload_hash
        write = _Write(call, decision, level, entry, draft)
        self.writes.append(write)
        return write


def _conflict(call: ValidCall) -> IdempotencyConflict:
    return IdempotencyConflict(
        "task_id was already recorded with a different payload",
        metadata={"task_id": call.task_id},
    )


def _audit_details(
    call: ValidCall, decision: RewardDecision, entry: NewEntry | None, level: int
) -> dict[str, Any]:
    return {
        "user_id": str(call.user_id),
        "venture_id": str(call.venture_id),
        "tier": call.tier,
        "quality": call.quality,
        "reviewer_count": len(call.reviewer_ids),
        "accepted_day": call.accepted_day.isoformat(),
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


# --- the transaction ------------------------------------------------------------------------


async def record_batch(
    session: AsyncSession, calls: Sequence[ValidCall], params: RewardParams
) -> list[Outcome]:
    """Apply `calls` in one transaction (the module docstring); one outcome per call."""
    conn = await session.connection()
    users = sorted({call.user_id for call in calls})
    # S1: lock the assignees' wallets and profiles (SQLAlchemy: its adapter issues BEGIN)
    locked = (await conn.exec_driver_sql(_LOCK_ASSIGNEES, (users,))).all()
    db = await Driver.of(conn)
    assignees = {row.user_id: row for row in locked}
    # S2: facts read under the locks
    day_keys = sorted({(call.user_id, call.accepted_day) for call in calls})
    facts = await db.fetchrow(
        _FACTS.sql,
        _FACTS.args(
            {
                "task_ids": sorted({call.task_id for call in calls}),
                "day_users": [user for user, _ in day_keys],
                "days": [day for _, day in day_keys],
                "venture_ids": sorted({call.venture_id for call in calls}),
                "reviewer_ids": sorted({r for call in calls for r in call.reviewer_ids}),
                "user_ids": list(assignees),
            }
        ),
    )
    fold = _Fold(
        params=params,
        now=datetime.now(UTC),
        assignees=assignees,
        wallets={row.user_id: ledger.wallet_state(row) for row in locked},
        xp={row.user_id: int(row.xp) for row in locked},
        stored=dict(_pairs(facts["stored_tasks"], facts["stored_hashes"])),
        issued={
            (u, d): int(a)
            for u, d, a in zip(
                facts["issued_users"] or (),
                facts["issued_days"] or (),
                facts["issued_amounts"] or (),
                strict=True,
            )
        },
        ventures=frozenset(facts["venture_ids"] or ()),
        reviewer_reps={u: int(r) for u, r in _pairs(facts["reviewer_ids"], facts["reviewer_reps"])},
        devices={
            u: DeviceReport(compliant=bool(c), reported_at=at)
            for u, c, at in zip(
                facts["device_users"] or (),
                facts["device_compliant"] or (),
                facts["device_at"] or (),
                strict=True,
            )
        },
    )
    outcomes: list[Outcome | _Write] = []
    for call in calls:
        try:
            outcomes.append(fold.apply(call))
        except DomainError as error:
            outcomes.append(error)
    if not fold.writes:
        return [o for o in outcomes if not isinstance(o, _Write)]
    # S3: lock the audit heads (last, held shortest) and chain the events to them
    head_rows = await db.fetch(
        _LOCK_HEADS.sql, _LOCK_HEADS.args(audit.head_params(w.draft.chain_id for w in fold.writes))
    )
    heads = {row["chain_id"]: (int(row["seq"]), str(row["hash"])) for row in head_rows}
    for w in fold.writes:
        w.event = w.draft.chain(*heads[w.draft.chain_id])
        heads[w.draft.chain_id] = (w.event.seq, w.event.hash)
    # S4: write it all
    try:
        written = await db.fetchrow(_RECORD.sql, _RECORD.args(_record_values(fold.writes)))
    except IntegrityError as error:
        if getattr(error.orig, "constraint_name", None) == TASK_REWARDS_PKEY:
            raise TaskIdTaken from error
        raise
    _check_written(written, fold.writes)
    created = dict(_pairs(written["reward_tasks"], written["reward_created"]))
    entry_ids = {
        (w, s): int(i)
        for i, w, s in zip(
            written["entry_ids"] or (),
            written["entry_wallets"] or (),
            written["entry_seqs"] or (),
            strict=True,
        )
    }
    return [
        Recorded(
            call=o.call,
            decision=o.decision,
            entry=(
                None if o.entry is None else o.entry.view(entry_ids[o.entry.wallet_id, o.entry.seq])
            ),
            created_at=created[o.call.task_id],
        )
        if isinstance(o, _Write)
        else o
        for o in outcomes
    ]


def _pairs(left: Sequence[Any] | None, right: Sequence[Any] | None) -> zip[tuple[Any, Any]]:
    return zip(left or (), right or (), strict=True)


def _check_written(written: Any, writes: Sequence[_Write]) -> None:
    entries = [w.entry for w in writes if w.entry is not None]
    expected = (
        len(writes),
        len(entries),
        len({e.wallet_id for e in entries}),
        len({w.call.user_id for w in writes}),
        len(writes),
        len({w.draft.chain_id for w in writes}),
    )
    got = (
        len(written["reward_tasks"] or ()),
        len(written["entry_ids"] or ()),
        int(written["wallets_moved"]),
        int(written["profiles_moved"]),
        int(written["events"]),
        int(written["heads_moved"]),
    )
    if got != expected:
        # Rows locked by S1/S2 moved under the locks: a bug, never a client error.
        raise RuntimeError(f"task reward batch wrote {got}, expected {expected}")


def _record_values(writes: Sequence[_Write]) -> dict[str, Any]:
    entries = [w.entry for w in writes if w.entry is not None]
    # Events in chain order per chain (as prepared); entries likewise per wallet.
    values: dict[str, Any] = {**ledger.entry_arrays(entries)}
    values.update(audit.event_arrays([w.event for w in writes if w.event is not None]))
    rewards: dict[str, list[Any]] = {f"r_{name}": [] for name, _ in _REWARD_COLUMNS_SQL}
    daily: dict[tuple[uuid.UUID, date], list[int]] = {}
    metrics: dict[uuid.UUID, list[int]] = {}
    profiles: dict[uuid.UUID, list[int]] = {}
    for w in writes:
        call, decision = w.call, w.decision
        row = {
            "task_id": call.task_id,
            "user_id": call.user_id,
            "venture_id": call.venture_id,
            "tier": call.tier,
            "quality": call.quality,
            "reviewer_ids": ",".join(str(r) for r in call.reviewer_ids),
            "accepted_at": call.accepted_at,
            "accepted_day": call.accepted_day,
            "payload_hash": call.payload_hash,
            "reviewer_cred_milli": decision.cred_milli,
            "buz_computed": decision.computed,
            "buz_awarded": decision.awarded,
            "buz_capped": decision.capped,
            "withheld_reasons": ",".join(str(r) for r in decision.reasons),
            "xp_awarded": decision.xp,
            "entry_wallet_id": w.entry.wallet_id if w.entry else None,
            "entry_seq": w.entry.seq if w.entry else None,
        }
        for name, value in row.items():
            rewards[f"r_{name}"].append(value)
        day = daily.setdefault((call.user_id, call.accepted_day), [0, 0])
        day[0] += decision.xp
        day[1] += decision.awarded
        metric = metrics.setdefault(call.user_id, [0, 0])
        metric[0] += 1
        metric[1] += call.quality
        profile = profiles.setdefault(call.user_id, [0, 0])
        profile[0] += decision.xp
        profile[1] = w.level  # the level after the user's last award of the batch
    values.update(rewards)
    values["d_user_id"] = [user for user, _ in daily]
    values["d_day"] = [day for _, day in daily]
    values["d_xp"] = [xp for xp, _ in daily.values()]
    values["d_buz"] = [buz for _, buz in daily.values()]
    values["m_user_id"] = list(metrics)
    values["m_tasks"] = [tasks for tasks, _ in metrics.values()]
    values["m_quality_sum"] = [total for _, total in metrics.values()]
    values["p_user_id"] = list(profiles)
    values["p_xp"] = [xp for xp, _ in profiles.values()]
    values["p_level"] = [level for _, level in profiles.values()]
    return values
