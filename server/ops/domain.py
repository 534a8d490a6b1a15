"""OpsService rules: a setting's value by its type, its etag, a job's health, the system's
problems. Pure: no I/O, no transport."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.core.errors import InvalidArgument
from server.core.params import BusinessParams
from server.core.settings_defaults import SETTINGS_DEFAULTS, SettingDefault, ValueType
from server.jobs.registry import JobStatus, Outcome, RunRecord

__all__ = ["Outcome", "RunRecord", "ValueType"]

# Who wrote the seeded rows (the initial migration): such a row still has its default.
SEEDED_BY = "migration"
MAX_DESCRIPTION_LENGTH = 500
MAX_REASON_LENGTH = 500
MAX_KEY_LENGTH = 128
# JSON numbers are doubles: whole numbers are exact up to 2^53.
MAX_EXACT_INTEGER = 2**53


@dataclass(frozen=True, slots=True)
class StoredSetting:
    """A system_settings row (None for a key whose row was never written)."""

    value: Any
    description: str
    updated_at: datetime
    updated_by: str | None


@dataclass(frozen=True, slots=True)
class SettingView:
    key: str
    value: Any
    description: str
    value_type: ValueType
    default_value: Any
    updated_at: datetime | None  # None while the seeded default stands
    updated_by: str | None
    etag: str


def etag(value: Any, updated_at: datetime | None) -> str:
    """A version tag of a setting: its value and when it was written. Rewriting the same
    value still changes it (updated_at moves), so a stale read is always caught."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    stamp = updated_at.isoformat() if updated_at else ""
    return hashlib.sha256(f"{canonical}|{stamp}".encode()).hexdigest()[:20]


def setting_view(key: str, default: SettingDefault, row: StoredSetting | None) -> SettingView:
    if row is None:
        return SettingView(
            key=key,
            value=default.value,
            description=default.description,
            value_type=default.value_type,
            default_value=default.value,
            updated_at=None,
            updated_by=None,
            etag=etag(default.value, None),
        )
    changed = row.updated_by != SEEDED_BY
    return SettingView(
        key=key,
        value=row.value,
        description=row.description,
        value_type=default.value_type,
        default_value=default.value,
        updated_at=row.updated_at if changed else None,
        updated_by=row.updated_by if changed else None,
        etag=etag(row.value, row.updated_at),
    )


def setting_default(key: str) -> SettingDefault | None:
    return SETTINGS_DEFAULTS.get(key)


def _whole(value: float) -> int | float:
    """A JSON number without a fraction as an int (JSON over protobuf carries doubles)."""
    if math.isfinite(value) and value == int(value) and abs(value) <= MAX_EXACT_INTEGER:
        return int(value)
    return value


def _normalized(value: Any) -> Any:
    """Whole numbers anywhere in a JSON value as ints; non-finite numbers refused."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
        return _whole(value)
    if isinstance(value, Mapping):
        return {str(k): _normalized(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_normalized(v) for v in value]
    raise ValueError(f"{type(value).__name__} is not JSON")


def typed_value(value_type: ValueType, raw: Any) -> Any:
    """`raw` (a decoded JSON value) as a value of `value_type`, or ValueError saying why."""
    value = _normalized(raw)
    if value_type is ValueType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number up to {MAX_EXACT_INTEGER}")
        if abs(value) > MAX_EXACT_INTEGER:
            raise ValueError(f"must be a whole number up to {MAX_EXACT_INTEGER}")
    elif value_type is ValueType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
    elif value_type is ValueType.STRING:
        if not isinstance(value, str):
            raise ValueError("must be a string")
    elif value_type is ValueType.BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
    elif not isinstance(value, dict | list):
        raise ValueError("must be a JSON object or list")
    return value


def checked_value(key: str, raw: Any, stored: Mapping[str, Any]) -> Any:
    """The new value of `key`, checked by type and then by the parameters' own decoding
    (ranges, shapes) together with every other stored value: INVALID_ARGUMENT on `value`."""
    default = SETTINGS_DEFAULTS[key]
    try:
        value = typed_value(default.value_type, raw)
        BusinessParams.decode({**stored, key: value})
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidArgument.field("value", f"{key}: {exc}") from None
    return value


# --- jobs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobHealth:
    status: JobStatus
    healthy: bool
    problem: str | None  # why it is not healthy


def job_health(status: JobStatus) -> JobHealth:
    """Healthy: the job has a body, its last finished run did not fail, and it succeeded
    within twice its schedule interval (before any success, the server's start counts)."""
    problem: str | None = None
    last = status.last_run
    finished = last is not None and last.outcome is not Outcome.RUNNING
    if not status.implemented:
        problem = "not implemented"
    elif finished and last is not None and last.outcome is Outcome.FAILED:
        problem = f"last run failed: {(last.error or '')[:200]}"
    else:
        reference = status.last_success or status.since
        if status.now - reference > 2 * status.interval:
            problem = f"no success since {reference.isoformat()}"
    return JobHealth(status=status, healthy=problem is None, problem=problem)


# --- system status -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComponentView:
    healthy: bool
    detail: str


@dataclass(frozen=True, slots=True)
class IntegrityView:
    last_verification: RunRecord | None
    last_checkpoint_at: datetime | None
    open_incidents: int
    oldest_open_incident_at: datetime | None

    @property
    def healthy(self) -> bool:
        failed = (
            self.last_verification is not None and self.last_verification.outcome is Outcome.FAILED
        )
        return self.open_incidents == 0 and not failed


@dataclass(frozen=True, slots=True)
class SystemStatusView:
    checked_at: datetime
    instance: str
    version: str
    database: ComponentView
    blob_store: ComponentView
    jobs: Sequence[JobHealth]
    integrity: IntegrityView

    @property
    def problems(self) -> list[str]:
        found: list[str] = []
        if not self.database.healthy:
            found.append(f"database: {self.database.detail}")
        if not self.blob_store.healthy:
            found.append(f"blob store: {self.blob_store.detail}")
        found.extend(f"job {j.status.name}: {j.problem}" for j in self.jobs if j.problem)
        if self.integrity.open_incidents:
            found.append(f"integrity: {self.integrity.open_incidents} open incident(s)")
        last = self.integrity.last_verification
        if last is not None and last.outcome is Outcome.FAILED:
            found.append("integrity: the last verification failed")
        return found

    @property
    def healthy(self) -> bool:
        return not self.problems
