"""ProfileService use cases: accounts (register, look up, KYC, device posture) and profiles
(public view, own view, field-mask update). One transaction each.

Access (server/core/access.py): account data is the user's own or admin/system's, and
anyone else gets NOT_FOUND; a private profile answers NOT_FOUND to all but its owner and
admins, so nobody learns it exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.core import idempotency
from server.core.access import Denial, caller_id, require_owner_or, user_ref, visible
from server.core.batching import Batcher
from server.core.clock import Clock, system_clock
from server.core.context import RequestContext, Role
from server.core.errors import InvalidArgument, NotFound, PermissionDenied
from server.core.params_cache import Parameters
from server.core.validation import not_future, request_key, required_time, text
from server.db.session import Database
from server.profile import gains, queries
from server.profile.domain import (
    MAX_KYC_NOTE_LENGTH,
    KycStatus,
    PostureView,
    ProfileView,
    Theme,
    UserView,
    posture,
    validate_profile_changes,
    validate_registration,
)
from server.profile.gamification import next_level_xp, shown_rep

RPC = "smartstart.profile.v1.ProfileService"
_KYC_STATUSES = frozenset(KycStatus)


class ProfileService:
    def __init__(
        self,
        database: Database,
        params: Parameters,
        *,
        clock: Clock = system_clock,
        batch_max_size: int = 64,
        batch_max_inflight: int = 1,
    ) -> None:
        self._db = database
        self._params = params
        self._clock = clock
        # The public read path is hot: concurrent reads are coalesced (server/core/batching.py)
        # into one constant autocommit statement for all their ids. The statement of a read
        # starts after the read was asked for, so a caller sees every write committed before.
        self.reads: Batcher[uuid.UUID, Mapping[str, Any] | None] = Batcher(
            "get_profile",
            self._read_rows,
            max_batch=batch_max_size,
            max_inflight=batch_max_inflight,
        )

    # --- accounts -------------------------------------------------------------------------------

    async def register_user(
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
        request_key(request_id)
        reg = validate_registration(external_id, email, display_name)
        now = self._clock()
        joined = not_future(joined_at, "joined_at", now) if joined_at else now
        scope = idempotency.scope_for(f"{RPC}/RegisterUser", ctx.actor_id)

        async def tx(session: AsyncSession) -> UserView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await queries.load_user(session, uuid.UUID(stored["user_id"]))
            user_id = await queries.insert_user(session, reg, joined)
            await append(
                session,
                ctx,
                AuditEvent(
                    action="user.registered",
                    scope="user",
                    ref_id=str(user_id),
                    details={"external_id": reg.external_id, "joined_at": joined.isoformat()},
                ),
            )
            await idempotency.complete(session, scope, request_id, {"user_id": str(user_id)})
            return await queries.load_user(session, user_id)

        return await self._db.run(tx)

    async def get_user(
        self, ctx: RequestContext, *, user_id: str | None, external_id: str | None
    ) -> UserView:
        async with self._db.transaction() as session:
            if external_id is not None:
                if not ctx.has(Role.ADMIN, Role.SYSTEM):
                    raise PermissionDenied("lookup by external_id needs admin or system")
                external_id = text(external_id, "external_id", min_length=1, max_length=128)
                found = await queries.user_id_by_external_id(session, external_id)
                return await queries.load_user(session, found)
            target = self._account(ctx, user_id or "")
            return await queries.load_user(session, target)

    @staticmethod
    def _account(ctx: RequestContext, user_id: str) -> uuid.UUID:
        """The user whose account data the call names: the caller's own, or anyone's for
        admin and system; another user's answers NOT_FOUND."""
        target = user_ref(ctx, user_id)
        require_owner_or(ctx, target, Role.ADMIN, Role.SYSTEM, denial=Denial.NOT_FOUND, what="user")
        return target

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
        request_key(request_id)
        target = user_ref(ctx, user_id)
        if status not in _KYC_STATUSES:
            raise InvalidArgument.field("status", "must be NONE, PENDING, PASSED or FAILED")
        note = text(note, "note", max_length=MAX_KYC_NOTE_LENGTH, multiline=True)
        scope = idempotency.scope_for(f"{RPC}/SetKycStatus", ctx.actor_id)

        async def tx(session: AsyncSession) -> UserView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await queries.load_user(session, target)
            previous = await queries.lock_kyc_status(session, target)
            if previous != status:
                await queries.set_kyc_status(session, target, status)
                await gains.touch(session, [target])  # kycStatus, a badge metric
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
            return await queries.load_user(session, target)

        return await self._db.run(tx)

    async def report_device_posture(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        user_id: str,
        compliant: bool,
        reported_at: datetime | None,
    ) -> PostureView:
        request_key(request_id)
        target = user_ref(ctx, user_id)
        reported = not_future(
            required_time(reported_at, "reported_at"), "reported_at", self._clock()
        )
        scope = idempotency.scope_for(f"{RPC}/ReportDevicePosture", ctx.actor_id)
        max_age = (await self._params.current()).device.max_report_age

        async def tx(session: AsyncSession) -> PostureView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is None:
                await queries.require_user(session, target)
                await queries.insert_posture_report(session, target, compliant, reported)
                await gains.touch(session, [target])  # deviceCompliantDays, a badge metric
                await append(
                    session,
                    ctx,
                    AuditEvent(
                        action="device.posture_reported",
                        scope="user",
                        ref_id=str(target),
                        details={"compliant": compliant, "reported_at": reported.isoformat()},
                    ),
                )
                await idempotency.complete(session, scope, request_id, {"user_id": str(target)})
            now = self._clock()
            return posture(target, *await queries.posture_facts(session, target, now), now, max_age)

        return await self._db.run(tx)

    async def get_device_posture(self, ctx: RequestContext, *, user_id: str) -> PostureView:
        target = self._account(ctx, user_id)
        max_age = (await self._params.current()).device.max_report_age
        async with self._db.transaction() as session:
            await queries.require_user(session, target)
            now = self._clock()
            return posture(target, *await queries.posture_facts(session, target, now), now, max_age)

    # --- profiles -------------------------------------------------------------------------------

    async def get_profile(self, ctx: RequestContext, user_id: str) -> ProfileView:
        target = user_ref(ctx, user_id)
        view, public = await self._view(await self.reads.submit(target))
        if not visible(ctx, target, public=public, roles=(Role.ADMIN,)):
            raise NotFound("profile not found")  # private: no hint that it exists
        return view

    async def get_my_profile(self, ctx: RequestContext) -> ProfileView:
        caller_id(ctx)  # UNAUTHENTICATED without a token
        return await self.get_profile(ctx, "me")

    async def update_my_profile(
        self, ctx: RequestContext, changes: Mapping[str, Any]
    ) -> ProfileView:
        if not changes:
            raise InvalidArgument.field("update_mask", "must name at least one field")
        target = caller_id(ctx)
        values = validate_profile_changes(changes)

        async def tx(session: AsyncSession) -> ProfileView:
            await queries.update_profile(session, target, values)
            await append(
                session,
                ctx,
                AuditEvent(
                    action="profile.updated",
                    scope="user",
                    ref_id=str(target),
                    details={"fields": sorted(values)},
                ),
            )
            view, _ = await self._view(await queries.profile_row(session, target))
            return view

        return await self._db.run(tx)

    async def _read_rows(self, user_ids: Sequence[uuid.UUID]) -> list[Mapping[str, Any] | None]:
        rows = await self._db.read_rows(queries.PROFILE_VIEWS, sorted(set(user_ids)))
        by_id = {row["user_id"]: row for row in rows}
        return [by_id.get(user_id) for user_id in user_ids]

    async def _view(self, row: Mapping[Any, Any] | None) -> tuple[ProfileView, bool]:
        """The profile of a row (an asyncpg Record or a SQLAlchemy RowMapping) and whether
        it is public."""
        if row is None:
            raise NotFound("profile not found")
        thresholds = (await self._params.current()).levels.thresholds
        view = ProfileView(
            user_id=row["user_id"],
            display_name=row["display_name"],
            nickname=row["nickname"] or "",
            bio=row["bio"] or "",
            location=row["location"] or "",
            website_url=row["website_url"] or "",
            avatar_url=row["avatar_url"] or "",
            theme=row["theme"] or Theme.AUTO,
            is_public=row["is_public"],
            level=row["level"],
            xp=row["xp"],
            next_level_xp=next_level_xp(row["level"], thresholds),
            rep=shown_rep(row["rep_milli"]),
            joined_at=row["joined_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
        return view, bool(row["is_public"])
