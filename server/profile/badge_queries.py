"""SQL of badges, awards and the badge job (its state, the users it evaluates, their facts)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.core.errors import AlreadyExists, NotFound
from server.core.pagination import TimeKey
from server.profile.badge_rules import AwardView, BadgeView, MetricFacts
from server.profile.domain import AwardStatus, BadgeRuleType
from server.profile.gains import COUNTERS
from server.profile.queries import POSTURE_LOOKBACK_DAYS

Conn = AsyncSession | AsyncConnection

# --- badges -----------------------------------------------------------------------------------

_BADGE_COLUMNS = (
    "b.id, b.code, b.title, b.description, b.icon, b.rule_type, b.rule, b.created_at,"
    " b.updated_at, (SELECT count(*) FROM badge_awards a WHERE a.badge_id = b.id"
    " AND a.status = 'ACTIVE') AS awards"
)
_BADGE = text(f"SELECT {_BADGE_COLUMNS} FROM badges b WHERE b.code = :code")  # noqa: S608
_LIST_BADGES = text(
    f"SELECT {_BADGE_COLUMNS} FROM badges b"  # noqa: S608
    " WHERE (CAST(:rule_type AS text) IS NULL OR b.rule_type = :rule_type)"
    " AND (CAST(:after AS text) IS NULL OR b.code > :after) ORDER BY b.code LIMIT :limit"
)
_INSERT_BADGE = text(
    "INSERT INTO badges (code, title, description, icon, rule_type, rule)"
    " VALUES (:code, :title, :description, :icon, :rule_type, CAST(:rule AS jsonb))"
    " ON CONFLICT (code) DO NOTHING RETURNING id"
)
_RULE_BADGES = text(
    "SELECT id, code, rule_type, rule FROM badges WHERE rule_type <> :manual ORDER BY code"
)


def _badge(row: Any) -> BadgeView:
    return BadgeView(
        badge_id=row.id,
        code=row.code,
        title=row.title,
        description=row.description,
        icon=row.icon,
        rule_type=row.rule_type,
        rule=row.rule or {},
        award_count=int(row.awards),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def badge(conn: Conn, code: str, *, lock: bool = False) -> BadgeView:
    statement = _BADGE if not lock else text(_BADGE.text + " FOR UPDATE OF b")
    row = (await conn.execute(statement, {"code": code})).first()
    if row is None:
        raise NotFound("badge not found", metadata={"code": code})
    return _badge(row)


async def list_badges(
    conn: Conn, *, rule_type: str | None, after: str | None, limit: int
) -> list[BadgeView]:
    rows = await conn.execute(
        _LIST_BADGES, {"rule_type": rule_type, "after": after, "limit": limit}
    )
    return [_badge(row) for row in rows]


async def insert_badge(session: AsyncSession, values: Mapping[str, Any]) -> None:
    params = {**values, "rule": json.dumps(values["rule"])}
    if (await session.execute(_INSERT_BADGE, params)).first() is None:
        raise AlreadyExists("a badge with this code exists", metadata={"code": values["code"]})


async def update_badge(session: AsyncSession, code: str, values: Mapping[str, Any]) -> None:
    sets = ", ".join(
        f"{name} = CAST(:{name} AS jsonb)" if name == "rule" else f"{name} = :{name}"
        for name in values  # names from BADGE_EDITABLE
    )
    params = {k: json.dumps(v) if k == "rule" else v for k, v in values.items()}
    await session.execute(
        text(f"UPDATE badges SET {sets}, updated_at = now() WHERE code = :code"),  # noqa: S608
        {**params, "code": code},
    )


async def rule_badges(conn: Conn) -> list[tuple[uuid.UUID, str, str, Mapping[str, Any]]]:
    """(id, code, rule type, rule) of every THRESHOLD and COMPOSITE badge."""
    rows = await conn.execute(_RULE_BADGES, {"manual": BadgeRuleType.MANUAL.value})
    return [(r.id, r.code, r.rule_type, r.rule) for r in rows]


# --- awards -----------------------------------------------------------------------------------

_AWARD_COLUMNS = (
    "a.id, a.user_id, b.code, b.title, b.icon, a.status, a.awarded_by, a.awarded_at,"
    " a.metrics, a.revoked_at, a.revoked_by, a.revoke_reason"
    " FROM badge_awards a JOIN badges b ON b.id = a.badge_id"
)
_AWARD = text(f"SELECT {_AWARD_COLUMNS} WHERE a.user_id = :user_id AND b.code = :code")
_LIST_AWARDS = text(
    f"SELECT {_AWARD_COLUMNS} WHERE a.user_id = :user_id"
    " AND (:include_revoked OR a.status = 'ACTIVE')"
    " AND (CAST(:before_at AS timestamptz) IS NULL"
    "  OR (a.awarded_at, a.id) < (:before_at, CAST(:before_id AS uuid)))"
    " ORDER BY a.awarded_at DESC, a.id DESC LIMIT :limit"
)
_INSERT_AWARDS = text(
    "INSERT INTO badge_awards (user_id, badge_id, metrics, awarded_by, xp_awarded)"
    " SELECT * FROM unnest(CAST(:user_id AS uuid[]), CAST(:badge_id AS uuid[]),"
    " CAST(:metrics AS jsonb[]), CAST(:awarded_by AS text[]), CAST(:xp AS integer[]))"
    " ON CONFLICT (user_id, badge_id) DO NOTHING RETURNING user_id, badge_id"
)
_REVOKE = text(
    "UPDATE badge_awards a SET status = :revoked, revoked_at = now(), revoked_by = :by,"
    " revoke_reason = :reason FROM badges b WHERE b.id = a.badge_id AND b.code = :code"
    " AND a.user_id = :user_id AND a.status = :active RETURNING a.id"
)


def _award(row: Any) -> AwardView:
    return AwardView(
        award_id=row.id,
        user_id=row.user_id,
        badge_code=row.code,
        badge_title=row.title,
        badge_icon=row.icon,
        status=row.status,
        awarded_by=row.awarded_by or "",
        awarded_at=row.awarded_at,
        metric_snapshot=row.metrics or {},
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by or "",
        revoke_reason=row.revoke_reason or "",
    )


async def award(conn: Conn, user_id: uuid.UUID, code: str) -> AwardView | None:
    row = (await conn.execute(_AWARD, {"user_id": user_id, "code": code})).first()
    return _award(row) if row is not None else None


async def insert_awards(
    session: AsyncSession,
    awards: Sequence[tuple[uuid.UUID, uuid.UUID, Mapping[str, Any], str | None]],
    xp: int,
) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Insert (user, badge, snapshot, awarded_by) awards; the (user, badge) pairs inserted
    (a pair awarded before is skipped: once per user and badge)."""
    rows = await session.execute(
        _INSERT_AWARDS,
        {
            "user_id": [a[0] for a in awards],
            "badge_id": [a[1] for a in awards],
            "metrics": [json.dumps(a[2]) for a in awards],
            "awarded_by": [a[3] for a in awards],
            "xp": [xp] * len(awards),
        },
    )
    return {(row.user_id, row.badge_id) for row in rows}


