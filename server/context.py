"""Who is calling and under which request id: passed from servicer to service explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLE_USER = "user"
ROLE_ADMIN = "admin"
ROLE_BOARD = "board"
ROLE_SYSTEM = "system"
KNOWN_ROLES = frozenset({ROLE_USER, ROLE_ADMIN, ROLE_BOARD, ROLE_SYSTEM})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: `sub` of the JWT and its known roles."""

    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)

    def has(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Per-call context. `request_id` traces the call (x-request-id); it is no idempotency key."""

    request_id: str
    principal: Principal | None = None

    @property
    def actor_id(self) -> str | None:
        return self.principal.user_id if self.principal else None


SYSTEM_CONTEXT = RequestContext(
    request_id="job", principal=Principal("system", frozenset({ROLE_SYSTEM}))
)
