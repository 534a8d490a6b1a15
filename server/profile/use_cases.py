"""The profile package's use cases, one object per concept, as the composition root
(server/services.py) builds them; the servicer maps each RPC to one of them."""

from __future__ import annotations

from dataclasses import dataclass

from server.profile.activity import ActivityService
from server.profile.reputation import MaintenanceService
from server.profile.service import ProfileService


@dataclass(frozen=True, slots=True)
class ProfileUseCases:
    accounts: ProfileService  # users, KYC, device posture, profiles
    activity: ActivityService  # activity events
    maintenance: MaintenanceService  # the daily maintenance job
