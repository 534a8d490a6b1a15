"""The SPEC's four jobs (SPEC.md "Background jobs"). Bodies are filled in by their services."""

from __future__ import annotations

from server.jobs.registry import Counts, Job, JobContext, utc_date_key


async def daily_maintenance(ctx: JobContext) -> Counts:
    """Reputation decay and gain, level recalculation, activity metrics."""
    return {}


async def badge_evaluation(ctx: JobContext) -> Counts:
    """Rule-based badge awards."""
    return {}


async def conversion_windows(ctx: JobContext) -> Counts:
    """Window transitions, the next quarter's window, expiries."""
    return {}


async def worm_maintenance(ctx: JobContext) -> Counts:
    """Chain verification and signed checkpoints."""
    return {}


DAILY_MAINTENANCE = "daily_maintenance"
BADGE_EVALUATION = "badge_evaluation"
CONVERSION_WINDOWS = "conversion_windows"
WORM_MAINTENANCE = "worm_maintenance"

JOBS: tuple[Job, ...] = (
    Job(
        DAILY_MAINTENANCE,
        "0 2 * * *",
        daily_maintenance,
        "reputation decay and gain, levels, activity metrics",
        run_key=utc_date_key,
    ),
    Job(BADGE_EVALUATION, "0 * * * *", badge_evaluation, "rule-based badge awards"),
    Job(CONVERSION_WINDOWS, "*/15 * * * *", conversion_windows, "conversion window transitions"),
    Job(WORM_MAINTENANCE, "*/5 * * * *", worm_maintenance, "chain verification, checkpoints"),
)