async def revoke(
    session: AsyncSession, *, user_id: uuid.UUID, code: str, by: str, reason: str
) -> bool:
    """ACTIVE → REVOKED, once; whether this call did it."""
    params = {
        "user_id": user_id,
        "code": code,
        "by": by,
        "reason": reason,
        "active": AwardStatus.ACTIVE.value,
        "revoked": AwardStatus.REVOKED.value,
    }
    return (await session.execute(_REVOKE, params)).first() is not None


async def list_awards(
    conn: Conn,
    user_id: uuid.UUID,
    *,
    include_revoked: bool,
    before: TimeKey | None,
    limit: int,
) -> list[AwardView]:
    rows = await conn.execute(
        _LIST_AWARDS,
        {
            "user_id": user_id,
            "include_revoked": include_revoked,
            "before_at": before[0] if before else None,
            "before_id": before[1] if before else None,
            "limit": limit,
        },
    )
    return [_award(row) for row in rows]


# --- the badge job ----------------------------------------------------------------------------

_LOCK_STATE = text(
    "INSERT INTO badge_evaluation_state (id) VALUES (true) ON CONFLICT (id) DO UPDATE"
    " SET id = true RETURNING last_full_day, changed_since, full_pass_requested_at,"
    " now() AS started"
)
# A full pass answers a request made before it started (its reads then see what the
# requester committed); a request made while it ran stays for the next run.
_SAVE_STATE = text(
    "UPDATE badge_evaluation_state SET changed_since = :since,"
    " last_full_day = COALESCE(:full_day, last_full_day),"
    " full_pass_requested_at = CASE WHEN :full_day IS NOT NULL"
    " AND full_pass_requested_at <= :since THEN NULL ELSE full_pass_requested_at END"
)
_REQUEST_FULL_PASS = text(
    "INSERT INTO badge_evaluation_state (id, full_pass_requested_at) VALUES (true, now())"
    " ON CONFLICT (id) DO UPDATE SET full_pass_requested_at = now()"
)
_ALL_USERS = text("SELECT user_id FROM profiles ORDER BY user_id")
# Users whose metrics moved since `since`: every writer of a metric touches
# user_metrics.updated_at (server/profile/gains.py); conversions are read where the
# conversion service writes them.
_CHANGED_USERS = text(
    "SELECT user_id FROM user_metrics WHERE updated_at >= :since"
    " UNION SELECT user_id FROM conversion_requests WHERE status = 'APPROVED'"
    " AND COALESCE(resolved_at, updated_at) >= :since ORDER BY 1"
)
# Per user index lookups (posture reports by (user_id, reported_at), awards by (user_id,
# badge_id)): measured faster for a chunk than aggregating the tables against the chunk.
_FACTS = text(
    "SELECT u.id AS user_id, u.joined_at, u.kyc_status, p.level, p.rep_milli, "  # noqa: S608
    + ", ".join(f"COALESCE(m.{c}, 0) AS {c}" for c in COUNTERS)
    + ", (SELECT count(*) FROM conversion_requests c WHERE c.user_id = u.id"
    "  AND c.status = 'APPROVED') AS approved_conversions,"
    " (SELECT array_agg(DISTINCT CAST(timezone('UTC', r.reported_at) AS date))"
    "  FROM device_posture_reports r WHERE r.user_id = u.id AND r.compliant"
    "  AND r.reported_at >= :posture_from) AS compliant_days,"
    " (SELECT array_agg(a.badge_id) FROM badge_awards a WHERE a.user_id = u.id) AS held"
    " FROM users u JOIN profiles p ON p.user_id = u.id"
    " LEFT JOIN user_metrics m ON m.user_id = u.id WHERE u.id = ANY(CAST(:ids AS uuid[]))"
)


