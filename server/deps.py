"""What servicers and jobs are built from: one container, made once per server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.config import Settings
from server.pagination import PageTokens
from server.params import Parameters

if TYPE_CHECKING:
    from server.db.session import Database
    from server.jobs.scheduler import Scheduler


@dataclass(slots=True)
class Deps:
    """Shared objects, one of each per server. Service packages add typed fields here as
    they need them (a blob store, a signer)."""

    settings: Settings
    database: Database
    scheduler: Scheduler | None = None
    params: Parameters = field(init=False)
    page_tokens: PageTokens = field(init=False)
    # Awaited once the server has stopped taking calls (e.g. batchers finishing their work).
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.params = Parameters(self.database)
        self.page_tokens = PageTokens(self.settings.secret_key)
