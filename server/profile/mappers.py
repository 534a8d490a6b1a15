"""ProfileService messages ⇄ the profile package's domain types. Enums map by name."""

from __future__ import annotations

from typing import Any

from smartstart.profile.v1 import profile_service_pb2 as pb

from server.core.proto import ProtoEnum, mask_changes, to_timestamp
from server.profile.domain import EDITABLE, KycStatus, PostureView, ProfileView, Theme, UserView

KYC_STATUSES = ProtoEnum(KycStatus, pb.KycStatus.Value, "KYC_STATUS_")
THEMES = ProtoEnum(Theme, pb.Theme.Value, "THEME_")


def profile_changes(request: pb.UpdateMyProfileRequest) -> dict[str, Any]:
    """{field: value} for the mask's paths (the theme as its domain name; an unknown number
    stays visible to the use case's check)."""
    changes = mask_changes(request.profile, request.update_mask, EDITABLE)
    if "theme" in changes:
        changes["theme"] = str(THEMES.from_pb(changes["theme"]) or "")
    return changes


def user_pb(view: UserView) -> pb.User:
    return pb.User(
        user_id=str(view.user_id),
        external_id=view.external_id,
        email=view.email,
        display_name=view.display_name,
        joined_at=to_timestamp(view.joined_at),
        kyc_status=KYC_STATUSES.to_pb(view.kyc_status),
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
        theme=THEMES.to_pb(view.theme or Theme.AUTO),
        is_public=view.is_public,
        level=view.level,
        xp=view.xp,
        next_level_xp=view.next_level_xp,
        rep=view.rep,
        joined_at=to_timestamp(view.joined_at),
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
    )
