"""The integrity gauges: what the last chain verification found, the last checkpoint and the
open incidents, as Prometheus sees them.

They mirror database state, so every worker process sets the same values; in multiprocess
mode (server/workers.py) the supervisor reports the largest ("max"), i.e. that value.
"""

from __future__ import annotations

from prometheus_client import Gauge

from server.jobs.registry import Outcome
from server.ops.domain import IntegrityView

OPEN_INCIDENTS = Gauge(
    "smartstart_integrity_open_incidents",
    "Detected chain breaks not yet resolved",
    multiprocess_mode="max",
)
VERIFICATION_OK = Gauge(
    "smartstart_integrity_verification_ok",
    "1 when the last chain verification (worm_maintenance run) succeeded, 0 when it failed,"
    " -1 before any",
    multiprocess_mode="max",
)
LAST_VERIFICATION = Gauge(
    "smartstart_integrity_last_verification_timestamp_seconds",
    "Start of the last chain verification run (Unix time); 0 before any",
    multiprocess_mode="max",
)
LAST_CHECKPOINT = Gauge(
    "smartstart_integrity_last_checkpoint_timestamp_seconds",
    "When the last signed checkpoint was made (Unix time); 0 before any",
    multiprocess_mode="max",
)


def record_integrity(view: IntegrityView) -> None:
    OPEN_INCIDENTS.set(view.open_incidents)
    last = view.last_verification
    if last is None:
        VERIFICATION_OK.set(-1)
        LAST_VERIFICATION.set(0)
    else:
        VERIFICATION_OK.set(0 if last.outcome is Outcome.FAILED else 1)
        LAST_VERIFICATION.set(last.started_at.timestamp())
    checkpoint = view.last_checkpoint_at
    LAST_CHECKPOINT.set(checkpoint.timestamp() if checkpoint else 0)
