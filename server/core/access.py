"""Who may see or touch what: the one place for "the caller", "a user the call names" and
ownership checks. The interceptor has already enforced the RPC's declared level (public,
authenticated, roles); these are the per-resource rules below it.

The contract says per RPC how a refusal looks: some answer PERMISSION_DENIED (a wallet of
another user), others NOT_FOUND so that nobody learns the resource exists (a private
profile, another user's account data, a document one may not see).
"""

from __future__ import annotations

import uuid
from enum import Enum

from server.core.context import RequestContext, Role
from server.core.errors import NotFound, PermissionDenied, Unauthenticated
from server.core.validation import parse_uuid

ME = "me"


class Denial(Enum):
    """How a refusal is answered (the contract of the RPC decides)."""

    NOT_FOUND = "NOT_FOUND"
    PERMISSION_DENIED = "PERMISSION_DENIED"


def caller_id(ctx: RequestContext) -> uuid.UUID:
    """The calling user's id. No token: UNAUTHENTICATED; a principal that is not a user (a
    system token's subject): NOT_FOUND, it has no account."""
    if ctx.principal is None:
        raise Unauthenticated("a bearer token is required")
    try:
        return uuid.UUID(ctx.principal.user_id)
    except ValueError:
        raise NotFound("user not found") from None


def user_ref(
    ctx: RequestContext, raw: str, field: str = "user_id", *, empty_is_me: bool = False
) -> uuid.UUID:
    """The user a call names: a UUID, or `me` (and empty, where the contract says so) for
    the caller. Anything else is INVALID_ARGUMENT naming the field."""
    if raw == ME or (empty_is_me and raw == ""):
        return caller_id(ctx)
    return parse_uuid(raw, field, "must be a UUID or `me`")


def is_owner(ctx: RequestContext, owner: uuid.UUID) -> bool:
    return ctx.principal is not None and ctx.principal.user_id == str(owner)


def require_owner_or(
    ctx: RequestContext, owner: uuid.UUID, *roles: Role, denial: Denial, what: str
) -> None:
    """Pass when the caller is `owner` or holds one of `roles`; else refuse as `denial`
    (NOT_FOUND says "<what> not found", hiding that it exists)."""
    if is_owner(ctx, owner) or ctx.has(*roles):
        return
    if denial is Denial.NOT_FOUND:
        raise NotFound(f"{what} not found")
    raise PermissionDenied(f"only the owner may access this {what}")


def visible(
    ctx: RequestContext, owner: uuid.UUID, *, public: bool, roles: tuple[Role, ...]
) -> bool:
    """A resource is visible when it is public, the caller's own, or the caller holds one of
    `roles`. Callers answer an invisible resource with NOT_FOUND."""
    return public or is_owner(ctx, owner) or ctx.has(*roles)
