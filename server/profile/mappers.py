"""ProfileService messages ⇄ the profile package's domain types. Enums map by name."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from smartstart.profile.v1 import profile_service_pb2 as pb

from server.core.proto import ProtoEnum, mask_changes, to_timestamp
from server.profile.activity_rules import (
    ActivityView,
    BugReport,
    BugSeverity,
    PolicyViolation,
    ReviewSubmitted,
)
from server.profile.badge_rules import BADGE_EDITABLE, AwardSource, AwardView, BadgeView
from server.profile.domain import (
    EDITABLE,
    ActivityKind,
    AwardStatus,
    BadgeRuleType,
    KycStatus,
    PostureView,
    ProfileView,
    Theme,
    UserView,
)
from server.profile.portfolio_rules import PORTFOLIO_EDITABLE, PortfolioView
from server.profile.skills_rules import (
    SKILL_EDITABLE,
    EndorsementView,
    SkillView,
    UserSkillView,
)

KYC_STATUSES = ProtoEnum(KycStatus, pb.KycStatus.Value, "KYC_STATUS_")
THEMES = ProtoEnum(Theme, pb.Theme.Value, "THEME_")
BUG_SEVERITIES = ProtoEnum(BugSeverity, pb.BugSeverity.Value, "BUG_SEVERITY_")
RULE_TYPES = ProtoEnum(BadgeRuleType, pb.BadgeRuleType.Value, "BADGE_RULE_TYPE_")
AWARD_STATUSES = ProtoEnum(AwardStatus, pb.BadgeAwardStatus.Value, "BADGE_AWARD_STATUS_")
AWARD_SOURCES = ProtoEnum(AwardSource, pb.BadgeAwardSource.Value, "BADGE_AWARD_SOURCE_")


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


# --- skills and endorsements ------------------------------------------------------------------


def skill_changes(request: pb.UpdateSkillRequest) -> dict[str, Any]:
    return mask_changes(request.skill, request.update_mask, SKILL_EDITABLE)


def skill_pb(view: SkillView) -> pb.Skill:
    return pb.Skill(
        slug=view.slug,
        name=view.name,
        category=view.category,
        skill_id=str(view.skill_id),
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
    )


def user_skill_pb(view: UserSkillView) -> pb.UserSkill:
    return pb.UserSkill(
        user_id=str(view.user_id),
        skill_slug=view.skill_slug,
        skill_name=view.skill_name,
        skill_category=view.skill_category,
        level=view.level,
        evidence_url=view.evidence_url,
        verified=view.verified,
        verified_by=view.verified_by,
        verified_at=to_timestamp(view.verified_at),
        endorsement_count=view.endorsement_count,
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
    )


def endorsement_pb(view: EndorsementView) -> pb.Endorsement:
    return pb.Endorsement(
        endorsement_id=str(view.endorsement_id),
        endorser_user_id=str(view.endorser_user_id),
        endorsee_user_id=str(view.endorsee_user_id),
        skill_slug=view.skill_slug,
        created_at=to_timestamp(view.created_at),
    )


# --- badges -----------------------------------------------------------------------------------


def rule_dict(message: Any, field: str) -> dict[str, Any] | None:
    """A Struct field as JSON (None when unset or empty: no rule)."""
    if not message.HasField(field):
        return None
    value: dict[str, Any] = json_format.MessageToDict(getattr(message, field))
    return value or None


def _struct(value: Any) -> Struct:
    out = Struct()
    out.update(dict(value))
    return out


def badge_changes(request: pb.UpdateBadgeRequest) -> dict[str, Any]:
    changes = mask_changes(request.badge, request.update_mask, BADGE_EDITABLE)
    if "rule" in changes:
        changes["rule"] = rule_dict(request.badge, "rule")
    return changes


def badge_pb(view: BadgeView) -> pb.Badge:
    return pb.Badge(
        code=view.code,
        title=view.title,
        description=view.description,
        icon=view.icon,
        rule_type=RULE_TYPES.to_pb(view.rule_type),
        rule=_struct(view.rule) if view.rule else None,
        award_count=view.award_count,
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
    )


def award_pb(view: AwardView) -> pb.BadgeAward:
    return pb.BadgeAward(
        award_id=str(view.award_id),
        user_id=str(view.user_id),
        badge_code=view.badge_code,
        badge_title=view.badge_title,
        badge_icon=view.badge_icon,
        status=AWARD_STATUSES.to_pb(view.status),
        source=AWARD_SOURCES.to_pb(view.source),
        awarded_at=to_timestamp(view.awarded_at),
        awarded_by=view.awarded_by,
        metric_snapshot=_struct(view.metric_snapshot) if view.metric_snapshot else None,
        revoked_at=to_timestamp(view.revoked_at),
        revoked_by=view.revoked_by,
        revoke_reason=view.revoke_reason,
    )


# --- portfolio --------------------------------------------------------------------------------


def _item_fields(message: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(message, name)
        if name in ("urls", "document_ids"):
            value = list(value)
        elif name == "impact_metrics":
            value = dict(value)
        out[name] = value
    return out


def portfolio_fields(request: pb.CreatePortfolioItemRequest) -> dict[str, Any]:
    return _item_fields(request, PORTFOLIO_EDITABLE)


def portfolio_changes(request: pb.UpdatePortfolioItemRequest) -> dict[str, Any]:
    paths = tuple(mask_changes(request.item, request.update_mask, PORTFOLIO_EDITABLE))
    return _item_fields(request.item, paths)


def portfolio_pb(view: PortfolioView) -> pb.PortfolioItem:
    return pb.PortfolioItem(
        item_id=str(view.item_id),
        owner_user_id=str(view.owner_user_id),
        title=view.title,
        description=view.description,
        urls=list(view.urls),
        document_ids=[str(d) for d in view.document_ids],
        task_id=view.task_id,
        buz_earned=view.buz_earned,
        impact_metrics=dict(view.impact_metrics),
        is_public=view.is_public,
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
    )
