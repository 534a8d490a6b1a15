"""Background jobs: definitions (registry, definitions), runs (runner), timers (scheduler)."""

from server.jobs.registry import Job, JobContext, Outcome, Trigger, utc_date_key

__all__ = ["Job", "JobContext", "Outcome", "Trigger", "utc_date_key"]
