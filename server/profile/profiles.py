"""Use cases for profiles: public view, own view, field-mask update."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import func, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.append import AuditEvent, append
from server.batching import Batcher
from server.context import ROLE_ADMIN, RequestContext
from server.db.session import Database
from server.errors import InvalidArgument, NotFound, Unauthenticated
from server.params import Parameters
from server.profile.domain import shown_rep
from server.profile.models import Profile
from server.profile.users import parse_user_id

THEMES = ("AUTO", "LIGHT", "DARK")
EDITABLE = ("nickname", "bio", "location", "website_url", "avatar_url", "theme", "is_public")
_TEXT_LIMITS = {"nickname": 40, "bio": 280, "location": 80}


@dataclass(frozen=True, slots=True)
class ProfileView:
    user_id: uuid.UUID
    display_name: str
    nickname: str
    bio: str
    location: str
    website_url: str
    avatar_url: str
    theme: str
    is_public: bool
    level: int
    xp: int
    next_level_xp: int
    rep: int
    joined_at: datetime
    created_at: datetime
    updated_at: datetime


def next_level_xp(level: int, thresholds: Sequence[int]) -> int:
    return int(thresholds[level]) if level < len(thresholds) else 0


def _check_url(field: str, value: str, limit: int, schemes: tuple[str, ...]) -> None:
    if not value:
        return
    parsed = urlparse(value)
    if len(value) > limit or parsed.scheme not in schemes or not parsed.netloc:
        raise InvalidArgument.field(
            field, f"must be empty or an absolute {'/'.join(schemes)} URL of at most {limit} chars"
        )


def validate_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The column values for an update, or INVALID_ARGUMENT naming the first bad field."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name in _TEXT_LIMITS:
            if len(value) > _TEXT_LIMITS[name]:
                raise InvalidArgument.field(name, f"must be at most {_TEXT_LIMITS[name]} chars")
            values[name] = value or None
        elif name == "website_url":
            _check_url(name, value, 200, ("http", "https"))
            values[name] = value or None
        elif name == "avatar_url":
            _check_url(name, value, 300, ("https",))
            values[name] = value or None
        elif name == "theme":
            if value not in THEMES:
                raise InvalidArgument.field(name, "must be AUTO, LIGHT or DARK")
            values[name] = value
        elif name == "is_public":
            values[name] = bool(value)
        else:
            raise InvalidArgument.field("update_mask", f"`{name}` is not an editable field")
    return values


# The public read path is hot: concurrent reads are coalesced (server/batching.py) into one
# constant autocommit statement for all their ids, sent on the driver (prepared once per
# connection; no ORM or Core compilation per call). The statement of a read starts after
# the read was asked for, so a caller sees every write committed before it asked.
# Columns match ProfileView's sources.
_PROFILE_COLUMNS = """
SELECT p.user_id, u.display_name, u.joined_at, p.nickname, p.bio, p.location,
       p.website_url, p.avatar_url, p.theme, p.is_public, p.level, p.xp, p.rep_milli,
       p.created_at, p.updated_at
FROM profiles p JOIN users u ON u.id = p.user_id
"""
_PROFILE_VIEWS = _PROFILE_COLUMNS + "WHERE p.user_id = ANY($1::uuid[])"
_PROFILE_VIEW_SA = text(_PROFILE_COLUMNS + "WHERE p.user_id = :user_id")


class ProfileService:
    def __init__(
        self,
        database: Database,
        params: Parameters,
        *,
        batch_max_size: int = 64,
        batch_max_inflight: int = 1,
    ) -> None:
        self._db = database
        self._params = params
        self.reads: Batcher[uuid.UUID, Mapping[str, Any] | None] = Batcher(
            "get_profile",
            self._read_rows,
            max_batch=batch_max_size,
            max_inflight=batch_max_inflight,
        )

    async def _read_rows(self, user_ids: Sequence[uuid.UUID]) -> list[Mapping[str, Any] | None]:
        rows = await self._db.read_rows(_PROFILE_VIEWS, sorted(set(user_ids)))
        by_id = {row["user_id"]: row for row in rows}
        return [by_id.get(user_id) for user_id in user_ids]

    async def _view(
        self, user_id: uuid.UUID, session: AsyncSession | None = None
    ) -> tuple[ProfileView, bool]:
        """The profile; inside `session`'s transaction when given (after a write)."""
        # An asyncpg Record or a SQLAlchemy RowMapping: both read by column name.
        row: Mapping[Any, Any] | None
        if session is None:
            row = await self.reads.submit(user_id)
        else:
            params = {"user_id": user_id}
            row = (await session.execute(_PROFILE_VIEW_SA, params)).mappings().first()
        if row is None:
            raise NotFound("profile not found")
        thresholds = (await self._params.snapshot())["levels.thresholds"]
        view = ProfileView(
            user_id=row["user_id"],
            display_name=row["display_name"],
            nickname=row["nickname"] or "",
            bio=row["bio"] or "",
            location=row["location"] or "",
            website_url=row["website_url"] or "",
            avatar_url=row["avatar_url"] or "",
            theme=row["theme"] or "AUTO",
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

    async def get(self, ctx: RequestContext, user_id: str) -> ProfileView:
        target = parse_user_id(user_id, ctx)
        view, public = await self._view(target)
        owner = ctx.principal is not None and ctx.principal.user_id == str(target)
        admin = ctx.principal is not None and ctx.principal.has(ROLE_ADMIN)
        if not (public or owner or admin):
            raise NotFound("profile not found")  # private: no hint that it exists
        return view

    async def get_mine(self, ctx: RequestContext) -> ProfileView:
        if ctx.principal is None:
            raise Unauthenticated("a bearer token is required")
        return await self.get(ctx, "me")

    async def update_mine(self, ctx: RequestContext, changes: Mapping[str, Any]) -> ProfileView:
        if not changes:
            raise InvalidArgument.field("update_mask", "must name at least one field")
        target = parse_user_id("me", ctx)
        values = validate_changes(changes)

        async def tx(session: AsyncSession) -> ProfileView:
            updated = (
                await session.execute(
                    update(Profile)
                    .where(Profile.user_id == target)
                    .values(**values, updated_at=func.now())
                    .returning(Profile.user_id)
                )
            ).scalar()
            if updated is None:
                raise NotFound("profile not found")
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
            view, _ = await self._view(target, session)
            return view

        return await self._db.run(tx)
