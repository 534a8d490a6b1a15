"""The profile package's SQL: users, profiles, device posture reports.

SQLAlchemy Core by default. The public profile read is a measured hot path: concurrent
GetProfile calls are coalesced into one constant statement for all their ids
(PROFILE_VIEWS, sent on the driver by Database.read_rows).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.core.errors import AlreadyExists, NotFound
from server.db.statement import sqlalchemy_text
from server.profile.domain import DeviceReport, Registration, UserView
from server.profile.models import DevicePostureReport, Profile, User
from server.wallet.models import Wallet

# deviceCompliantDays looks back at most this far (the longest badge rule asks for 90).
POSTURE_LOOKBACK_DAYS = 400

# The latest device report of each user in {user_ids}: the report measured last, and of two
# measured at the same instant the one that arrived last. Rows (user_id, compliant,
# reported_at); users without a report have no row. GetDevicePosture reads it as it is,
# RecordTaskAccepted's batch folds it into its facts statement.
LATEST_DEVICE_REPORTS = (
    "SELECT a.user_id, l.compliant, l.reported_at"
    " FROM unnest(CAST({user_ids} AS uuid[])) AS a(user_id)"
    " CROSS JOIN LATERAL (SELECT compliant, reported_at FROM device_posture_reports"
    "  WHERE user_id = a.user_id ORDER BY reported_at DESC, created_at DESC LIMIT 1) l"
)
_LATEST_DEVICE_REPORTS = sqlalchemy_text(LATEST_DEVICE_REPORTS)

# Columns match ProfileView's sources.
_PROFILE_COLUMNS = """
SELECT p.user_id, u.display_name, u.joined_at, p.nickname, p.bio, p.location,
       p.website_url, p.avatar_url, p.theme, p.is_public, p.level, p.xp, p.rep_milli,
       p.created_at, p.updated_at
FROM profiles p JOIN users u ON u.id = p.user_id
"""
# Hot path: asyncpg text, one constant statement for any number of ids.
PROFILE_VIEWS = _PROFILE_COLUMNS + "WHERE p.user_id = ANY($1::uuid[])"
_PROFILE_VIEW = sqlalchemy_text(_PROFILE_COLUMNS + "WHERE p.user_id = {user_id}")


# --- users ------------------------------------------------------------------------------------


async def insert_user(session: AsyncSession, reg: Registration, joined_at: datetime) -> uuid.UUID:
    """Create the user with an empty profile and wallet; ALREADY_EXISTS when the external id
    or the e-mail (in any case) is taken, naming the user who holds it."""
    user_id: uuid.UUID | None = (
        await session.execute(
            insert(User)
            .values(
                external_id=reg.external_id,
                email=reg.email,
                display_name=reg.display_name,
                joined_at=joined_at,
            )
            .on_conflict_do_nothing()
            .returning(User.id)
        )
    ).scalar()
    if user_id is None:
        holder = await _holder(session, reg)
        raise AlreadyExists(
            "a user with this external_id or email is already registered",
            metadata={"user_id": str(holder)} if holder else {},
        )
    await session.execute(insert(Profile).values(user_id=user_id))
    await session.execute(insert(Wallet).values(user_id=user_id))
    return user_id


async def _holder(session: AsyncSession, reg: Registration) -> uuid.UUID | None:
    found: uuid.UUID | None = (
        await session.execute(
            select(User.id).where(
                or_(
                    User.external_id == reg.external_id,
                    func.lower(User.email) == reg.email.lower(),
                )
            )
        )
    ).scalar()
    return found


async def load_user(session: AsyncSession, user_id: uuid.UUID) -> UserView:
    row = (
        await session.execute(
            select(User, Wallet.id.label("wallet_id"))
            .join(Wallet, Wallet.user_id == User.id)
            .where(User.id == user_id)
        )
    ).first()
    if row is None:
        raise NotFound("user not found")
    user: User = row.User
    return UserView(
        user_id=user.id,
        external_id=user.external_id,
        email=user.email,
        display_name=user.display_name,
        joined_at=user.joined_at,
        kyc_status=user.kyc_status,
        kyc_updated_at=user.kyc_updated_at,
        wallet_id=row.wallet_id,
        created_at=user.created_at,
    )


async def user_id_by_external_id(session: AsyncSession, external_id: str) -> uuid.UUID:
    found: uuid.UUID | None = (
        await session.execute(select(User.id).where(User.external_id == external_id))
    ).scalar()
    if found is None:
        raise NotFound("user not found")
    return found


async def require_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    if (await session.execute(select(User.id).where(User.id == user_id))).scalar() is None:
        raise NotFound("user not found")


async def lock_kyc_status(session: AsyncSession, user_id: uuid.UUID) -> str:
    """The user's KYC status, its row locked until the transaction ends (FOR NO KEY UPDATE:
    the key does not change, so inserts referencing the user are not blocked)."""
    found: str | None = (
        await session.execute(
            select(User.kyc_status).where(User.id == user_id).with_for_update(key_share=True)
        )
    ).scalar()
    if found is None:
        raise NotFound("user not found")
    return found


async def set_kyc_status(session: AsyncSession, user_id: uuid.UUID, status: str) -> None:
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(kyc_status=status, kyc_updated_at=func.now(), updated_at=func.now())
    )


# --- device posture ---------------------------------------------------------------------------


async def insert_posture_report(
    session: AsyncSession, user_id: uuid.UUID, compliant: bool, reported_at: datetime
) -> None:
    await session.execute(
        insert(DevicePostureReport).values(
            user_id=user_id, compliant=compliant, reported_at=reported_at
        )
    )


async def posture_facts(
    session: AsyncSession, user_id: uuid.UUID, now: datetime
) -> tuple[DeviceReport | None, list[tuple[date, bool]]]:
    """The user's latest report, and per UTC day of the lookback whether any report that
    day was compliant."""
    latest = (await session.execute(_LATEST_DEVICE_REPORTS, {"user_ids": [user_id]})).first()
    day = func.date(func.timezone("UTC", DevicePostureReport.reported_at))
    days = (
        await session.execute(
            select(day, func.bool_or(DevicePostureReport.compliant))
            .where(
                DevicePostureReport.user_id == user_id,
                DevicePostureReport.reported_at >= now - timedelta(days=POSTURE_LOOKBACK_DAYS),
            )
            .group_by(day)
        )
    ).all()
    report = (
        DeviceReport(compliant=latest.compliant, reported_at=latest.reported_at) if latest else None
    )
    return report, [(d, bool(c)) for d, c in days]


# --- profiles ---------------------------------------------------------------------------------


async def profile_row(session: AsyncSession, user_id: uuid.UUID) -> Mapping[Any, Any] | None:
    """The profile view's row inside `session`'s transaction (after a write)."""
    return (await session.execute(_PROFILE_VIEW, {"user_id": user_id})).mappings().first()


async def update_profile(
    session: AsyncSession, user_id: uuid.UUID, values: Mapping[str, Any]
) -> None:
    updated = (
        await session.execute(
            update(Profile)
            .where(Profile.user_id == user_id)
            .values(**values, updated_at=func.now())
            .returning(Profile.user_id)
        )
    ).scalar()
    if updated is None:
        raise NotFound("profile not found")


async def profile_public(conn: AsyncSession | AsyncConnection, user_id: uuid.UUID) -> bool | None:
    """Whether the user's profile is public; None when there is no such user."""
    found: bool | None = (
        await conn.execute(select(Profile.is_public).where(Profile.user_id == user_id))
    ).scalar()
    return found
