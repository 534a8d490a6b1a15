"""ConversionService use cases of conversion requests: request, cancel, approve, reject, read
and list. One transaction each, which moves the request, the venture's pool and the wallet
together, or nothing.

Locks, in the order every use case here (and FinalizeWindow) takes them: the owner's wallet
row (the ledger's lock, which also serialises one user's requests), then the window (FOR
SHARE while a request is made in it, so the job cannot close it and the board cannot change
its rate meanwhile), the request row and the venture row (conditional UPDATEs), the grant
and the owner's user_metrics row, and the audit heads last. Each transition is a conditional
UPDATE from PENDING whose RETURNING row decides; a request that is no longer PENDING answers
INVALID_STATE with its status.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.conversion import queries, request_queries
from server.conversion.domain import (
    MAX_NOTE_LENGTH,
    RELEASE,
    RPC,
    ConversionView,
    RequestStatus,
    WindowStatus,
    check_buz_amount,
    check_gates,
    invalid_state,
    plan_conversion,
    window_not_open,
    window_status_at,
)
from server.core import idempotency
from server.core.access import Denial, caller_id, is_owner, require_owner_or
from server.core.clock import Clock
from server.core.context import RequestContext, Role
from server.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Reason
from server.core.pagination import Page, PageTokens, page_size, time_key
from server.core.params_cache import Parameters
from server.core.validation import parse_uuid, request_key, text
from server.db.session import Database
from server.profile import gains
from server.profile.domain import DeviceReport, is_device_compliant
from server.wallet import ledger
from server.wallet import queries as wallets
from server.wallet.entries import EntryType, EntryView, RefKind, WalletState

_STATUSES = frozenset(RequestStatus)


async def settle(
    session: AsyncSession, ctx: RequestContext, conversion: ConversionView, wallet: WalletState
) -> EntryView:
    """The ledger entry of a request that left PENDING (domain.RELEASE: BURN on approval,
    UNLOCK otherwise) on its owner's wallet, locked by the caller."""
    return await ledger.post(
        session,
        ctx,
        user_id=conversion.user_id,
        type=RELEASE[conversion.status],
        amount=conversion.buz_locked,
        ref_kind=RefKind.CONVERSION,
        ref_id=str(conversion.id),
        locked=wallet,
    )


def pool_exhausted(available_bps: int) -> FailedPrecondition:
    return FailedPrecondition(
        "not enough of the venture's conversion pool is left",
        reason=Reason.POOL_EXHAUSTED,
        metadata={"available_bps": str(max(0, available_bps))},
    )


def _optional_uuid(raw: str, field: str) -> uuid.UUID | None:
    return parse_uuid(raw, field) if raw else None


