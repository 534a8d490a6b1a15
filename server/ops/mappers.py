"""OpsService messages ⇄ the ops domain types. Enums map by name (core/proto.py); setting
values travel as google.protobuf.Value and are plain JSON values inside."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2
from smartstart.ops.v1 import ops_service_pb2 as pb

from server.core.errors import InvalidArgument
from server.core.proto import ProtoEnum, from_timestamp, to_timestamp
from server.jobs.registry import Outcome, RunRecord, Trigger
from server.ops.domain import (
    ComponentView,
    IntegrityView,
    JobHealth,
    SettingView,
    SystemStatusView,
    ValueType,
)

OUTCOMES = ProtoEnum(Outcome, pb.JobRunOutcome.Value, "JOB_RUN_OUTCOME_")
TRIGGERS = ProtoEnum(Trigger, pb.JobTrigger.Value, "JOB_TRIGGER_")
VALUE_TYPES = ProtoEnum(ValueType, pb.SettingValueType.Value, "SETTING_VALUE_TYPE_")


def outcome_filter(number: int) -> Outcome | None:
    """UNSPECIFIED: any outcome; a number no outcome has is INVALID_ARGUMENT."""
    if number == pb.JOB_RUN_OUTCOME_UNSPECIFIED:
        return None
    outcome = OUTCOMES.from_pb(number)
    if outcome is None:
        raise InvalidArgument.field("outcome", "is not a JobRunOutcome")
    return outcome


def run_filters(request: pb.ListJobRunsRequest) -> dict[str, Any]:
    return {
        "job_name": request.job_name,
        "outcome": outcome_filter(request.outcome),
        "start": from_timestamp(request, "start_time"),
        "end": from_timestamp(request, "end_time"),
    }


def _json(value: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    json_format.ParseDict(value, message)
    return message


def setting_changes(request: pb.UpdateSettingRequest) -> dict[str, Any]:
    """{path: new value} for the mask's paths; the value as a plain JSON value. Paths the
    use case does not know stay in, for it to refuse."""
    changes: dict[str, Any] = {}
    setting = request.setting
    for path in request.update_mask.paths:
        if path == "value":
            if setting.value.WhichOneof("kind") is None:
                raise InvalidArgument.field("value", "is required when the mask names it")
            changes[path] = json_format.MessageToDict(setting.value)
        elif path == "description":
            changes[path] = setting.description
        else:
            changes[path] = None
    return changes


def run_pb(run: RunRecord) -> pb.JobRun:
    return pb.JobRun(
        run_id=str(run.run_id),
        job_name=run.job,
        trigger=TRIGGERS.to_pb(run.trigger),
        triggered_by=run.triggered_by or "",
        run_key=run.run_key or "",
        started_at=to_timestamp(run.started_at),
        finished_at=to_timestamp(run.finished_at),
        outcome=OUTCOMES.to_pb(run.outcome),
        counts=dict(run.counts),
        error=(run.error or "")[:1000],
        instance=run.instance,
    )


def job_pb(health: JobHealth) -> pb.Job:
    status = health.status
    return pb.Job(
        name=status.name,
        description=status.description,
        schedule=status.cron,
        scheduler_running=status.scheduler_running,
        last_run=run_pb(status.last_run) if status.last_run else None,
        last_success_at=to_timestamp(status.last_success),
        next_run_at=to_timestamp(status.next_run),
        running=status.running,
        healthy=health.healthy,
        implemented=status.implemented,
    )


def setting_pb(view: SettingView) -> pb.Setting:
    return pb.Setting(
        key=view.key,
        value=_json(view.value),
        description=view.description,
        value_type=VALUE_TYPES.to_pb(view.value_type),
        default_value=_json(view.default_value),
        updated_at=to_timestamp(view.updated_at),
        updated_by=view.updated_by or "",
        etag=view.etag,
    )


def _component_pb(view: ComponentView) -> pb.ComponentStatus:
    return pb.ComponentStatus(healthy=view.healthy, detail=view.detail[:500])


def _integrity_pb(view: IntegrityView) -> pb.IntegrityStatus:
    last = view.last_verification
    return pb.IntegrityStatus(
        last_verification=run_pb(last) if last else None,
        last_checkpoint_at=to_timestamp(view.last_checkpoint_at),
        open_incidents=view.open_incidents,
        oldest_open_incident_at=to_timestamp(view.oldest_open_incident_at),
        healthy=view.healthy,
    )


def system_status_pb(view: SystemStatusView) -> pb.SystemStatus:
    return pb.SystemStatus(
        healthy=view.healthy,
        problems=view.problems,
        checked_at=to_timestamp(view.checked_at),
        instance=view.instance,
        version=view.version,
        database=_component_pb(view.database),
        blob_store=_component_pb(view.blob_store),
        jobs=[job_pb(j) for j in view.jobs],
        integrity=_integrity_pb(view.integrity),
    )
