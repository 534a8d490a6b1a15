"""ProfileService messages ⇄ the profile package's domain types. Enums map by name."""

from __future__ import annotations

from typing import Any

from smartstart.profile.v1 import profile_service_pb2 as pb

from server.core.proto import ProtoEnum, mask_changes, to_timestamp
from server.profile.activity_rules import (
    ActivityView,
    BugReport,
    BugSeverity,
    PolicyViolation,
    ReviewSubmitted,
)
from server.profile.domain import (
    EDITABLE,
    ActivityKind,
    KycStatus,
    PostureView,
    ProfileView,
    Theme,
    UserView,
)

KYC_STATUSES = ProtoEnum(KycStatus, pb.KycStatus.Value, "KYC_STATUS_")
THEMES = ProtoEnum(Theme, pb.Theme.Value, "THEME_")
BUG_SEVERITIES = ProtoEnum(BugSeverity, pb.BugSeverity.Value, "BUG_SEVERITY_")


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


# --- activity events --------------------------------------------------------------------------


def review(message: pb.ReviewSubmitted) -> ReviewSubmitted:
    return ReviewSubmitted(
        reviewer_user_id=message.reviewer_user_id,
        subject_user_id=message.subject_user_id,
        review_id=message.review_id,
        task_id=message.task_id,
        helpful=message.helpful,
        agreed_with_consensus=message.agreed_with_consensus,
        positive=message.positive,
    )


def bug_report(message: pb.BugReport) -> BugReport:
    return BugReport(
        user_id=message.user_id,
        severity=str(BUG_SEVERITIES.from_pb(message.severity) or ""),
        bug_id=message.bug_id,
    )


def policy_violation(message: pb.PolicyViolation) -> PolicyViolation:
    return PolicyViolation(
        user_id=message.user_id, policy_code=message.policy_code, note=message.note
    )


def activity_pb(view: ActivityView) -> pb.ActivityEvent:
    p = view.payload
    message = pb.ActivityEvent(
        event_id=view.event_id,
        occurred_at=to_timestamp(view.occurred_at),
        recorded_at=to_timestamp(view.recorded_at),
    )
    if view.kind == ActivityKind.REVIEW_SUBMITTED:
        message.review_submitted.CopyFrom(
            pb.ReviewSubmitted(
                reviewer_user_id=p["reviewer_user_id"],
                subject_user_id=p["subject_user_id"],
                review_id=p["review_id"],
                task_id=p["task_id"],
                helpful=p["helpful"],
                agreed_with_consensus=p["agreed_with_consensus"],
                positive=p["positive"],
            )
        )
    elif view.kind == ActivityKind.BUG_REPORT:
        message.bug_report.CopyFrom(
            pb.BugReport(
                user_id=p["user_id"],
                severity=BUG_SEVERITIES.to_pb(p["severity"]),
                bug_id=p["bug_id"],
            )
        )
    else:
        message.policy_violation.CopyFrom(
            pb.PolicyViolation(user_id=p["user_id"], policy_code=p["policy_code"], note=p["note"])
        )
    return message