@dataclass(frozen=True, slots=True)
class JobState:
    last_full_day: date | None
    changed_since: datetime | None
    full_pass_requested: bool
    started: datetime  # the database's time now: the next run's `changed_since`


async def lock_state(session: AsyncSession) -> JobState:
    """The job's state row, locked."""
    row = (await session.execute(_LOCK_STATE)).one()
    return JobState(
        row.last_full_day, row.changed_since, row.full_pass_requested_at is not None, row.started
    )


async def save_state(session: AsyncSession, *, since: datetime, full_day: date | None) -> None:
    await session.execute(_SAVE_STATE, {"since": since, "full_day": full_day})


async def request_full_pass(session: AsyncSession) -> None:
    """Make the job's next run a full pass (after a change to every user's metrics)."""
    await session.execute(_REQUEST_FULL_PASS)


async def all_users(conn: Conn) -> list[uuid.UUID]:
    return list((await conn.execute(_ALL_USERS)).scalars())


async def changed_users(conn: Conn, since: datetime) -> list[uuid.UUID]:
    return list((await conn.execute(_CHANGED_USERS, {"since": since})).scalars())


async def facts(
    conn: Conn, user_ids: Sequence[uuid.UUID], now: datetime
) -> list[tuple[uuid.UUID, MetricFacts, frozenset[uuid.UUID]]]:
    """Per user: the facts of their metrics and the badges they hold or held."""
    rows = await conn.execute(
        _FACTS,
        {"ids": list(user_ids), "posture_from": now - timedelta(days=POSTURE_LOOKBACK_DAYS)},
    )
    return [
        (
            row.user_id,
            MetricFacts(
                joined_at=row.joined_at,
                kyc_status=row.kyc_status,
                level=row.level,
                rep_milli=row.rep_milli,
                approved_conversions=int(row.approved_conversions),
                compliant_days=tuple(row.compliant_days or ()),
                **{c: int(getattr(row, c)) for c in COUNTERS},
            ),
            frozenset(row.held or ()),
        )
        for row in rows
    ]
