"""The defaults of every business parameter: the one place each default is written.

The initial migration seeds `system_settings` from here, and server/core/params.py decodes
stored values over these defaults into typed parameters. Values are JSON. Decimal factors
(multipliers, decay) are JSON numbers, decoded as `Decimal(str(value))`: no rule does money
arithmetic in binary floats.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, NamedTuple


class ValueType(StrEnum):
    """The JSON type of a setting's value (the contract's SettingValueType). The ranges and
    shapes within a type are checked where the value is decoded (server/core/params.py)."""

    INTEGER = "INTEGER"
    NUMBER = "NUMBER"
    STRING = "STRING"
    BOOLEAN = "BOOLEAN"
    JSON = "JSON"


class SettingDefault(NamedTuple):
    value: Any
    description: str
    value_type: ValueType


SETTINGS_DEFAULTS: Final[dict[str, SettingDefault]] = {
    # BUZ rewards
    "buz.daily_cap": SettingDefault(
        2000, "Max BUZ issued per user per UTC day of acceptance", ValueType.INTEGER
    ),
    "buz.tier_base": SettingDefault(
        {"S": 400, "A": 150, "B": 80, "C": 50}, "Base BUZ (and XP) per task tier", ValueType.JSON
    ),
    "buz.quality_multipliers": SettingDefault(
        {"1": 0.6, "2": 0.8, "3": 1.0, "4": 1.2, "5": 1.4},
        "Multiplier per review quality 1..5",
        ValueType.JSON,
    ),
    "buz.reviewer_cred_bounds": SettingDefault(
        {"min": 0.7, "max": 1.1}, "clamp bounds of sqrt(avgReviewerTrust/100)", ValueType.JSON
    ),
    # Gates on BUZ issuance and conversion
    "gates.require_kyc": SettingDefault(
        True, "KYC must be PASSED to receive or convert BUZ", ValueType.BOOLEAN
    ),
    "gates.min_reputation": SettingDefault(
        60, "Minimum reputation (floor) to receive BUZ", ValueType.INTEGER
    ),
    "gates.require_device_compliance": SettingDefault(
        True, "Latest device report must be compliant and recent to receive BUZ", ValueType.BOOLEAN
    ),
    "device.max_report_age_hours": SettingDefault(
        72, "A compliant device report counts for this many hours", ValueType.INTEGER
    ),
    # Endorsements
    "endorsements.daily_limit": SettingDefault(
        5, "Endorsements an endorser may give per UTC day", ValueType.INTEGER
    ),
    "endorsements.daily_xp_cap": SettingDefault(
        20, "XP an endorsee may get from endorsements per UTC day", ValueType.INTEGER
    ),
    # XP and levels
    "xp.badge": SettingDefault(50, "XP per badge awarded", ValueType.INTEGER),
    "xp.review_multiplier": SettingDefault(
        5, "XP per positive review received, times the reviewer's trust weight", ValueType.INTEGER
    ),
    "xp.endorsement_multiplier": SettingDefault(
        2, "XP per endorsement received, times the endorser's trust weight", ValueType.INTEGER
    ),
    "levels.thresholds": SettingDefault(
        [0, 100, 250, 500, 900, 1400, 2000, 2700, 3500, 4400],
        "XP needed for levels 1..10",
        ValueType.JSON,
    ),
    "trust.weight_bounds": SettingDefault(
        {"min": 0.5, "max": 1.5},
        "clamp bounds of a user's trust weight sqrt(rep/100)",
        ValueType.JSON,
    ),
    # Reputation (daily job)
    "reputation.decay": SettingDefault(
        0.995, "rep(d+1) = decay * rep(d) + min(cap, gain(d))", ValueType.NUMBER
    ),
    "reputation.daily_gain_cap": SettingDefault(
        50, "Max reputation gained per UTC day", ValueType.NUMBER
    ),
    "reputation.ceiling": SettingDefault(10000, "Reputation never exceeds this", ValueType.INTEGER),
    "reputation.xp_divisor": SettingDefault(10, "dailyGain term: xpGain / this", ValueType.INTEGER),
    "reputation.endorsement_divisor": SettingDefault(
        5, "dailyGain term: endorsementsWeighted / this", ValueType.INTEGER
    ),
    "reputation.badge_gain": SettingDefault(
        20, "dailyGain term: badges awarded that day * this", ValueType.NUMBER
    ),
    # Conversion
    "conversion.default_rate_bps": SettingDefault(
        100,
        "Default equity_rate_bps (bp of venture equity per 10,000 BUZ) of new windows",
        ValueType.INTEGER,
    ),
    # Documents
    "upload.max_bytes": SettingDefault(
        26214400, "Max document size in bytes (25 MiB)", ValueType.INTEGER
    ),
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
        ValueType.JSON,
    ),
}
