"""The badges every database starts with (migrations 0001 and 0003, and `smartstart seed`),
and the small skills catalogue `smartstart seed` adds. Rules are in the one format of
server/profile/badge_rules.py."""

from __future__ import annotations

from typing import Any, Final, NamedTuple


class BadgeSeed(NamedTuple):
    code: str
    title: str
    description: str
    icon: str
    rule_type: str
    rule: dict[str, Any]


def _cond(metric: str, op: str, value: Any) -> dict[str, Any]:
    return {"metric": metric, op: value}


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


class SkillSeed(NamedTuple):
    slug: str
    name: str
    category: str


SEED_SKILLS: Final[tuple[SkillSeed, ...]] = (
    SkillSeed("python", "Python", "engineering"),
    SkillSeed("typescript", "TypeScript", "engineering"),
    SkillSeed("postgresql", "PostgreSQL", "engineering"),
    SkillSeed("security-review", "Security review", "engineering"),
    SkillSeed("ux-research", "UX research", "design"),
    SkillSeed("visual-design", "Visual design", "design"),
    SkillSeed("product-management", "Product management", "product"),
    SkillSeed("technical-writing", "Technical writing", "communication"),
)
