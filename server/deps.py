"""What servicers and jobs are built from: one container, made once per server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.config import Settings

if TYPE_CHECKING:
    from server.db.session import Database
    from server.jobs.scheduler import Scheduler


@dataclass(slots=True)
class Deps:
    """Shared objects. Service packages add typed fields here as they need them
    (e.g. a settings cache, a blob store); `extras` holds anything not worth a field yet."""

    settings: Settings
    database: Database
    scheduler: Scheduler | None = None
    extras: dict[str, Any] = field(default_factory=dict)
