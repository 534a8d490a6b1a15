"""Use cases for user accounts: registration, lookup, KYC status, device posture."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server import idempotency
from server.audit.append import AuditEvent, append
from server.context import ROLE_ADMIN, ROLE_SYSTEM, RequestContext
from server.convert import parse_uuid
from server.db.session import Database
from server.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from server.params import Parameters
from server.profile.domain import DeviceReport, device_compliant_days, is_device_compliant
from server.profile.models import KYC_STATUSES, DevicePostureReport, Profile, User
from server.wallet.models import Wallet

MAX_FUTURE_SKEW = timedelta(minutes=5)
# deviceCompliantDays looks back at most this far (the longest badge rule asks for 90).
POSTURE_LOOKBACK_DAYS = 400


@dataclass(frozen=True, slots=True)
class UserView:
    user_id: uuid.UUID
    external_id: str
    email: str
    display_name: str
    joined_at: datetime
    kyc_status: str
    kyc_updated_at: datetime | None
    wallet_id: uuid.UUID
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PostureView:
    user_id: uuid.UUID
    device_compliant: bool
    device_compliant_days: int
    last_report_compliant: bool
    last_reported_at: datetime | None
    compliant_until: datetime | None


def parse_user_id(raw: str, ctx: RequestContext, field: str = "user_id") -> uuid.UUID:
    """A UUID, or `me` for the caller. Malformed ids are INVALID_ARGUMENT."""
    if raw == "me":
        if ctx.principal is None:
            raise Unauthenticated("`me` needs a bearer token")
        raw = ctx.principal.user_id
    return parse_uuid(raw, field, "must be a UUID or `me`")


def is_privileged(ctx: RequestContext) -> bool:
    return ctx.principal is not None and ctx.principal.has(ROLE_ADMIN, ROLE_SYSTEM)


def require_self_or_privileged(ctx: RequestContext, target: uuid.UUID) -> None:
    """Account data is the user's own, or admin/system's: anyone else gets NOT_FOUND."""
    if is_privileged(ctx):
        return
    if ctx.principal is None or str(target) != ctx.principal.user_id:
        raise NotFound("user not found")


def _not_future(value: datetime, field: str, now: datetime) -> datetime:
    if value > now + MAX_FUTURE_SKEW:
        raise InvalidArgument.field(field, "must not be more than 5 minutes in the future")
    return value


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


class UserService:
    RPC = "smartstart.profile.v1.ProfileService"

    def __init__(self, database: Database, params: Parameters) -> None:
        self._db = database
        self._params = params

    async def register(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        external_id: str,
        email: str,
        display_name: str,
        joined_at: datetime | None,
    ) -> UserView:
        idempotency.validate_key(request_id)
        external_id = external_id.strip()
        email = email.strip()
        display_name = display_name.strip()
        if not 1 <= len(external_id) <= 128:
            raise InvalidArgument.field("external_id", "must be 1..128 characters")
        if not 3 <= len(email) <= 254 or "@" not in email[1:-1]:
            raise InvalidArgument.field("email", "must be an e-mail address of at most 254 chars")
        if not 1 <= len(display_name) <= 80:
            raise InvalidArgument.field("display_name", "must be 1..80 characters")
        now = datetime.now(UTC)
        joined = _not_future(joined_at, "joined_at", now) if joined_at else now
        scope = idempotency.scope_for(f"{self.RPC}/RegisterUser", ctx.actor_id)

        async def tx(session: AsyncSession) -> UserView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await load_user(session, uuid.UUID(stored["user_id"]))
            user_id = (
                await session.execute(
                    insert(User)
                    .values(
                        external_id=external_id,
                        email=email,
                        display_name=display_name,
                        joined_at=joined,
                    )
                    .on_conflict_do_nothing()
                    .returning(User.id)
                )
            ).scalar()
            if user_id is None:
                existing = (
                    await session.execute(
                        select(User.id).where(
                            (User.external_id == external_id)
                            | (func.lower(User.email) == email.lower())
                        )
                    )
                ).scalar()
                raise AlreadyExists(
                    "a user with this external_id or email is already registered",
                    metadata={"user_id": str(existing)} if existing else {},
                )
            await session.execute(insert(Profile).values(user_id=user_id))
            await session.execute(insert(Wallet).values(user_id=user_id))
            await append(
                session,
                ctx,
                AuditEvent(
                    action="user.registered",
                    scope="user",
                    ref_id=str(user_id),
                    details={"external_id": external_id, "joined_at": joined.isoformat()},
                ),
            )
            await idempotency.complete(session, scope, request_id, {"user_id": str(user_id)})
            return await load_user(session, user_id)

        return await self._db.run(tx)

    async def get(
        self, ctx: RequestContext, *, user_id: str | None, external_id: str | None
    ) -> UserView:
        async with self._db.transaction() as session:
            if external_id is not None:
                if not is_privileged(ctx):
                    raise PermissionDenied("lookup by external_id needs admin or system")
                found = (
                    await session.execute(select(User.id).where(User.external_id == external_id))
                ).scalar()
                if found is None:
                    raise NotFound("user not found")
                return await load_user(session, found)
            target = parse_user_id(user_id or "", ctx)
            require_self_or_privileged(ctx, target)
            return await load_user(session, target)

    async def set_kyc_status(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        user_id: str,
        status: str,
        note: str,
    ) -> UserView:
        idempotency.validate_key(request_id)
        target = parse_user_id(user_id, ctx)
        if status not in KYC_STATUSES:
            raise InvalidArgument.field("status", "must be NONE, PENDING, PASSED or FAILED")
        if len(note) > 500:
            raise InvalidArgument.field("note", "must be at most 500 characters")
        scope = idempotency.scope_for(f"{self.RPC}/SetKycStatus", ctx.actor_id)

        async def tx(session: AsyncSession) -> UserView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await load_user(session, target)
            previous = (
                await session.execute(
                    select(User.kyc_status).where(User.id == target).with_for_update()
                )
            ).scalar()
            if previous is None:
                raise NotFound("user not found")
            if previous != status:
                await session.execute(
                    update(User)
                    .where(User.id == target)
                    .values(kyc_status=status, kyc_updated_at=func.now(), updated_at=func.now())
                )
                await append(
                    session,
                    ctx,
                    AuditEvent(
                        action="user.kyc_status_set",
                        scope="user",
                        ref_id=str(target),
                        details={"from": previous, "to": status, "note": note},
                    ),
                )
            await idempotency.complete(session, scope, request_id, {"user_id": str(target)})
            return await load_user(session, target)

        return await self._db.run(tx)

    async def report_posture(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        user_id: str,
        compliant: bool,
        reported_at: datetime | None,
    ) -> PostureView:
        idempotency.validate_key(request_id)
        target = parse_user_id(user_id, ctx)
        if reported_at is None:
            raise InvalidArgument.field("reported_at", "is required")
        now = datetime.now(UTC)
        _not_future(reported_at, "reported_at", now)
        scope = idempotency.scope_for(f"{self.RPC}/ReportDevicePosture", ctx.actor_id)
        max_age = timedelta(hours=await self._params.get_int("device.max_report_age_hours"))

        async def tx(session: AsyncSession) -> PostureView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is None:
                exists = (await session.execute(select(User.id).where(User.id == target))).scalar()
                if exists is None:
                    raise NotFound("user not found")
                await session.execute(
                    insert(DevicePostureReport).values(
                        user_id=target, compliant=compliant, reported_at=reported_at
                    )
                )
                await append(
                    session,
                    ctx,
                    AuditEvent(
                        action="device.posture_reported",
                        scope="user",
                        ref_id=str(target),
                        details={"compliant": compliant, "reported_at": reported_at.isoformat()},
                    ),
                )
                await idempotency.complete(session, scope, request_id, {"user_id": str(target)})
            return await posture_of(session, target, datetime.now(UTC), max_age)

        return await self._db.run(tx)

    async def get_posture(self, ctx: RequestContext, *, user_id: str) -> PostureView:
        target = parse_user_id(user_id, ctx)
        require_self_or_privileged(ctx, target)
        max_age = timedelta(hours=await self._params.get_int("device.max_report_age_hours"))
        async with self._db.transaction() as session:
            exists = (await session.execute(select(User.id).where(User.id == target))).scalar()
            if exists is None:
                raise NotFound("user not found")
            return await posture_of(session, target, datetime.now(UTC), max_age)


async def posture_of(
    session: AsyncSession, user_id: uuid.UUID, now: datetime, max_age: timedelta
) -> PostureView:
    """A user's device compliance and streak as of `now`. The rule itself is
    server.profile.domain's; RecordTaskAccepted reads the latest report in its own
    statement (one round trip less) and applies the same rule."""
    latest = (
        await session.execute(
            select(DevicePostureReport.compliant, DevicePostureReport.reported_at)
            .where(DevicePostureReport.user_id == user_id)
            # Same measurement time: the report that arrived last wins.
            .order_by(DevicePostureReport.reported_at.desc(), DevicePostureReport.created_at.desc())
            .limit(1)
        )
    ).first()
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
    compliant = is_device_compliant(report, now, max_age)
    return PostureView(
        user_id=user_id,
        device_compliant=compliant,
        device_compliant_days=device_compliant_days(
            [(d, bool(c)) for d, c in days], now.astimezone(UTC).date()
        ),
        last_report_compliant=bool(latest and latest.compliant),
        last_reported_at=latest.reported_at if latest else None,
        compliant_until=(latest.reported_at + max_age) if compliant and latest else None,
    )
