"""Business parameters: decoded once from the settings' JSON over their defaults, checked."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from server.core.params import DEFAULTS, BusinessParams
from server.core.params_cache import Parameters
from server.core.settings_defaults import SETTINGS_DEFAULTS
from server.db.session import Database


def test_defaults_decode_to_the_documented_values() -> None:
    p = DEFAULTS
    assert p.rewards.tier_base == {"S": 400, "A": 150, "B": 80, "C": 50}
    assert p.rewards.quality_multiplier[5] == Decimal("1.4")
    assert (p.rewards.cred_low_milli, p.rewards.cred_high_milli, p.rewards.daily_cap) == (
        700,
        1100,
        2000,
    )
    assert (p.gates.require_kyc, p.gates.min_rep, p.gates.require_device) == (True, 60, True)
    assert p.device.max_report_age == timedelta(hours=72)
    assert p.levels.thresholds == (0, 100, 250, 500, 900, 1400, 2000, 2700, 3500, 4400)
    assert (p.trust.low_milli, p.trust.high_milli) == (500, 1500)
    assert (p.xp.badge, p.xp.review_factor, p.xp.endorsement_factor) == (50, 5, 2)
    assert (p.xp.endorsement_daily_cap, p.endorsements.daily_limit) == (20, 5)
    assert p.reputation.decay == Decimal("0.995")
    assert (p.reputation.daily_gain_cap, p.reputation.ceiling) == (50, 10_000)
    assert p.conversion.default_rate_bps == 100
    assert p.upload.max_bytes == 25 * 1024 * 1024
    assert "application/pdf" in p.upload.allowed_types


@pytest.mark.parametrize("key", sorted(SETTINGS_DEFAULTS))
def test_every_default_is_decoded(key: str) -> None:
    """A setting in the defaults must be read (and checked) by BusinessParams.decode, else
    it would be a knob that changes nothing."""
    with pytest.raises(ValueError, match=r".+"):
        BusinessParams.decode({key: None})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("buz.daily_cap", -1, "outside"),
        ("buz.daily_cap", 1.5, "whole number"),
        ("buz.daily_cap", True, "whole number"),
        ("buz.daily_cap", "lots", "number"),
        ("buz.reviewer_cred_bounds", {"min": 1.2, "max": 1.1}, "min must not exceed max"),
        ("buz.reviewer_cred_bounds", {"min": 0.7}, "min"),
        ("buz.quality_multipliers", {"1": "x"}, "not a number"),
        ("gates.require_kyc", "yes", "true or false"),
        ("levels.thresholds", [0, 100, 100], "increase"),
        ("levels.thresholds", [5, 100], "start at 0"),
        ("reputation.decay", 1.5, "0..1"),
        ("reputation.ceiling", 20_000, "outside"),
        ("reputation.xp_divisor", 0, "outside"),
        ("conversion.default_rate_bps", 0, "outside"),
        ("upload.allowed_types", ["", "text/plain"], "media types"),
    ],
)
def test_a_bad_value_is_refused_naming_what_is_wrong(key: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessParams.decode({key: value})


def test_a_stored_value_overrides_its_default() -> None:
    p = BusinessParams.decode({"buz.daily_cap": 10, "gates.require_device_compliance": False})
    assert (p.rewards.daily_cap, p.gates.require_device) == (10, False)
    assert p.gates.min_rep == DEFAULTS.gates.min_rep


async def test_the_cache_reads_the_table_and_refreshes_when_invalidated(db: Database) -> None:
    params = Parameters(db, ttl_s=3600)
    assert (await params.current()).rewards.daily_cap == 2000
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE system_settings SET value = '77'::jsonb WHERE key = 'buz.daily_cap'")
        )
    assert (await params.current()).rewards.daily_cap == 2000  # cached within the TTL
    params.invalidate()
    assert (await params.current()).rewards.daily_cap == 77
