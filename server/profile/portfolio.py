"""Portfolio use cases: a user's items, public ones shown to others.

Linked documents must be the owner's (and not deleted), else NOT_FOUND naming the first
foreign one, checked against the documents table (DocumentService has no RPCs yet; the rule
holds the day it does). A linked task must be one whose reward names the owner (capped or
withheld included), else FAILED_PRECONDITION; `buz_earned` is that reward's issued BUZ.
Someone else's item, or one that does not exist, is NOT_FOUND to a writer; readers see an
item when it is public and its owner's profile is, or when it is theirs or they are admin.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.core import idempotency
from server.core.access import caller_id
from server.core.context import RequestContext
from server.core.errors import FailedPrecondition, InvalidArgument, NotFound
from server.core.pagination import Page, PageTokens, page_size, time_key
from server.core.validation import parse_uuid, request_key
from server.db.session import Database
from server.profile import portfolio_queries as queries
from server.profile import queries as profile_queries
from server.profile.portfolio_rules import PORTFOLIO_EDITABLE, PortfolioView, validate_item
from server.profile.privacy import require_visible, sees_everything, visible_user

RPC = "smartstart.profile.v1.ProfileService"


def _not_found() -> NotFound:
    return NotFound("portfolio item not found")


class PortfolioService:
    def __init__(self, database: Database, page_tokens: PageTokens) -> None:
        self._db = database
        self._tokens = page_tokens

    async def create_item(
        self, ctx: RequestContext, *, request_id: str, fingerprint: str, fields: Mapping[str, Any]
    ) -> PortfolioView:
        request_key(request_id)
        owner = caller_id(ctx)
        values = validate_item({name: fields[name] for name in PORTFOLIO_EDITABLE})
        scope = idempotency.scope_for(f"{RPC}/CreatePortfolioItem", ctx.actor_id)

        async def tx(session: AsyncSession) -> PortfolioView:
            stored = await idempotency.claim(session, scope, request_id, fingerprint)
            if stored is not None:
                return await self._item(session, uuid.UUID(stored["item_id"]))
            await profile_queries.require_user(session, owner)
            buz = await self._links(session, owner, values)
            created = await queries.insert_item(session, owner, values, buz or 0)
            await self._audit(session, ctx, "portfolio.created", created.item_id, sorted(values))
            await idempotency.complete(
                session, scope, request_id, {"item_id": str(created.item_id)}
            )
            return created

        return await self._db.run(tx)

    async def update_item(
        self, ctx: RequestContext, item_id: str, changes: Mapping[str, Any]
    ) -> PortfolioView:
        owner = caller_id(ctx)
        target = parse_uuid(item_id, "item.item_id")
        if not changes:
            raise InvalidArgument.field("update_mask", "must name at least one field")
        values = validate_item(changes)

        async def tx(session: AsyncSession) -> PortfolioView:
            buz = await self._links(session, owner, values)
            if "task_id" in values and buz is None:
                buz = 0  # the task link was removed
            updated = await queries.update_item(session, target, owner, values, buz)
            if updated is None:
                raise _not_found()
            await self._audit(session, ctx, "portfolio.updated", target, sorted(values))
            return updated

        return await self._db.run(tx)

    async def delete_item(self, ctx: RequestContext, item_id: str) -> None:
        owner = caller_id(ctx)
        target = parse_uuid(item_id, "item_id")

        async def tx(session: AsyncSession) -> None:
            if not await queries.delete_item(session, target, owner):
                raise _not_found()
            await self._audit(session, ctx, "portfolio.deleted", target, [])

        await self._db.run(tx)

    async def get_item(self, ctx: RequestContext, item_id: str) -> PortfolioView:
        target = parse_uuid(item_id, "item_id")
        async with self._db.transaction() as session:
            found = await queries.item(session, target)
            if found is None:
                raise _not_found()
            if not sees_everything(ctx, found.owner_user_id):
                if not found.is_public:
                    raise _not_found()
                try:
                    await require_visible(session, ctx, found.owner_user_id)
                except NotFound:
                    raise _not_found() from None
            return found

    async def list_items(
        self, ctx: RequestContext, *, user_id: str, page_size_requested: int, page_token: str
    ) -> Page[PortfolioView]:
        size = page_size(page_size_requested)
        async with self._db.read() as conn:
            owner = await visible_user(conn, ctx, user_id)
            public_only = not sees_everything(ctx, owner)
            filters = {"user_id": str(owner), "public_only": public_only}
            before = self._tokens.time_keyset(page_token, filters)
            rows = await queries.list_items(
                conn, owner, public_only=public_only, before=before, limit=size + 1
            )
        return self._tokens.page(rows, size, filters, lambda i: time_key(i.created_at, i.item_id))

    @staticmethod
    async def _links(
        session: AsyncSession, owner: uuid.UUID, values: Mapping[str, Any]
    ) -> int | None:
        """Check the documents and the task an item links; the task's BUZ (None: no task)."""
        documents = values.get("document_ids") or []
        owned = await queries.owned_documents(session, owner, documents)
        for i, document in enumerate(documents):
            if document not in owned:
                raise NotFound(
                    "document not found",
                    metadata={"document_id": str(document), "field": f"document_ids[{i}]"},
                )
        task = values.get("task_id")
        if not task:
            return None
        buz = await queries.reward_for(session, owner, task)
        if buz is None:
            raise FailedPrecondition(
                "task_id is not a task you were rewarded for", metadata={"task_id": task}
            )
        return buz

    @staticmethod
    async def _item(session: AsyncSession, item_id: uuid.UUID) -> PortfolioView:
        found = await queries.item(session, item_id)
        if found is None:  # deleted since the first call answered
            raise _not_found()
        return found

    @staticmethod
    async def _audit(
        session: AsyncSession,
        ctx: RequestContext,
        action: str,
        item_id: uuid.UUID,
        fields: list[str],
    ) -> None:
        await append(
            session,
            ctx,
            AuditEvent(
                action=action, scope="portfolio", ref_id=str(item_id), details={"fields": fields}
            ),
        )
