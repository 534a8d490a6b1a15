"""Background jobs: definitions (registry), runs (runner, queries), timers (scheduler)."""

from server.jobs.registry import Job, JobContext, Outcome, Trigger, utc_date_key

__all__ = ["Job", "JobContext", "Outcome", "Trigger", "utc_date_key"]
