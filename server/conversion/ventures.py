"""ConversionService use cases of ventures: create, update, read, list, and the cap table.

A venture's pool is the bp of its equity conversions may take. `pending_bps` reserves what
PENDING requests would get and `granted_bps` sums the approvals (server/conversion/
conversions.py moves both); lowering the pool below their sum is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.conversion import queries, request_queries
from server.conversion.domain import (
    RPC,
    CapTableView,
    VentureView,
    check_pool,
    venture_description,
    venture_name,
)
from server.core import idempotency
from server.core.context import RequestContext
from server.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Reason
from server.core.pagination import Page, PageTokens, page_size
from server.core.validation import parse_uuid, request_key
from server.db.session import Database, constraint_of

T = TypeVar("T")

NAME_INDEX = "uq_ventures_name_lower"
# UpdateVenture's mask paths.
EDITABLE = ("name", "description", "conversion_pool_bps")


def _name_taken(name: str, holder: uuid.UUID | None) -> AlreadyExists:
    return AlreadyExists(
        f"a venture named {name!r} exists (names are compared without regard to case)",
        metadata={"venture_id": str(holder)} if holder else {},
    )


class VentureCases:
    _db: Database
    _tokens: PageTokens

    async def create_venture(
        self,
        ctx: RequestContext,
        *,
        request_id: str,
        fingerprint: str,
        name: str,
        description: str,
        pool_bps: int,
    ) -> VentureView:
        request_key(request_id)
        name = venture_name(name)
        description = venture_description(description)
        check_pool(pool_bps)
        scope = idempotency.scope_for(f"{RPC}/CreateVenture", ctx.actor_id)

        async def tx(session: AsyncSession) -> VentureView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await queries.load_venture(session, uuid.UUID(stored["venture_id"]))
            venture = await queries.insert_venture(
                session, name=name, description=description, pool_bps=pool_bps
            )
            if venture is None:
                raise _name_taken(name, await queries.venture_named(session, name))
            await append(
                session,
                ctx,
                AuditEvent(
                    action="venture.created",
                    scope="venture",
                    ref_id=str(venture.id),
                    details={"name": name, "pool_bps": pool_bps, "request_id": request_id},
                ),
            )
            await idempotency.complete(session, scope, request_id, {"venture_id": str(venture.id)})
            return venture

        return await self._db.run(tx)

    async def update_venture(
        self, ctx: RequestContext, *, venture_id: str, changes: Mapping[str, Any]
    ) -> VentureView:
        target = parse_uuid(venture_id, "venture.id")
        if not changes:
            raise InvalidArgument.field("update_mask", "must name at least one field")
        values: dict[str, Any] = {}
        for path, value in changes.items():
            if path == "name":
                values["name"] = venture_name(value)
            elif path == "description":
                values["description"] = venture_description(value)
            elif path == "conversion_pool_bps":
                values["pool_bps"] = check_pool(value)
            else:
                raise InvalidArgument.field("update_mask", f"`{path}` cannot be updated")

        async def tx(session: AsyncSession) -> VentureView:
            before = await queries.load_venture(session, target, lock=True)
            after = await queries.update_venture(session, target, values)
            if after is None:
                raise FailedPrecondition(
                    "the pool would be smaller than what is granted and reserved",
                    reason=Reason.POOL_EXHAUSTED,
                    metadata={"min_pool_bps": str(before.granted_bps + before.pending_bps)},
                )
            changed = {
                key: {"from": getattr(before, key), "to": getattr(after, key)}
                for key in values
                if getattr(before, key) != getattr(after, key)
            }
            if changed:
                await append(
                    session,
                    ctx,
                    AuditEvent(
                        action="venture.updated",
                        scope="venture",
                        ref_id=str(target),
                        details={"changes": changed},
                    ),
                )
            return after

        return await _unique_name(self._db.run(tx), str(values.get("name", "")))

    async def get_venture(self, ctx: RequestContext, venture_id: str) -> VentureView:
        target = parse_uuid(venture_id, "venture_id")
        async with self._db.transaction() as session:
            return await queries.load_venture(session, target)

    async def list_ventures(
        self, ctx: RequestContext, *, page_size_requested: int, page_token: str
    ) -> Page[VentureView]:
        size = page_size(page_size_requested)
        keyset = self._tokens.decode(page_token, "ventures")
        after = (str(keyset[0]), uuid.UUID(keyset[1])) if keyset else None
        async with self._db.transaction() as session:
            ventures = await queries.list_ventures(session, after=after, limit=size + 1)
        return self._tokens.page(ventures, size, "ventures", lambda v: [v.name, str(v.id)])

    async def get_cap_table(
        self, ctx: RequestContext, *, venture_id: str, page_size_requested: int, page_token: str
    ) -> CapTableView:
        target = parse_uuid(venture_id, "venture_id")
        size = page_size(page_size_requested)
        filters = {"venture_id": str(target)}
        keyset = self._tokens.decode(page_token, filters)
        after = (int(keyset[0]), uuid.UUID(keyset[1])) if keyset else None
        async with self._db.transaction() as session:
            venture = await queries.load_venture(session, target)
            granted, holder_count = await request_queries.cap_table_totals(session, target)
            holders = await request_queries.cap_table_holders(
                session, target, after=after, limit=size + 1
            )
        return CapTableView(
            venture_id=target,
            pool_bps=venture.pool_bps,
            granted_bps=granted,
            holder_count=holder_count,
            holders=self._tokens.page(
                holders, size, filters, lambda h: [h.granted_bps, str(h.user_id)]
            ),
        )


async def _unique_name(call: Awaitable[T], name: str) -> T:
    """The answer of `call`, whose transaction rolled back with ALREADY_EXISTS when it hit
    the unique venture name (an UPDATE has no ON CONFLICT)."""
    try:
        return await call
    except IntegrityError as error:
        if constraint_of(error) != NAME_INDEX:
            raise
        raise _name_taken(name, None) from None
