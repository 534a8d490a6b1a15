"""Business parameters: `system_settings` rows over their defaults, decoded once into types.

The defaults live only in server/core/settings_defaults.py. `BusinessParams.decode` turns the
JSON values into typed, checked parameter objects (one per rule family); every rule takes the
object it needs, so no rule carries its own copy of a default. A value that does not decode
(a wrong type, a bound out of range) is a ValueError naming its key.

Pure (no I/O): server/core/params_cache.py loads and caches them per process.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from server.core.settings_defaults import SETTINGS_DEFAULTS

MILLI = 1000
# The storage bound of reputation (profiles.rep_milli CHECK): a ceiling setting may lower it.
REP_MAX = 10_000


def _decimal(value: Any) -> Decimal:
    # Via str: a JSON number arrives as a float, and Decimal(0.7) is not 0.7.
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return result


def _int(value: Any, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a whole number")
    number = _decimal(value)
    if number != number.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number")
    result = int(number)
    if result < low or (high is not None and result > high):
        raise ValueError(f"{result} is outside {low}..{'' if high is None else high}")
    return result


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _milli(value: Any) -> int:
    """A decimal factor as an exact whole number of thousandths (0.7 → 700)."""
    scaled = _decimal(value) * MILLI
    if scaled != scaled.to_integral_value() or scaled < 0:
        raise ValueError(f"{value!r} must be >= 0 with at most three decimals")
    return int(scaled)


def _bounds_milli(value: Any) -> tuple[int, int]:
    if not isinstance(value, Mapping) or set(value) != {"min", "max"}:
        raise ValueError('must be {"min": x, "max": y}')
    low, high = _milli(value["min"]), _milli(value["max"])
    if low > high:
        raise ValueError("min must not exceed max")
    return low, high


@dataclass(frozen=True, slots=True)
class RewardParams:
    """Task rewards (BUZ and task XP): tier bases, quality multipliers, reviewerCred clamp,
    the daily BUZ cap."""

    tier_base: Mapping[str, int]
    quality_multiplier: Mapping[int, Decimal]
    cred_low_milli: int
    cred_high_milli: int
    daily_cap: int


@dataclass(frozen=True, slots=True)
class GateParams:
    """What must hold for BUZ to be issued (and converted)."""

    require_kyc: bool
    min_rep: int
    require_device: bool


@dataclass(frozen=True, slots=True)
class DeviceParams:
    """A compliant device report counts for `max_report_age`."""

    max_report_age: timedelta


@dataclass(frozen=True, slots=True)
class LevelParams:
    """XP needed for levels 1..n: starts at 0, strictly increasing."""

    thresholds: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.thresholds or self.thresholds[0] != 0:
            raise ValueError("level thresholds must start at 0")
        if any(b <= a for a, b in itertools.pairwise(self.thresholds)):
            raise ValueError("level thresholds must strictly increase")


@dataclass(frozen=True, slots=True)
class TrustParams:
    """clamp bounds of a user's trust weight sqrt(rep/100), in thousandths."""

    low_milli: int
    high_milli: int


@dataclass(frozen=True, slots=True)
class XpParams:
    """XP per badge, the factors of the trust-weighted sources, and the most XP an endorsee
    may get from endorsements per UTC day."""

    badge: int
    review_factor: int
    endorsement_factor: int
    endorsement_daily_cap: int


@dataclass(frozen=True, slots=True)
class EndorsementParams:
    daily_limit: int  # given per endorser per UTC day


@dataclass(frozen=True, slots=True)
class ReputationParams:
    """rep(d+1) = decay × rep(d) + min(daily_gain_cap, dailyGain(d)), at most ceiling;
    dailyGain = xpGain / xp_divisor + endorsementsWeighted / endorsement_divisor
    + badgesToday × badge_gain."""

    decay: Decimal
    daily_gain_cap: Decimal
    ceiling: int
    xp_divisor: int
    endorsement_divisor: int
    badge_gain: Decimal


@dataclass(frozen=True, slots=True)
class ConversionParams:
    default_rate_bps: int  # of the windows the job schedules


