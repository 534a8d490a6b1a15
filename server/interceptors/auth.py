"""Authentication and the per-RPC access policy (one place for both).

PUBLIC: a token is optional, but one that is sent must be valid. AUTHENTICATED: a valid token.
ROLES: a valid token with one of the policy's roles. No policy: PERMISSION_DENIED.
Ownership rules (own wallet unless admin, ...) are the services' business, not this module's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from server.core.context import Principal
from server.core.errors import PermissionDenied, Unauthenticated
from server.interceptors._wrap import AroundInterceptor, Context, metadata_value
from server.interceptors.context import current_call
from server.interceptors.policy import Level, Policy, lookup
from server.interceptors.tokens import TokenVerifier


def bearer_token(context: Context) -> str | None:
    header = metadata_value(context, "authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    return token.strip()


def authorize(policy: Policy, principal: Principal | None) -> None:
    """Raise the refusal `policy` gives `principal` (None: anonymous), or return."""
    if policy.level is Level.DENY:
        raise PermissionDenied("this RPC declares no access policy")
    if policy.level is Level.PUBLIC:
        return
    if principal is None:
        raise Unauthenticated("a bearer token is required")
    if policy.level is Level.ROLES and not principal.has(*policy.roles):
        raise PermissionDenied(f"requires one of the roles: {', '.join(sorted(policy.roles))}")


class AuthInterceptor(AroundInterceptor):
    def __init__(
        self, verifier: TokenVerifier, policies: Mapping[str, Policy] | None = None
    ) -> None:
        self._verifier = verifier
        self._policies: dict[str, Policy] = dict(policies or {})

    def set_policies(self, policies: Mapping[str, Policy]) -> None:
        """Install the table once the services are registered (before the server starts)."""
        self._policies = dict(policies)

    @asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        policy = lookup(self._policies, method)
        if policy.level is Level.DENY:
            authorize(policy, None)  # fail closed before looking at any token
        token = bearer_token(context)
        principal = self._verifier.verify(token) if token is not None else None
        authorize(policy, principal)  # refusals are DomainErrors: the error layer maps them
        state = current_call()
        if state is not None:
            state.principal = principal  # log lines carry it from here (server/logging.py)
        yield
