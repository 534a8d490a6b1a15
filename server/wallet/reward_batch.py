"""RecordTaskAccepted's transaction, for a batch of calls (server/core/batching.py): its
statements (a measured hot path: raw asyncpg statements, see below) and the flow.

One READ COMMITTED transaction (Database.run retries 40001/40P01 and lost connections)
of four statements, six round trips with BEGIN and COMMIT, whatever the batch's size:

S1. lock the assignees' wallet rows FOR UPDATE and profile rows FOR NO KEY UPDATE (joined
    with KYC status, reputation and XP), in ascending wallet id (queries.lock_wallets'
    order). The wallet lock serialises one user's awards, so the day's issued BUZ read
    next is current and the daily cap cannot be overrun; it also serialises duplicates of
    one task for one assignee. The profile is locked here because S4 moves its XP and
    level.
S2. one statement, after the locks (a READ COMMITTED statement's snapshot is taken when it
    starts, so it sees what the previous holders of the wallet locks committed): the
    stored payload hashes of the batch's task ids, BUZ issued on each (assignee, UTC day),
    which ventures exist, the reviewers' reputations and each assignee's latest device
    report (server.profile.queries.LATEST_DEVICE_REPORTS, the same statement GetDevicePosture
    reads). Then, in Python, call by call in arrival order: server/wallet/reward_fold.py
    decides each call as if it were alone, with the ISSUE ledger entry chained to the
    wallet's head and the `task.accepted` audit event drafted. A task id twice in one batch:
    the later call is a replay (or a conflict) of the earlier.
S3. lock the heads of the audit chains the events go to, in ascending chain order
    (server.audit.queries.HEADS_UPSERT), and chain the events to them. Audit heads are
    shared by every writer, so they are taken last and held shortest: the fold above runs
    before, under the batch's own wallet locks only. The lock order stays wallet →
    profile → audit head, the order of every other writer, so they cannot deadlock.
S4. one statement (data-modifying CTEs over arrays): the ledger entries and wallet heads
    (server.wallet.queries.ENTRIES_CTES), the reward records, daily_user_stats (buz_issued
    per acceptance day, xp_gain per day of award: server.profile.gains' rules), user_metrics
    (tasks_accepted, quality), the profiles' XP, level and first folded day, the audit
    events and chain heads (server.audit.queries.EVENTS_CTES).

A task id stored concurrently by a call naming ANOTHER assignee does not share a wallet
lock: S4 hits the task_rewards primary key (23505, raised here as TaskIdTaken) once the
other transaction commits, and the whole batch rolls back; the caller (server.wallet.
service) then runs each call of the batch on its own.

S2 to S4 run on the asyncpg connection under the session (module-constant statements,
prepared once per connection; no SQLAlchemy compilation or result machinery) inside the
transaction SQLAlchemy's adapter began for S1; see server.db.driver.Driver.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import queries as audit_queries
from server.core.errors import DomainError
from server.core.params import BusinessParams
from server.db.driver import Driver
from server.db.statement import compose, unnest
from server.profile.domain import DeviceReport
from server.profile.queries import LATEST_DEVICE_REPORTS
from server.wallet import queries
from server.wallet.domain import ValidCall
from server.wallet.reward_fold import Fold, Outcome, Recorded, Write

TASK_REWARDS_PKEY = "pk_task_rewards"


class TaskIdTaken(Exception):
    """S4 hit the task_rewards primary key: a concurrent call recorded a task id first."""


# --- statements -------------------------------------------------------------------------------

# S1 (through SQLAlchemy, so the adapter issues BEGIN first).
_LOCK_ASSIGNEES = (
    "SELECT w.user_id, w.id, w.buz_balance, w.pending_lock, w.head_seq, w.head_hash,"
    " u.kyc_status, p.rep_milli, p.xp, p.rep_through"
    " FROM wallets w JOIN users u ON u.id = w.user_id JOIN profiles p ON p.user_id = w.user_id"
    " WHERE w.user_id = ANY($1::uuid[]) ORDER BY w.id"
    " FOR UPDATE OF w FOR NO KEY UPDATE OF p"
)
# S2: one row of parallel arrays (asyncpg decodes them natively; no JSON).
_FACTS = compose(
    (
        "",
        "SELECT s.tasks AS stored_tasks, s.hashes AS stored_hashes,"  # noqa: S608 (constants)
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
        "  (SELECT array_agg(l.user_id) AS users, array_agg(l.compliant) AS compliant,"
        f"   array_agg(l.reported_at) AS at FROM ({LATEST_DEVICE_REPORTS}) l) d",
    ),
)
# S3: the audit heads, created if need be and locked.
_LOCK_HEADS = compose(("", audit_queries.HEADS_UPSERT))
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
_PROFILE_COLUMNS_SQL = (
    ("user_id", "uuid"),
    ("xp", "bigint"),
    ("level", "integer"),
    ("day", "date"),
)
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
    " UPDATE profiles p SET xp = p.xp + x.xp, level = x.level,"
    "  rep_through = COALESCE(p.rep_through, x.day - 1)"
    f" FROM {unnest('p_', _PROFILE_COLUMNS_SQL, 'x')} WHERE p.user_id = x.user_id"
    " RETURNING p.user_id)"
)
_RECORD = compose(
    ("", "WITH "),
    ("", queries.ENTRIES_CTES),
    ("", ", "),
    ("", _REWARD_CTES),
    ("", ", "),
    ("", audit_queries.EVENTS_CTES),
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


# --- the transaction ------------------------------------------------------------------------


async def record_batch(
    session: AsyncSession, calls: Sequence[ValidCall], params: BusinessParams, now: datetime
) -> list[Outcome]:
    """Apply `calls` in one transaction (the module docstring) as of `now`; one outcome per
    call."""
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
    fold = Fold(
        params=params,
        now=now,
        assignees=assignees,
        wallets={row.user_id: queries.wallet_state(row) for row in locked},
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
    outcomes: list[Outcome | Write] = []
    for call in calls:
        try:
            outcomes.append(fold.apply(call))
        except DomainError as error:
            outcomes.append(error)
    if not fold.writes:
        return [o for o in outcomes if not isinstance(o, Write)]
    # S3: lock the audit heads (last, held shortest) and chain the events to them
    head_rows = await db.fetch(
        _LOCK_HEADS.sql,
        _LOCK_HEADS.args(audit_queries.head_params(w.draft.chain_id for w in fold.writes)),
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
        if isinstance(o, Write)
        else o
        for o in outcomes
    ]


def _pairs(left: Sequence[Any] | None, right: Sequence[Any] | None) -> zip[tuple[Any, Any]]:
    return zip(left or (), right or (), strict=True)


def _check_written(written: Any, writes: Sequence[Write]) -> None:
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


def _record_values(writes: Sequence[Write]) -> dict[str, Any]:
    entries = [w.entry for w in writes if w.entry is not None]
    # Events in chain order per chain (as prepared); entries likewise per wallet.
    values: dict[str, Any] = {**queries.entry_arrays(entries)}
    values.update(audit_queries.event_arrays([w.event for w in writes if w.event is not None]))
    rewards: dict[str, list[Any]] = {f"r_{name}": [] for name, _ in _REWARD_COLUMNS_SQL}
    daily: dict[tuple[uuid.UUID, date], list[int]] = {}
    metrics: dict[uuid.UUID, list[int]] = {}
    profiles: dict[uuid.UUID, list[Any]] = {}
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
        # XP counts for reputation on the day it is awarded (w.xp_day); BUZ for the daily
        # cap on the day of acceptance.
        daily.setdefault((call.user_id, w.xp_day), [0, 0])[0] += decision.xp
        daily.setdefault((call.user_id, call.accepted_day), [0, 0])[1] += decision.awarded
        metric = metrics.setdefault(call.user_id, [0, 0])
        metric[0] += 1
        metric[1] += call.quality
        profile = profiles.setdefault(call.user_id, [0, 0, w.xp_day])
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
    values["p_xp"] = [xp for xp, _, _ in profiles.values()]
    values["p_level"] = [level for _, level, _ in profiles.values()]
    values["p_day"] = [day for _, _, day in profiles.values()]
    return values
