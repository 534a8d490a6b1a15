"""Who is calling and under which request id: passed from servicer to service explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """The JWT `roles` a caller may hold (the contract's `Role`, mapped by name)."""

    USER = "user"
    ADMIN = "admin"
    BOARD = "board"
    SYSTEM = "system"


KNOWN_ROLES = frozenset(Role)


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

    def has(self, *roles: str) -> bool:
        """Whether the caller holds any of `roles` (an anonymous caller holds none)."""
        return self.principal is not None and self.principal.has(*roles)


SYSTEM_CONTEXT = RequestContext(
    request_id="job", principal=Principal("system", frozenset({Role.SYSTEM}))
)