class ConversionCases:
    _db: Database
    _params: Parameters
    _tokens: PageTokens
    _clock: Clock

    async def request_conversion(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        window_id: str,
        venture_id: str,
        buz_amount: int,
    ) -> ConversionView:
        """Lock the BUZ for the granted bp and reserve them in the venture's pool (the
        contract's order of checks)."""
        request_key(request_id)
        window_ref = parse_uuid(window_id, "window_id")
        venture_ref = parse_uuid(venture_id, "venture_id")
        check_buz_amount(buz_amount)
        me = caller_id(ctx)
        scope = idempotency.scope_for(f"{RPC}/RequestConversion", ctx.actor_id)
        params, now = await self._params.current(), self._clock()

        async def tx(session: AsyncSession) -> ConversionView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await request_queries.load_conversion(
                    session, uuid.UUID(stored["conversion_id"])
                )
            wallet = await wallets.lock_wallet(session, me)
            window = await queries.load_window(session, window_ref, share=True)
            await queries.load_venture(session, venture_ref)
            status = window_status_at(window.status, window.opens_at, window.closes_at, now)
            if status is not WindowStatus.OPEN:
                raise window_not_open(status)
            facts = await request_queries.gate_facts(session, me)
            latest = (
                DeviceReport(compliant=facts.compliant, reported_at=facts.reported_at)
                if facts.reported_at is not None
                else None
            )
            device_ok = is_device_compliant(latest, now, params.device.max_report_age)
            check_gates(facts.kyc_status, int(facts.rep_milli), device_ok, params.gates)
            plan = plan_conversion(buz_amount, window.equity_rate_bps)
            conversion = await request_queries.insert_request(
                session,
                user_id=me,
                window=window,
                venture_id=venture_ref,
                buz_requested=buz_amount,
                granted_bps=plan.granted_bp,
                buz_locked=plan.buz_locked,
                request_id=request_id,
            )
            if conversion is None:
                existing = await request_queries.pending_request(
                    session, me, window_ref, venture_ref
                )
                raise AlreadyExists(
                    "a PENDING conversion for this window and venture exists",
                    metadata={"conversion_id": str(existing)} if existing else {},
                )
            if not await queries.reserve_pool(session, venture_ref, plan.granted_bp):
                venture = await queries.load_venture(session, venture_ref)
                raise pool_exhausted(venture.available_bps)
            entry = await ledger.post(
                session,
                ctx,
                user_id=me,
                type=EntryType.LOCK,
                amount=plan.buz_locked,
                ref_kind=RefKind.CONVERSION,
                ref_id=str(conversion.id),
                locked=wallet,
            )
            await append(
                session,
                ctx,
                AuditEvent(
                    action="conversion.requested",
                    scope="conversion",
                    ref_id=str(conversion.id),
                    details={
                        "user_id": str(me),
                        "window_id": str(window_ref),
                        "venture_id": str(venture_ref),
                        "buz_requested": buz_amount,
                        "equity_rate_bps": window.equity_rate_bps,
                        "granted_bps": plan.granted_bp,
                        "buz_locked": plan.buz_locked,
                        "ledger_seq": entry.seq,
                        "request_id": request_id,
                    },
                ),
            )
            await idempotency.complete(
                session, scope, request_id, {"conversion_id": str(conversion.id)}
            )
            return conversion

        return await self._db.run(tx)

    async def cancel_conversion(
        self, ctx: RequestContext, *, request_id: str, fingerprint: str, conversion_id: str
    ) -> ConversionView:
        return await self._resolve(
            ctx,
            "CancelConversion",
            request_id,
            fingerprint,
            conversion_id,
            RequestStatus.CANCELLED,
            note=None,
        )

    async def approve_conversion(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        conversion_id: str,
        note: str,
    ) -> ConversionView:
        note = text(note, "note", max_length=MAX_NOTE_LENGTH)
        return await self._resolve(
            ctx,
            "ApproveConversion",
            request_id,
            fingerprint,
            conversion_id,
            RequestStatus.APPROVED,
            note=note or None,
        )

    async def reject_conversion(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        conversion_id: str,
        note: str,
    ) -> ConversionView:
        note = text(note, "note", min_length=1, max_length=MAX_NOTE_LENGTH)
        return await self._resolve(
            ctx,
            "RejectConversion",
            request_id,
            fingerprint,
            conversion_id,
            RequestStatus.REJECTED,
            note=note,
        )

    async def _resolve(
        self,
        ctx: RequestContext,
        rpc: str,
        request_id: str,
        fingerprint: str,
        conversion_id: str,
        to: RequestStatus,
        *,
        note: str | None,
    ) -> ConversionView:
        """PENDING → `to` exactly once: the request, its pool reservation (given back, or
        granted on approval) and its locked BUZ (domain.RELEASE) in one transaction."""
        request_key(request_id)
        target = parse_uuid(conversion_id, "conversion_id")
        scope = idempotency.scope_for(f"{RPC}/{rpc}", ctx.actor_id)
        board = to is not RequestStatus.CANCELLED
        now, levels = self._clock(), (await self._params.current()).levels

        async def tx(session: AsyncSession) -> ConversionView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await request_queries.load_conversion(session, target)
            current = await request_queries.load_conversion(session, target)
            if not board and not is_owner(ctx, current.user_id):
                raise NotFound("conversion not found")
            wallet = await wallets.lock_wallet(session, current.user_id)
            done = await request_queries.resolve(
                session,
                target,
                to,
                now=now,
                decided_by=ctx.actor_id if board else None,
                note=note,
            )
            if done is None:
                latest = await request_queries.load_conversion(session, target)
                raise invalid_state("conversion", latest.status)
            approved = to is RequestStatus.APPROVED
            if not await queries.release_pool(
                session, done.venture_id, done.granted_bps, grant=approved
            ):
                venture = await queries.load_venture(session, done.venture_id)
                raise pool_exhausted(venture.pool_bps - venture.granted_bps)
            entry = await settle(session, ctx, done, wallet)
            if approved:
                await request_queries.record_grant(session, done)
                # approvedConversions (the EQUITY_PIONEER metric) is counted from the
                # requests; touching the owner's metrics tells the badge job it moved.
                await gains.apply(
                    session, now=now, levels=levels, standings={}, counters={done.user_id: {}}
                )
            await append(
                session,
                ctx,
                AuditEvent(
                    action=f"conversion.{to.lower()}",
                    scope="conversion",
                    ref_id=str(target),
                    details={
                        "user_id": str(done.user_id),
                        "venture_id": str(done.venture_id),
                        "granted_bps": done.granted_bps,
                        "buz": done.buz_locked,
                        "ledger": entry.type,
                        "ledger_seq": entry.seq,
                        "note": note,
                        "request_id": request_id,
                    },
                ),
            )
            await idempotency.complete(session, scope, request_id, {"conversion_id": str(target)})
            return done

        return await self._db.run(tx)

    async def get_conversion(self, ctx: RequestContext, conversion_id: str) -> ConversionView:
        target = parse_uuid(conversion_id, "conversion_id")
        async with self._db.transaction() as session:
            conversion = await request_queries.load_conversion(session, target)
        require_owner_or(
            ctx,
            conversion.user_id,
            Role.BOARD,
            Role.ADMIN,
            denial=Denial.NOT_FOUND,
            what="conversion",
        )
        return conversion

    async def list_conversions(
        self,
        ctx: RequestContext,
        *,
        mine: bool,
        user_id: str,
        window_id: str,
        venture_id: str,
        statuses: Sequence[str],
        page_size_requested: int,
        page_token: str,
    ) -> Page[ConversionView]:
        """The caller's own (`mine`, ListMyConversions) or everyone's (the board's
        ListConversions), newest first."""
        user = caller_id(ctx) if mine else _optional_uuid(user_id, "user_id")
        window = _optional_uuid(window_id, "window_id")
        venture = _optional_uuid(venture_id, "venture_id")
        if any(s not in _STATUSES for s in statuses):
            raise InvalidArgument.field("statuses", "must be known statuses, not UNSPECIFIED")
        wanted = sorted(set(statuses))
        size = page_size(page_size_requested)
        filters = {
            "user": str(user),
            "window": str(window),
            "venture": str(venture),
            "statuses": wanted,
        }
        keyset = self._tokens.decode(page_token, filters)
        before = (datetime.fromisoformat(keyset[0]), uuid.UUID(keyset[1])) if keyset else None
        async with self._db.transaction() as session:
            found = await request_queries.list_conversions(
                session,
                user_id=user,
                window_id=window,
                venture_id=venture,
                statuses=wanted,
                before=before,
                limit=size + 1,
            )
        return self._tokens.page(found, size, filters, lambda c: time_key(c.created_at, c.id))
