"""The defaults of every business parameter (SPEC.md), and the seeded badges.

The initial migration seeds `system_settings` and `badges` from here, and the settings cache
falls back to these values, so each default is written once. Values are JSON. Decimal
factors (multipliers, decay) are JSON numbers: read them with `Decimal(str(value))`, never do
money arithmetic in binary floats.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple


class SettingDefault(NamedTuple):
    value: Any
    description: str


SETTINGS_DEFAULTS: Final[dict[str, SettingDefault]] = {
    # BUZ rewards
    "buz.daily_cap": SettingDefault(2000, "Max BUZ issued per user per UTC day of acceptance"),
    "buz.tier_base": SettingDefault(
        {"S": 400, "A": 150, "B": 80, "C": 50}, "Base BUZ (and XP) per task tier"
    ),
    "buz.quality_multipliers": SettingDefault(
        {"1": 0.6, "2": 0.8, "3": 1.0, "4": 1.2, "5": 1.4},
        "Multiplier per review quality 1..5",
    ),
    "buz.reviewer_cred_bounds": SettingDefault(
        {"min": 0.7, "max": 1.1}, "clamp bounds of sqrt(avgReviewerTrust/100)"
    ),
    # Gates on BUZ issuance and conversion
    "gates.require_kyc": SettingDefault(True, "KYC must be PASSED to receive or convert BUZ"),
    "gates.min_reputation": SettingDefault(60, "Minimum reputation (floor) to receive BUZ"),
    "gates.require_device_compliance": SettingDefault(
        True, "Latest device report must be compliant and recent to receive BUZ"
    ),
    "device.max_report_age_hours": SettingDefault(
        72, "A compliant device report counts for this many hours"
    ),
    # Endorsements
    "endorsements.daily_limit": SettingDefault(5, "Endorsements an endorser may give per UTC day"),
    "endorsements.daily_xp_cap": SettingDefault(
        20, "XP an endorsee may get from endorsements per UTC day"
    ),
    # XP and levels
    "xp.badge": SettingDefault(50, "XP per badge awarded"),
    "xp.review_multiplier": SettingDefault(
        5, "XP per positive review received, times the reviewer's trust weight"
    ),
    "xp.endorsement_multiplier": SettingDefault(
        2, "XP per endorsement received, times the endorser's trust weight"
    ),
    "levels.thresholds": SettingDefault(
        [0, 100, 250, 500, 900, 1400, 2000, 2700, 3500, 4400], "XP needed for levels 1..10"
    ),
    "trust.weight_bounds": SettingDefault(
        {"min": 0.5, "max": 1.5}, "clamp bounds of a user's trust weight sqrt(rep/100)"
    ),
    # Reputation (daily job)
    "reputation.decay": SettingDefault(0.995, "rep(d+1) = decay * rep(d) + min(cap, gain(d))"),
    "reputation.daily_gain_cap": SettingDefault(50, "Max reputation gained per UTC day"),
    "reputation.ceiling": SettingDefault(10000, "Reputation never exceeds this"),
    "reputation.xp_divisor": SettingDefault(10, "dailyGain term: xpGain / this"),
    "reputation.endorsement_divisor": SettingDefault(
        5, "dailyGain term: endorsementsWeighted / this"
    ),
    "reputation.badge_gain": SettingDefault(20, "dailyGain term: badges awarded that day * this"),
    # Conversion
    "conversion.default_rate_bps": SettingDefault(
        100, "Default equity_rate_bps (bp of venture equity per 10,000 BUZ) of new windows"
    ),
    # Documents
    "upload.max_bytes": SettingDefault(26214400, "Max document size in bytes (25 MiB)"),
    "upload.allowed_types": SettingDefault(
        [
            "application/pdf",
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "text/plain",
            "text/csv",
            "application/json",
            "application/zip",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        ],
        "Media types accepted for upload (sniffed from content)",
    ),
}


class BadgeSeed(NamedTuple):
    code: str
    title: str
    description: str
    icon: str
    rule_type: str
    rule: dict[str, Any]


def _cond(metric: str, op: str, value: Any) -> dict[str, Any]:
    return {"metric": metric, "op": op, "value": value}


SEED_BADGES: Final[tuple[BadgeSeed, ...]] = (
    BadgeSeed(
        "EARLY_CONTRIBUTOR",
        "Early Contributor",
        "Five accepted tasks within 90 days of joining",
        "early-contributor",
        "THRESHOLD",
        {"conditions": [_cond("tasksAccepted", "gte", 5), _cond("daysSinceJoin", "lte", 90)]},
    ),
    BadgeSeed(
        "BUG_HUNTER_BRONZE",
        "Bug Hunter (Bronze)",
        "Three critical bug reports",
        "bug-hunter-bronze",
        "THRESHOLD",
        {"conditions": [_cond("criticalBugReports", "gte", 3)]},
    ),
    BadgeSeed(
        "TOP_REVIEWER",
        "Top Reviewer",
        "Fifty helpful reviews agreeing with consensus at least 80% of the time",
        "top-reviewer",
        "THRESHOLD",
        {
            "conditions": [
                _cond("helpfulReviews", "gte", 50),
                _cond("reviewAgreementPct", "gte", 80),
            ]
        },
    ),
    BadgeSeed(
        "SECURITY_CHAMPION",
        "Security Champion",
        "KYC passed, 90 device-compliant days in a row, no policy violations",
        "security-champion",
        "THRESHOLD",
        {
            "conditions": [
                _cond("kycStatus", "eq", "PASSED"),
                _cond("deviceCompliantDays", "gte", 90),
                _cond("policyViolations", "eq", 0),
            ]
        },
    ),
    BadgeSeed(
        "EQUITY_PIONEER",
        "Equity Pioneer",
        "First approved BUZ-to-equity conversion",
        "equity-pioneer",
        "THRESHOLD",
        {"conditions": [_cond("approvedConversions", "gte", 1)]},
    ),
    BadgeSeed(
        "COMMUNITY_BUILDER",
        "Community Builder",
        "Ten endorsements received and an average task quality of at least 4.0",
        "community-builder",
        "THRESHOLD",
        {
            "conditions": [
                _cond("endorsementsReceived", "gte", 10),
                _cond("avgTaskQuality", "gte", 4.0),
            ]
        },
    ),
)
