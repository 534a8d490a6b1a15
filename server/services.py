"""The composition root: every service, batcher and job of a server, built once here.

`build_services(deps)` creates each service package's service from the shared objects in
`Deps`; the transport (server/registry.py) only wraps them in servicers, and the scheduler's
jobs call the same service methods the RPCs call (their JobContext carries these Services).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from server.config import Settings
from server.conversion.service import ConversionService
from server.core.clock import Clock, system_clock
from server.core.pagination import PageTokens
from server.core.params_cache import Parameters
from server.db.session import Database
from server.jobs.registry import Job, utc_date_key
from server.jobs.scheduler import Scheduler
from server.ops.service import OpsService
from server.profile.activity import ActivityService
from server.profile.badges import BadgeService
from server.profile.endorsements import EndorsementService
from server.profile.portfolio import PortfolioService
from server.profile.reputation import MaintenanceService
from server.profile.service import ProfileService
from server.profile.skills import SkillService
from server.profile.use_cases import ProfileUseCases
from server.wallet.service import WalletService

DAILY_MAINTENANCE = "daily_maintenance"
BADGE_EVALUATION = "badge_evaluation"
CONVERSION_WINDOWS = "conversion_windows"
WORM_MAINTENANCE = "worm_maintenance"


@dataclass(slots=True)
class Deps:
    """Shared objects, one of each per server process."""

    settings: Settings
    database: Database
    clock: Clock = system_clock
    params: Parameters = field(init=False)
    page_tokens: PageTokens = field(init=False)

    def __post_init__(self) -> None:
        self.params = Parameters(self.database, ttl_s=self.settings.settings_ttl_s)
        self.page_tokens = PageTokens(self.settings.secret_key)


@dataclass(slots=True)
class Services:
    deps: Deps
    profile: ProfileUseCases
    wallet: WalletService
    conversion: ConversionService
    scheduler: Scheduler[Services] = field(init=False)
    # Over the scheduler, so built after it (the jobs package knows no services).
    ops: OpsService = field(init=False)
    # Awaited once the server has stopped taking calls (batchers finishing their work).
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def jobs() -> tuple[Job[Services], ...]:
    """The four jobs and their schedules (UTC). A job's body arrives with the issue that
    builds its use case; until then it is listed but not scheduled."""
    return (
        Job(
            DAILY_MAINTENANCE,
            "0 2 * * *",
            lambda ctx: ctx.services.profile.maintenance.daily_maintenance(ctx.request, ctx.now),
            "reputation decay and gain, levels, activity metrics",
            run_key=utc_date_key,
        ),
        Job(
            BADGE_EVALUATION,
            "0 * * * *",
            lambda ctx: ctx.services.profile.badges.evaluate(ctx.request, ctx.now),
            "rule-based badge awards",
        ),
        Job(
            CONVERSION_WINDOWS,
            "*/15 * * * *",
            lambda ctx: ctx.services.conversion.run_windows_job(ctx),
            "conversion window transitions, next-quarter window",
        ),
        Job(WORM_MAINTENANCE, "*/5 * * * *", None, "chain verification, checkpoints"),
    )


def build_services(deps: Deps) -> Services:
    settings = deps.settings
    batching = {
        "batch_max_size": settings.batch_max_size,
        "batch_max_inflight": settings.batch_max_inflight,
    }
    services = Services(
        deps=deps,
        profile=ProfileUseCases(
            accounts=ProfileService(deps.database, deps.params, clock=deps.clock, **batching),
            activity=ActivityService(deps.database, deps.params, clock=deps.clock),
            skills=SkillService(deps.database, deps.page_tokens),
            endorsements=EndorsementService(
                deps.database, deps.params, deps.page_tokens, clock=deps.clock
            ),
            badges=BadgeService(deps.database, deps.params, deps.page_tokens, clock=deps.clock),
            portfolio=PortfolioService(deps.database, deps.page_tokens),
            maintenance=MaintenanceService(deps.database, deps.params),
        ),
        wallet=WalletService(
            deps.database, deps.params, deps.page_tokens, clock=deps.clock, **batching
        ),
        conversion=ConversionService(
            deps.database, deps.params, deps.page_tokens, clock=deps.clock
        ),
    )
    services.on_stop += [services.profile.accounts.reads.drain, services.wallet.rewards.drain]
    services.scheduler = Scheduler(deps.database, services, jobs(), clock=deps.clock)
    services.ops = OpsService(
        deps.database,
        deps.params,
        deps.page_tokens,
        services.scheduler,
        blob_dir=settings.blob_dir,
        clock=deps.clock,
    )
    return services
