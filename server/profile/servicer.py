"""ProfileService transport: proto ⇄ use-case arguments and views. No SQL, no rules."""

from __future__ import annotations

from collections.abc import Sequence

import grpc.aio
from smartstart.profile.v1 import profile_service_pb2 as pb
from smartstart.profile.v1 import profile_service_pb2_grpc as pb_grpc

from server.convert import ServicerContext, from_timestamp, mask_changes, to_timestamp
from server.deps import Deps
from server.idempotency import fingerprint
from server.interceptors import current_context
from server.profile.profiles import EDITABLE, ProfileService, ProfileView
from server.profile.users import PostureView, UserService, UserView

_KYC_TO_PB = {
    "NONE": pb.KYC_STATUS_NONE,
    "PENDING": pb.KYC_STATUS_PENDING,
    "PASSED": pb.KYC_STATUS_PASSED,
    "FAILED": pb.KYC_STATUS_FAILED,
}
_KYC_FROM_PB = {v: k for k, v in _KYC_TO_PB.items()}
_THEME_TO_PB = {"AUTO": pb.THEME_AUTO, "LIGHT": pb.THEME_LIGHT, "DARK": pb.THEME_DARK}
_THEME_FROM_PB = {v: k for k, v in _THEME_TO_PB.items()}


def user_pb(view: UserView) -> pb.User:
    return pb.User(
        user_id=str(view.user_id),
        external_id=view.external_id,
        email=view.email,
        display_name=view.display_name,
        joined_at=to_timestamp(view.joined_at),
        kyc_status=_KYC_TO_PB[view.kyc_status],
        kyc_updated_at=to_timestamp(view.kyc_updated_at),
        wallet_id=str(view.wallet_id),
        created_at=to_timestamp(view.created_at),
    )


def posture_pb(view: PostureView) -> pb.DevicePosture:
    return pb.DevicePosture(
        user_id=str(view.user_id),
        device_compliant=view.device_compliant,
        device_compliant_days=view.device_compliant_days,
        last_report_compliant=view.last_report_compliant,
        last_reported_at=to_timestamp(view.last_reported_at),
        compliant_until=to_timestamp(view.compliant_until),
    )


def profile_pb(view: ProfileView) -> pb.Profile:
    return pb.Profile(
        user_id=str(view.user_id),
        display_name=view.display_name,
        nickname=view.nickname,
        bio=view.bio,
        location=view.location,
        website_url=view.website_url,
        avatar_url=view.avatar_url,
        theme=_THEME_TO_PB.get(view.theme, pb.THEME_AUTO),
        is_public=view.is_public,
        level=view.level,
        xp=view.xp,
        next_level_xp=view.next_level_xp,
        rep=view.rep,
        joined_at=to_timestamp(view.joined_at),
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
    )


class ProfileServicer(pb_grpc.ProfileServiceServicer):
    def __init__(self, users: UserService, profiles: ProfileService) -> None:
        self._users = users
        self._profiles = profiles

    async def RegisterUser(
        self, request: pb.RegisterUserRequest, context: ServicerContext
    ) -> pb.User:
        view = await self._users.register(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            external_id=request.external_id,
            email=request.email,
            display_name=request.display_name,
            joined_at=from_timestamp(request, "joined_at"),
        )
        return user_pb(view)

    async def GetUser(self, request: pb.GetUserRequest, context: ServicerContext) -> pb.User:
        lookup = request.WhichOneof("lookup")
        view = await self._users.get(
            current_context(),
            user_id=request.user_id if lookup == "user_id" else None,
            external_id=request.external_id if lookup == "external_id" else None,
        )
        return user_pb(view)

    async def SetKycStatus(
        self, request: pb.SetKycStatusRequest, context: ServicerContext
    ) -> pb.User:
        view = await self._users.set_kyc_status(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            user_id=request.user_id,
            status=_KYC_FROM_PB.get(request.status, ""),
            note=request.note,
        )
        return user_pb(view)

    async def ReportDevicePosture(
        self, request: pb.ReportDevicePostureRequest, context: ServicerContext
    ) -> pb.DevicePosture:
        view = await self._users.report_posture(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            user_id=request.user_id,
            compliant=request.compliant,
            reported_at=from_timestamp(request, "reported_at"),
        )
        return posture_pb(view)

    async def GetDevicePosture(
        self, request: pb.GetDevicePostureRequest, context: ServicerContext
    ) -> pb.DevicePosture:
        return posture_pb(await self._users.get_posture(current_context(), user_id=request.user_id))

    async def GetProfile(
        self, request: pb.GetProfileRequest, context: ServicerContext
    ) -> pb.Profile:
        return profile_pb(await self._profiles.get(current_context(), request.user_id))

    async def GetMyProfile(
        self, request: pb.GetMyProfileRequest, context: ServicerContext
    ) -> pb.Profile:
        return profile_pb(await self._profiles.get_mine(current_context()))

    async def UpdateMyProfile(
        self, request: pb.UpdateMyProfileRequest, context: ServicerContext
    ) -> pb.Profile:
        changes = mask_changes(request.profile, request.update_mask, EDITABLE)
        if "theme" in changes:
            changes["theme"] = _THEME_FROM_PB.get(changes["theme"], "")
        view = await self._profiles.update_mine(current_context(), changes)
        return profile_pb(view)


def register(server: grpc.aio.Server, deps: Deps) -> Sequence[str]:
    users = UserService(deps.database, deps.params)
    profiles = ProfileService(
        deps.database,
        deps.params,
        batch_max_size=deps.settings.batch_max_size,
        batch_max_inflight=deps.settings.batch_max_inflight,
    )
    deps.on_stop.append(profiles.reads.drain)
    # The generated base class answers UNIMPLEMENTED for RPCs of later issues; the stubs
    # declare them abstract, hence the ignore (it goes when the last RPC is implemented).
    servicer = ProfileServicer(users, profiles)  # type: ignore[abstract]
    pb_grpc.add_ProfileServiceServicer_to_server(servicer, server)
    return [pb.DESCRIPTOR.services_by_name["ProfileService"].full_name]
