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
from server.profile.use_cases import ProfileUseCases


class ProfileServicer(pb_grpc.ProfileServiceServicer):
    def __init__(self, use_cases: ProfileUseCases) -> None:
        self._profiles = use_cases.accounts
        self._activity = use_cases.activity
        self._skills = use_cases.skills
        self._endorsements = use_cases.endorsements
        self._badges = use_cases.badges
        self._portfolio = use_cases.portfolio

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

    # --- skills -------------------------------------------------------------------------------

    async def CreateSkill(
        self, request: pb.CreateSkillRequest, context: ServicerContext
    ) -> pb.Skill:
        view = await self._skills.create_skill(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            slug_=request.slug,
            name=request.name,
            category=request.category,
        )
        return mappers.skill_pb(view)

    async def UpdateSkill(
        self, request: pb.UpdateSkillRequest, context: ServicerContext
    ) -> pb.Skill:
        view = await self._skills.update_skill(
            current_context(), request.skill.slug, mappers.skill_changes(request)
        )
        return mappers.skill_pb(view)

    async def ListSkills(
        self, request: pb.ListSkillsRequest, context: ServicerContext
    ) -> pb.ListSkillsResponse:
        page = await self._skills.list_skills(
            category=request.category,
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListSkillsResponse(
            skills=[mappers.skill_pb(s) for s in page.items], next_page_token=page.next_page_token
        )

    async def DeclareSkill(
        self, request: pb.DeclareSkillRequest, context: ServicerContext
    ) -> pb.UserSkill:
        view = await self._skills.declare_skill(
            current_context(),
            skill_slug=request.skill_slug,
            level=request.level,
            evidence=request.evidence_url,
        )
        return mappers.user_skill_pb(view)

    async def ListUserSkills(
        self, request: pb.ListUserSkillsRequest, context: ServicerContext
    ) -> pb.ListUserSkillsResponse:
        page = await self._skills.list_user_skills(
            current_context(),
            user_id=request.user_id,
            verified_only=request.verified_only,
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListUserSkillsResponse(
            skills=[mappers.user_skill_pb(s) for s in page.items],
            next_page_token=page.next_page_token,
        )

    async def VerifySkill(
        self, request: pb.VerifySkillRequest, context: ServicerContext
    ) -> pb.UserSkill:
        view = await self._skills.verify_skill(
            current_context(),
            user_id=request.user_id,
            skill_slug=request.skill_slug,
            expected_level=request.expected_level,
        )
        return mappers.user_skill_pb(view)

    # --- endorsements -------------------------------------------------------------------------

    async def EndorseUser(
        self, request: pb.EndorseUserRequest, context: ServicerContext
    ) -> pb.Endorsement:
        view = await self._endorsements.endorse(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            endorsee_user_id=request.endorsee_user_id,
            skill_slug=request.skill_slug,
        )
        return mappers.endorsement_pb(view)

    async def ListEndorsements(
        self, request: pb.ListEndorsementsRequest, context: ServicerContext
    ) -> pb.ListEndorsementsResponse:
        page = await self._endorsements.list_endorsements(
            current_context(),
            user_id=request.user_id,
            given=request.direction == pb.ENDORSEMENT_DIRECTION_GIVEN,
            skill_slug=request.skill_slug,
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListEndorsementsResponse(
            endorsements=[mappers.endorsement_pb(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    # --- badges -------------------------------------------------------------------------------

    async def ListBadges(
        self, request: pb.ListBadgesRequest, context: ServicerContext
    ) -> pb.ListBadgesResponse:
        page = await self._badges.list_badges(
            rule_type=str(mappers.RULE_TYPES.from_pb(request.rule_type) or ""),
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListBadgesResponse(
            badges=[mappers.badge_pb(b) for b in page.items], next_page_token=page.next_page_token
        )

    async def GetBadge(self, request: pb.GetBadgeRequest, context: ServicerContext) -> pb.Badge:
        return mappers.badge_pb(await self._badges.get_badge(request.code))

    async def CreateBadge(
        self, request: pb.CreateBadgeRequest, context: ServicerContext
    ) -> pb.Badge:
        view = await self._badges.create_badge(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            code=request.code,
            title=request.title,
            description=request.description,
            icon=request.icon,
            rule_type=str(mappers.RULE_TYPES.from_pb(request.rule_type) or ""),
            rule=mappers.rule_dict(request, "rule"),
        )
        return mappers.badge_pb(view)

    async def UpdateBadge(
        self, request: pb.UpdateBadgeRequest, context: ServicerContext
    ) -> pb.Badge:
        view = await self._badges.update_badge(
            current_context(), request.badge.code, mappers.badge_changes(request)
        )
        return mappers.badge_pb(view)

    async def AwardBadge(
        self, request: pb.AwardBadgeRequest, context: ServicerContext
    ) -> pb.BadgeAward:
        view = await self._badges.award_badge(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            code=request.code,
            user_id=request.user_id,
            note=request.note,
        )
        return mappers.award_pb(view)

    async def RevokeBadgeAward(
        self, request: pb.RevokeBadgeAwardRequest, context: ServicerContext
    ) -> pb.BadgeAward:
        view = await self._badges.revoke_award(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            code=request.code,
            user_id=request.user_id,
            reason=request.reason,
        )
        return mappers.award_pb(view)

    async def ListUserBadges(
        self, request: pb.ListUserBadgesRequest, context: ServicerContext
    ) -> pb.ListUserBadgesResponse:
        page = await self._badges.list_user_badges(
            current_context(),
            user_id=request.user_id,
            include_revoked=request.include_revoked,
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListUserBadgesResponse(
            awards=[mappers.award_pb(a) for a in page.items], next_page_token=page.next_page_token
        )

    # --- portfolio ----------------------------------------------------------------------------

    async def CreatePortfolioItem(
        self, request: pb.CreatePortfolioItemRequest, context: ServicerContext
    ) -> pb.PortfolioItem:
        view = await self._portfolio.create_item(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            fields=mappers.portfolio_fields(request),
        )
        return mappers.portfolio_pb(view)

    async def UpdatePortfolioItem(
        self, request: pb.UpdatePortfolioItemRequest, context: ServicerContext
    ) -> pb.PortfolioItem:
        view = await self._portfolio.update_item(
            current_context(), request.item.item_id, mappers.portfolio_changes(request)
        )
        return mappers.portfolio_pb(view)

    async def DeletePortfolioItem(
        self, request: pb.DeletePortfolioItemRequest, context: ServicerContext
    ) -> pb.DeletePortfolioItemResponse:
        await self._portfolio.delete_item(current_context(), request.item_id)
        return pb.DeletePortfolioItemResponse()

    async def ListPortfolio(
        self, request: pb.ListPortfolioRequest, context: ServicerContext
    ) -> pb.ListPortfolioResponse:
        page = await self._portfolio.list_items(
            current_context(),
            user_id=request.user_id,
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListPortfolioResponse(
            items=[mappers.portfolio_pb(i) for i in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetPortfolioItem(
        self, request: pb.GetPortfolioItemRequest, context: ServicerContext
    ) -> pb.PortfolioItem:
        return mappers.portfolio_pb(
            await self._portfolio.get_item(current_context(), request.item_id)
        )


def register(server: grpc.aio.Server, use_cases: ProfileUseCases) -> Sequence[str]:
    pb_grpc.add_ProfileServiceServicer_to_server(ProfileServicer(use_cases), server)
    return [pb.DESCRIPTOR.services_by_name["ProfileService"].full_name]
