"""The profile package's use cases, one object per concept, as the composition root
(server/services.py) builds them; the servicer maps each RPC to one of them."""

from __future__ import annotations

from dataclasses import dataclass

from server.profile.activity import ActivityService
from server.profile.badges import BadgeService
from server.profile.endorsements import EndorsementService
from server.profile.portfolio import PortfolioService
from server.profile.reputation import MaintenanceService
from server.profile.service import ProfileService
from server.profile.skills import SkillService


@dataclass(frozen=True, slots=True)
class ProfileUseCases:
    accounts: ProfileService  # users, KYC, device posture, profiles
    activity: ActivityService  # activity events
    skills: SkillService  # the catalogue, declared skills, verification
    endorsements: EndorsementService
    badges: BadgeService  # directory, awards, the hourly evaluation job
    portfolio: PortfolioService
    maintenance: MaintenanceService  # the daily maintenance job
