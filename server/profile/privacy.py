"""The private-profile rule for every view of a user's things (skills, endorsements,
badges, portfolio): a private profile, or a user that does not exist, is NOT_FOUND to all
but its owner and admins (core/access.visible), with no hint which."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.core.access import is_owner, user_ref, visible
from server.core.context import RequestContext, Role
from server.core.errors import NotFound
from server.profile.queries import profile_public


async def visible_user(
    conn: AsyncSession | AsyncConnection,
    ctx: RequestContext,
    raw_user_id: str,
    field: str = "user_id",
) -> uuid.UUID:
    """The user a view names (`me` or a UUID), if the caller may see their profile."""
    target = user_ref(ctx, raw_user_id, field)
    await require_visible(conn, ctx, target)
    return target


async def require_visible(
    conn: AsyncSession | AsyncConnection, ctx: RequestContext, target: uuid.UUID
) -> None:
    public = await profile_public(conn, target)
    if public is None or not visible(ctx, target, public=public, roles=(Role.ADMIN,)):
        raise NotFound("profile not found")


def sees_everything(ctx: RequestContext, owner: uuid.UUID) -> bool:
    """The owner and admins see a user's private items (revoked awards, private portfolio
    items, award snapshots)."""
    return is_owner(ctx, owner) or ctx.has(Role.ADMIN)
