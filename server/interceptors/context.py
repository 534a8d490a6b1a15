"""The per-call state the interceptors fill in and servicers read via `current_context()`.

It lives in a ContextVar set inside the wrapped handler (see _wrap.py), so it is visible in the
servicer and in everything it awaits, and nowhere else.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass

from server.core.context import Principal, RequestContext


@dataclass(slots=True)
class CallState:
    """Mutable while the interceptors run: auth adds the principal after the request id."""

    request_id: str
    method: str
    peer: str
    principal: Principal | None = None

    def request_context(self) -> RequestContext:
        return RequestContext(request_id=self.request_id, principal=self.principal)


_call: ContextVar[CallState | None] = ContextVar("smartstart_call", default=None)


def current_call() -> CallState | None:
    return _call.get()


def current_context() -> RequestContext:
    """The caller and request id of the RPC being served. Call it from a servicer method."""
    state = _call.get()
    if state is None:
        raise RuntimeError("current_context() called outside an RPC handler")
    return state.request_context()


def set_call(state: CallState) -> Token[CallState | None]:
    return _call.set(state)


def reset_call(token: Token[CallState | None]) -> None:
    """Undo `set_call`. A streaming behaviour that a client abandons is closed by asyncio's
    async-generator finaliser in a task of its own, where the token's context is not the
    current one: there is nothing to restore in that context, so clear it instead of raising
    "created in a different Context"."""
    try:
        _call.reset(token)
    except ValueError:
        _call.set(None)
