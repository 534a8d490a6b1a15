"""WalletService use cases: read a wallet, page its ledger, verify it, admin ADJUST.

Ownership (docs/design.md "Access policy"): the interceptor enforces each RPC's declared
level; here, a non-admin may only name their own wallet (another user's id is
PERMISSION_DENIED, as the contract states).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server import idempotency
from server.audit.append import AuditEvent, append
from server.context import ROLE_ADMIN, RequestContext
from server.convert import parse_uuid
from server.db.session import Database
from server.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from server.pagination import PageTokens, page_size
from server.wallet import ledger
from server.wallet.ledger import EntryType, EntryView, Verification

MAX_REASON_LENGTH = 1000
RPC = "smartstart.wallet.v1.WalletService"


@dataclass(frozen=True, slots=True)
class WalletView:
    user_id: uuid.UUID
    wallet_id: uuid.UUID
    buz_balance: int
    pending_lock: int
    head_seq: int
    head_hash: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: list[EntryView]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class Adjustment:
    wallet: WalletView
    entry: EntryView


_WALLET = text(
    "SELECT id, user_id, buz_balance, pending_lock, head_seq, head_hash, created_at, updated_at"
    " FROM wallets WHERE user_id = :user_id"
)


async def load_wallet(session: AsyncSession, user_id: uuid.UUID) -> WalletView:
    row = (await session.execute(_WALLET, {"user_id": user_id})).first()
    if row is None:
        raise NotFound("user not found")
    return WalletView(
        user_id=row.user_id,
        wallet_id=row.id,
        buz_balance=int(row.buz_balance),
        pending_lock=int(row.pending_lock),
        head_seq=int(row.head_seq),
        head_hash=str(row.head_hash),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _caller(ctx: RequestContext) -> uuid.UUID:
    if ctx.principal is None:
        raise Unauthenticated("a bearer token is required")
    try:
        return uuid.UUID(ctx.principal.user_id)
    except ValueError:
        raise NotFound("user not found") from None  # e.g. a system principal


def _target(ctx: RequestContext, raw: str) -> uuid.UUID:
    """Empty / "me" → the caller; another user's id needs role admin."""
    if raw in ("", "me"):
        return _caller(ctx)
    target = parse_uuid(raw, "user_id")
    admin = ctx.principal is not None and ctx.principal.has(ROLE_ADMIN)
    if not admin and (ctx.principal is None or ctx.principal.user_id != str(target)):
        raise PermissionDenied("only an admin may read another user's wallet")
    return target


class WalletService:
    def __init__(self, database: Database, page_tokens: PageTokens) -> None:
        self._db = database
        self._tokens = page_tokens

    async def get_mine(self, ctx: RequestContext) -> WalletView:
        me = _caller(ctx)
        async with self._db.transaction() as session:
            return await load_wallet(session, me)

    async def get(self, ctx: RequestContext, user_id: str) -> WalletView:
        if not user_id:
            raise InvalidArgument.field("user_id", "is required")
        target = parse_uuid(user_id, "user_id")
        async with self._db.transaction() as session:
            return await load_wallet(session, target)

    async def list_entries(
        self,
        ctx: RequestContext,
        *,
        user_id: str,
        types: Sequence[str],
        page_size_requested: int,
        page_token: str,
    ) -> EntryPage:
        target = _target(ctx, user_id)
        if any(t not in EntryType.__members__ for t in types):
            raise InvalidArgument.field("types", "must be ISSUE, LOCK, UNLOCK, BURN or ADJUST")
        wanted = sorted(set(types))
        size = page_size(page_size_requested)
        filters = {"user_id": str(target), "types": wanted}
        keyset = self._tokens.decode(page_token, filters)
        before = int(keyset[0]) if keyset else None
        async with self._db.transaction() as session:
            wallet = await load_wallet(session, target)
            entries = await ledger.list_entries(
                session, wallet.wallet_id, types=wanted, before_seq=before, limit=size + 1
            )
        more = len(entries) > size
        entries = entries[:size]
        token = self._tokens.encode([entries[-1].seq], filters) if more else ""
        return EntryPage(entries=entries, next_page_token=token)

    async def verify(self, ctx: RequestContext, *, user_id: str) -> Verification:
        target = _target(ctx, user_id)
        async with self._db.transaction() as session:
            wallet = await load_wallet(session, target)
            return await ledger.verify_wallet(session, wallet.wallet_id)

    async def adjust(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        user_id: str,
        delta: int,
        reason: str,
    ) -> Adjustment:
        idempotency.validate_key(request_id)
        target = parse_uuid(user_id, "user_id")
        if delta == 0:
            raise InvalidArgument.field("delta", "must not be 0")
        reason = reason.strip()
        if not 1 <= len(reason) <= MAX_REASON_LENGTH:
            raise InvalidArgument.field("reason", f"must be 1..{MAX_REASON_LENGTH} characters")
        scope = idempotency.scope_for(f"{RPC}/AdjustBalance", ctx.actor_id)

        async def tx(session: AsyncSession) -> Adjustment:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                entry = await ledger.load_entry(session, int(stored["entry_id"]))
                return Adjustment(
                    wallet=_as_after(await load_wallet(session, target), entry), entry=entry
                )
            wallet = await load_wallet(session, target)
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
            return Adjustment(wallet=_as_after(wallet, entry), entry=entry)

        return await self._db.run(tx)


def _as_after(wallet: WalletView, entry: EntryView) -> WalletView:
    """The wallet as it was right after `entry` (a retry answers what the first call did)."""
    return WalletView(
        user_id=wallet.user_id,
        wallet_id=wallet.wallet_id,
        buz_balance=entry.balance_after,
        pending_lock=entry.pending_after,
        head_seq=entry.seq,
        head_hash=entry.hash,
        created_at=wallet.created_at,
        updated_at=entry.created_at,
    )