@dataclass(frozen=True, slots=True)
class UploadParams:
    max_bytes: int
    allowed_types: frozenset[str]


def _rewards(v: Mapping[str, Any]) -> RewardParams:
    tier_base = v["buz.tier_base"]
    quality = v["buz.quality_multipliers"]
    if not isinstance(tier_base, Mapping) or not tier_base:
        raise ValueError("buz.tier_base must map tiers to whole numbers")
    if not isinstance(quality, Mapping) or not quality:
        raise ValueError("buz.quality_multipliers must map qualities to factors")
    low, high = _bounds_milli(v["buz.reviewer_cred_bounds"])
    return RewardParams(
        tier_base={str(k): _int(n) for k, n in tier_base.items()},
        quality_multiplier={_int(k, 1): _decimal(f) for k, f in quality.items()},
        cred_low_milli=low,
        cred_high_milli=high,
        daily_cap=_int(v["buz.daily_cap"]),
    )


def _reputation(v: Mapping[str, Any]) -> ReputationParams:
    decay = _decimal(v["reputation.decay"])
    if not 0 <= decay <= 1:
        raise ValueError("reputation.decay must be in 0..1")
    cap = _decimal(v["reputation.daily_gain_cap"])
    badge_gain = _decimal(v["reputation.badge_gain"])
    if cap < 0 or badge_gain < 0:
        raise ValueError("reputation gains must be >= 0")
    return ReputationParams(
        decay=decay,
        daily_gain_cap=cap,
        ceiling=_int(v["reputation.ceiling"], 0, REP_MAX),
        xp_divisor=_int(v["reputation.xp_divisor"], 1),
        endorsement_divisor=_int(v["reputation.endorsement_divisor"], 1),
        badge_gain=badge_gain,
    )


def _upload(v: Mapping[str, Any]) -> UploadParams:
    types = v["upload.allowed_types"]
    if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
        raise ValueError("upload.allowed_types must be a list of media types")
    return UploadParams(max_bytes=_int(v["upload.max_bytes"], 1), allowed_types=frozenset(types))


@dataclass(frozen=True, slots=True)
class BusinessParams:
    """Every business parameter, typed and checked, grouped by the rule that uses it."""

    rewards: RewardParams
    gates: GateParams
    device: DeviceParams
    levels: LevelParams
    trust: TrustParams
    xp: XpParams
    endorsements: EndorsementParams
    reputation: ReputationParams
    conversion: ConversionParams
    upload: UploadParams

    @classmethod
    def decode(cls, values: Mapping[str, Any]) -> BusinessParams:
        """The parameters of `values` (key → JSON value), each missing key at its default."""
        v = {key: d.value for key, d in SETTINGS_DEFAULTS.items()} | dict(values)
        trust_low, trust_high = _bounds_milli(v["trust.weight_bounds"])
        levels = v["levels.thresholds"]
        if not isinstance(levels, list):
            raise ValueError("levels.thresholds must be a list of whole numbers")
        return cls(
            rewards=_rewards(v),
            gates=GateParams(
                require_kyc=_bool(v["gates.require_kyc"]),
                min_rep=_int(v["gates.min_reputation"], 0, REP_MAX),
                require_device=_bool(v["gates.require_device_compliance"]),
            ),
            device=DeviceParams(
                max_report_age=timedelta(hours=_int(v["device.max_report_age_hours"], 1))
            ),
            levels=LevelParams(tuple(_int(t) for t in levels)),
            trust=TrustParams(trust_low, trust_high),
            xp=XpParams(
                badge=_int(v["xp.badge"]),
                review_factor=_int(v["xp.review_multiplier"]),
                endorsement_factor=_int(v["xp.endorsement_multiplier"]),
                endorsement_daily_cap=_int(v["endorsements.daily_xp_cap"]),
            ),
            endorsements=EndorsementParams(daily_limit=_int(v["endorsements.daily_limit"])),
            reputation=_reputation(v),
            conversion=ConversionParams(
                default_rate_bps=_int(v["conversion.default_rate_bps"], 1, 10_000)
            ),
            upload=_upload(v),
        )


DEFAULTS = BusinessParams.decode({})
