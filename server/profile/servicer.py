"""ProfileService transport: each RPC maps its request (mappers), calls its use case and maps
the answer back. No SQL, no rules, nothing built here."""

from __future__ import annotations

from collections.abc import Sequence

import grpc.aio
from smartstart.profile.v1 import profile_service_pb2 as pb
from smartstart.profile.v1 import profile_service_pb2_grpc as pb_grpc

from server.core.idempotency import fingerprint
from server.core.proto import ServicerContext, from_timestamp
from server.interceptors import current_context
from server.profile import mappers
from server.profile.activity import ActivityService
from server.profile.service import ProfileService
from server.profile.use_cases import ProfileUseCases


class ProfileServicer(pb_grpc.ProfileServiceServicer):
    def __init__(self, profiles: ProfileService, activity: ActivityService) -> None:
        self._profiles = profiles
        self._activity = activity

    async def RegisterUser(
        self, request: pb.RegisterUserRequest, context: ServicerContext
    ) -> pb.User:
        view = await self._profiles.register_user(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            external_id=request.external_id,
            email=request.email,
            display_name=request.display_name,
            joined_at=from_timestamp(request, "joined_at"),
        )
        return mappers.user_pb(view)

    async def GetUser(self, request: pb.GetUserRequest, context: ServicerContext) -> pb.User:
        lookup = request.WhichOneof("lookup")
        view = await self._profiles.get_user(
            current_context(),
            user_id=request.user_id if lookup == "user_id" else None,
            external_id=request.external_id if lookup == "external_id" else None,
        )
        return mappers.user_pb(view)

    async def SetKycStatus(
        self, request: pb.SetKycStatusRequest, context: ServicerContext
    ) -> pb.User:
        view = await self._profiles.set_kyc_status(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            user_id=request.user_id,
            status=str(mappers.KYC_STATUSES.from_pb(request.status) or ""),
            note=request.note,
        )
        return mappers.user_pb(view)

    async def ReportDevicePosture(
        self, request: pb.ReportDevicePostureRequest, context: ServicerContext
    ) -> pb.DevicePosture:
        view = await self._profiles.report_device_posture(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            user_id=request.user_id,
            compliant=request.compliant,
            reported_at=from_timestamp(request, "reported_at"),
        )
        return mappers.posture_pb(view)

    async def GetDevicePosture(
        self, request: pb.GetDevicePostureRequest, context: ServicerContext
    ) -> pb.DevicePosture:
        view = await self._profiles.get_device_posture(current_context(), user_id=request.user_id)
        return mappers.posture_pb(view)

    async def GetProfile(
        self, request: pb.GetProfileRequest, context: ServicerContext
    ) -> pb.Profile:
        return mappers.profile_pb(
            await self._profiles.get_profile(current_context(), request.user_id)
        )

    async def GetMyProfile(
        self, request: pb.GetMyProfileRequest, context: ServicerContext
    ) -> pb.Profile:
        return mappers.profile_pb(await self._profiles.get_my_profile(current_context()))

    async def UpdateMyProfile(
        self, request: pb.UpdateMyProfileRequest, context: ServicerContext
    ) -> pb.Profile:
        view = await self._profiles.update_my_profile(
            current_context(), mappers.profile_changes(request)
        )
        return mappers.profile_pb(view)

    # --- activity events ----------------------------------------------------------------------

    async def RecordReviewSubmitted(
        self, request: pb.RecordReviewSubmittedRequest, context: ServicerContext
    ) -> pb.ActivityEvent:
        view = await self._activity.record_review(
            current_context(),
            request.event_id,
            from_timestamp(request, "occurred_at"),
            mappers.review(request.review),
        )
        return mappers.activity_pb(view)

    async def RecordBugReport(
        self, request: pb.RecordBugReportRequest, context: ServicerContext
    ) -> pb.ActivityEvent:
        view = await self._activity.record_bug_report(
            current_context(),
            request.event_id,
            from_timestamp(request, "occurred_at"),
            mappers.bug_report(request.report),
        )
        return mappers.activity_pb(view)

    async def RecordPolicyViolation(
        self, request: pb.RecordPolicyViolationRequest, context: ServicerContext
    ) -> pb.ActivityEvent:
        view = await self._activity.record_policy_violation(
            current_context(),
            request.event_id,
            from_timestamp(request, "occurred_at"),
            mappers.policy_violation(request.violation),
        )
        return mappers.activity_pb(view)


def register(server: grpc.aio.Server, profiles: ProfileUseCases) -> Sequence[str]:
    # The generated base class answers UNIMPLEMENTED for RPCs of later issues; the stubs
    # declare them abstract, hence the ignore (it goes when the last RPC is implemented).
    servicer = ProfileServicer(profiles.accounts, profiles.activity)  # type: ignore[abstract]
    pb_grpc.add_ProfileServiceServicer_to_server(servicer, server)
    return [pb.DESCRIPTOR.services_by_name["ProfileService"].full_name]
