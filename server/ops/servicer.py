"""OpsService transport: each RPC maps its request (mappers), calls its use case and maps the
answer back. No SQL, no rules, nothing built here."""

from __future__ import annotations

from collections.abc import Sequence

import grpc.aio
from smartstart.ops.v1 import ops_service_pb2 as pb
from smartstart.ops.v1 import ops_service_pb2_grpc as pb_grpc

from server.core.idempotency import fingerprint
from server.core.proto import ServicerContext
from server.interceptors import current_context
from server.ops import mappers
from server.ops.service import OpsService


class OpsServicer(pb_grpc.OpsServiceServicer):
    def __init__(self, ops: OpsService) -> None:
        self._ops = ops

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: ServicerContext
    ) -> pb.ListJobsResponse:
        page = await self._ops.list_jobs(
            current_context(),
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListJobsResponse(
            jobs=[mappers.job_pb(j) for j in page.items], next_page_token=page.next_page_token
        )

    async def GetJobHealth(
        self, request: pb.GetJobHealthRequest, context: ServicerContext
    ) -> pb.Job:
        return mappers.job_pb(await self._ops.get_job_health(current_context(), request.name))

    async def RunJob(self, request: pb.RunJobRequest, context: ServicerContext) -> pb.JobRun:
        run = await self._ops.run_job(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            name=request.name,
            wait=request.wait,
            time_left_s=context.time_remaining(),
        )
        return mappers.run_pb(run)

    async def ListJobRuns(
        self, request: pb.ListJobRunsRequest, context: ServicerContext
    ) -> pb.ListJobRunsResponse:
        page = await self._ops.list_job_runs(
            current_context(),
            **mappers.run_filters(request),
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListJobRunsResponse(
            runs=[mappers.run_pb(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def ListSettings(
        self, request: pb.ListSettingsRequest, context: ServicerContext
    ) -> pb.ListSettingsResponse:
        page = await self._ops.list_settings(
            current_context(),
            key_prefix=request.key_prefix,
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListSettingsResponse(
            settings=[mappers.setting_pb(s) for s in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetSetting(
        self, request: pb.GetSettingRequest, context: ServicerContext
    ) -> pb.Setting:
        return mappers.setting_pb(await self._ops.get_setting(current_context(), request.key))

    async def UpdateSetting(
        self, request: pb.UpdateSettingRequest, context: ServicerContext
    ) -> pb.Setting:
        view = await self._ops.update_setting(
            current_context(),
            key=request.setting.key,
            etag=request.setting.etag,
            changes=mappers.setting_changes(request),
            reason=request.reason,
        )
        return mappers.setting_pb(view)

    async def GetSystemStatus(
        self, request: pb.GetSystemStatusRequest, context: ServicerContext
    ) -> pb.SystemStatus:
        return mappers.system_status_pb(await self._ops.system_status(current_context()))


def register(server: grpc.aio.Server, service: OpsService) -> Sequence[str]:
    pb_grpc.add_OpsServiceServicer_to_server(OpsServicer(service), server)
    return [pb.DESCRIPTOR.services_by_name["OpsService"].full_name]
