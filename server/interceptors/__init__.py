"""The server's interceptor chain, outermost first:

request id + access log + metrics → error mapping → auth (JWT, access policy) → rate limit →
request check (decodes, no control characters in text) → servicer.

Error mapping sits just inside observability, so every refusal (auth, rate limit, a bad
request, a use case's DomainError) and every unexpected exception becomes a status in one
place, and the access log sees the final code.

Servicers read the caller with `current_context()`, which is valid inside an RPC handler.
"""

from __future__ import annotations

import grpc.aio

from server.config import Settings
from server.interceptors._wrap import InterceptorChain
from server.interceptors.auth import AuthInterceptor
from server.interceptors.context import current_context
from server.interceptors.errors import ErrorInterceptor, abort_with_error, to_rpc_status
from server.interceptors.observability import ObservabilityInterceptor
from server.interceptors.policy import Policy, load_policies
from server.interceptors.ratelimit import RateLimitInterceptor
from server.interceptors.requests import checked_requests

__all__ = [
    "AuthInterceptor",
    "Policy",
    "abort_with_error",
    "build_interceptors",
    "current_context",
    "load_policies",
    "to_rpc_status",
]


def build_interceptors(
    settings: Settings, auth: AuthInterceptor
) -> list[grpc.aio.ServerInterceptor]:
    """The chain, as one grpc interceptor; `auth` is passed in because its policy table is
    set later."""
    return [
        InterceptorChain(
            [
                ObservabilityInterceptor(),
                ErrorInterceptor(),
                auth,
                RateLimitInterceptor(
                    anonymous=settings.rate_limit_anonymous,
                    authenticated=settings.rate_limit_authenticated,
                    window_s=settings.rate_limit_window_s,
                ),
            ],
            prepare=checked_requests,
        )
    ]
