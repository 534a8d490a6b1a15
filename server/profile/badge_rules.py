"""Badge rules: the one format, its validator and its evaluator, and the badge metrics. Pure.

The format (the contract's, the seeded badges', the validator's):

    condition  {"metric": <name>, <op>: <value>}   exactly one op of eq, gte, lte, gt, lt
    THRESHOLD  {"conditions": [condition, ...]}      all must hold
    COMPOSITE  {"all": [node, ...]} or {"any": [node, ...]}, a node being a condition or a
               group, nested at most MAX_DEPTH deep
    MANUAL     no rule (an empty object)

Numbers compare exactly (a JSON 4.0 is 4; reviewAgreementPct and avgTaskQuality are exact
fractions, repScore is the exact reputation). kycStatus compares with a status name, `eq`
only. An invalid rule is INVALID_ARGUMENT with a BadRequest violation whose field is the
JSON path of the offending part, e.g. `rule.conditions[1].metric`.
"""

from __future__ import annotations

import math
import operator
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

from server.core.errors import InvalidArgument
from server.core.validation import text, url
from server.profile.domain import BadgeRuleType, KycStatus, device_compliant_days, utc_day

OPERATORS = ("eq", "gte", "lte", "gt", "lt")
NUMERIC_METRICS = (
    "tasksAccepted",
    "daysSinceJoin",
    "criticalBugReports",
    "helpfulReviews",
    "reviewAgreementPct",
    "deviceCompliantDays",
    "policyViolations",
    "approvedConversions",
    "endorsementsReceived",
    "avgTaskQuality",
    "level",
    "repScore",
)
KYC_METRIC = "kycStatus"
METRICS = (*NUMERIC_METRICS, KYC_METRIC)
MAX_DEPTH = 5
MAX_CONDITIONS = 50

Value = int | Fraction | str


def _fail(path: str, why: str) -> InvalidArgument:
    return InvalidArgument.field(path, why)


def _number(value: Any, path: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(path, "must be a finite number")
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _condition(node: Mapping[str, Any], path: str) -> dict[str, Any]:
    metric = node.get("metric")
    if metric not in METRICS:
        raise _fail(f"{path}.metric", f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    ops = [key for key in node if key != "metric"]
    if len(ops) != 1 or ops[0] not in OPERATORS:
        bad = next((k for k in ops if k not in OPERATORS), None)
        where = f"{path}.{bad}" if bad is not None else path
        raise _fail(where, f"a condition has exactly one operator of {', '.join(OPERATORS)}")
    op = ops[0]
    if metric == KYC_METRIC:
        if op != "eq":
            raise _fail(f"{path}.{op}", "kycStatus compares with eq only")
        if not isinstance(node[op], str) or node[op] not in set(KycStatus):
            raise _fail(f"{path}.{op}", "must be NONE, PENDING, PASSED or FAILED")
        return {"metric": metric, op: node[op]}
    return {"metric": metric, op: _number(node[op], f"{path}.{op}")}


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _fail(path, "must be a non-empty list")
    return value


class _Counter:
    def __init__(self) -> None:
        self.conditions = 0

    def one(self, path: str) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise _fail(path, f"a rule has at most {MAX_CONDITIONS} conditions")


def _group(node: Any, path: str, depth: int, counter: _Counter) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        raise _fail(path, "must be an object")
    if "metric" in node:
        counter.one(path)
        return _condition(node, path)
    if len(node) != 1 or next(iter(node)) not in ("all", "any"):
        raise _fail(path, 'a node is a condition or a group {"all": [...]} / {"any": [...]}')
    if depth >= MAX_DEPTH:
        raise _fail(path, f"groups nest at most {MAX_DEPTH} deep")
    (kind,) = node
    children = _list(node[kind], f"{path}.{kind}")
    return {
        kind: [
            _group(child, f"{path}.{kind}[{i}]", depth + 1, counter)
            for i, child in enumerate(children)
        ]
    }


def validate_rule(
    rule_type: str, rule: Mapping[str, Any] | None, path: str = "rule"
) -> dict[str, Any]:
    """The rule, checked and normalised (integral numbers as integers); {} for MANUAL."""
    if rule_type == BadgeRuleType.MANUAL:
        if rule:
            raise _fail(path, "a MANUAL badge has no rule")
        return {}
    if not rule:
        raise _fail(path, f"a {rule_type} badge needs a rule")
    counter = _Counter()
    if rule_type == BadgeRuleType.THRESHOLD:
        if set(rule) != {"conditions"}:
            raise _fail(path, 'a THRESHOLD rule is {"conditions": [condition, ...]}')
        conditions = _list(rule["conditions"], f"{path}.conditions")
        checked = []
        for i, node in enumerate(conditions):
            where = f"{path}.conditions[{i}]"
            if not isinstance(node, Mapping) or "metric" not in node:
                raise _fail(where, 'must be a condition {"metric": <name>, <op>: <value>}')
            counter.one(where)
            checked.append(_condition(node, where))
        return {"conditions": checked}
    if rule_type == BadgeRuleType.COMPOSITE:
        if "metric" in rule:
            raise _fail(path, 'a COMPOSITE rule is a group {"all": [...]} or {"any": [...]}')
        return _group(rule, path, 0, counter)
    raise _fail("rule_type", "must be THRESHOLD, COMPOSITE or MANUAL")


# --- evaluation -----------------------------------------------------------------------------


def _exact(value: Any) -> int | Fraction:
    """A rule's number exactly (via its decimal text), as an int when it is whole: metrics
    that are whole numbers then compare as ints, which is exact and fast."""
    number = Fraction(Decimal(str(value)))
    return number.numerator if number.denominator == 1 else number


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "gte": operator.ge,
    "lte": operator.le,
    "gt": operator.gt,
    "lt": operator.lt,
}
Predicate = Callable[[Mapping[str, Value]], bool]


def _condition_predicate(condition: Mapping[str, Any]) -> Predicate:
    metric = condition["metric"]
    op = next(key for key in condition if key != "metric")
    if metric == KYC_METRIC:
        status = condition[op]
        return lambda metrics: op == "eq" and metrics[metric] == status
    compare, want = _COMPARE[op], _exact(condition[op])
    return lambda metrics: compare(metrics[metric], want)


def _node_predicate(node: Mapping[str, Any]) -> Predicate:
    if "metric" in node:
        return _condition_predicate(node)
    ((kind, children),) = node.items()
    parts = [_node_predicate(child) for child in children]
    if kind == "all":
        return lambda metrics: all(p(metrics) for p in parts)
    return lambda metrics: any(p(metrics) for p in parts)


def compile_rule(rule_type: str, rule: Mapping[str, Any]) -> Predicate:
    """A (valid) rule as a predicate over a user's metrics, its constants read once: the
    badge job compiles each rule once and applies it to every user."""
    if rule_type == BadgeRuleType.THRESHOLD:
        parts = [_condition_predicate(c) for c in rule["conditions"]]
        return lambda metrics: all(p(metrics) for p in parts)
    if rule_type == BadgeRuleType.COMPOSITE:
        return _node_predicate(rule)
    return lambda metrics: False  # MANUAL: only admins award it


def evaluate(rule_type: str, rule: Mapping[str, Any], metrics: Mapping[str, Value]) -> bool:
    """Whether a (valid) rule holds for a user's metrics; a MANUAL badge never does."""
    return compile_rule(rule_type, rule)(metrics)


def rule_metrics(rule: Mapping[str, Any]) -> set[str]:
    """The metrics a rule names (what an award's snapshot keeps)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if "metric" in node:
                found.add(node["metric"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(rule)
    return found


# --- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricFacts:
    """What a user's badge metrics are computed from (one row of the badge job's read)."""

    joined_at: datetime
    kyc_status: str
    level: int
    rep_milli: int
    tasks_accepted: int = 0
    critical_bug_reports: int = 0
    helpful_reviews: int = 0
    reviews_total: int = 0
    reviews_agreed: int = 0
    policy_violations: int = 0
    endorsements_received: int = 0
    quality_sum: int = 0
    quality_count: int = 0
    approved_conversions: int = 0
    compliant_days: Sequence[date] = ()  # UTC days with a compliant device report


def _ratio(numerator: int, denominator: int) -> int | Fraction:
    if not denominator:
        return 0
    exact = Fraction(numerator, denominator)
    return exact.numerator if exact.denominator == 1 else exact


def metric_values(facts: MetricFacts, now: datetime) -> dict[str, Value]:
    """Every badge metric of a user as of `now`: whole numbers as ints, the rest exact."""
    today = utc_day(now)
    return {
        "tasksAccepted": facts.tasks_accepted,
        "daysSinceJoin": (today - utc_day(facts.joined_at)).days,
        "criticalBugReports": facts.critical_bug_reports,
        "helpfulReviews": facts.helpful_reviews,
        "reviewAgreementPct": _ratio(100 * facts.reviews_agreed, facts.reviews_total),
        "kycStatus": facts.kyc_status,
        "deviceCompliantDays": device_compliant_days(
            ((d, True) for d in facts.compliant_days), today
        ),
        "policyViolations": facts.policy_violations,
        "approvedConversions": facts.approved_conversions,
        "endorsementsReceived": facts.endorsements_received,
        "avgTaskQuality": _ratio(facts.quality_sum, facts.quality_count),
        "level": facts.level,
        "repScore": _ratio(facts.rep_milli, 1000),
    }


def snapshot(metrics: Mapping[str, Value], names: Iterable[str]) -> dict[str, Any]:
    """The named metrics as JSON: whole numbers as integers, fractions to three decimals."""
    out: dict[str, Any] = {}
    for name in sorted(names):
        value = metrics[name]
        if isinstance(value, str | int):
            out[name] = value
        elif value.denominator == 1:
            out[name] = int(value)
        else:
            out[name] = float(round(Decimal(value.numerator) / value.denominator, 3))
    return out


# --- badges and awards ---------------------------------------------------------------------

_CODE = re.compile(r"[A-Z0-9_]{3,64}")
BADGE_EDITABLE = ("title", "description", "icon", "rule")
MAX_NOTE_LENGTH = 500


class AwardSource(StrEnum):
    RULE = "RULE"
    MANUAL = "MANUAL"


@dataclass(frozen=True, slots=True)
class BadgeView:
    badge_id: uuid.UUID
    code: str
    title: str
    description: str
    icon: str
    rule_type: str
    rule: Mapping[str, Any]
    award_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AwardView:
    award_id: uuid.UUID
    user_id: uuid.UUID
    badge_code: str
    badge_title: str
    badge_icon: str
    status: str
    awarded_by: str  # "" for rule awards
    awarded_at: datetime
    metric_snapshot: Mapping[str, Any]
    revoked_at: datetime | None
    revoked_by: str
    revoke_reason: str

    @property
    def source(self) -> AwardSource:
        return AwardSource.MANUAL if self.awarded_by else AwardSource.RULE


def badge_code(value: str, field: str = "code") -> str:
    if not _CODE.fullmatch(value):
        raise InvalidArgument.field(field, "must be 3..64 characters of [A-Z0-9_]")
    return value


def badge_text(name: str, value: str) -> str:
    """title 1..80, description 0..500, icon: a name or an absolute https URL, 0..300."""
    if name == "title":
        return text(value, name, min_length=1, max_length=80)
    if name == "description":
        return text(value, name, max_length=500)
    if "://" in value:
        return url(value, name, max_length=300, schemes=("https",))
    return text(value, name, max_length=300)


def validate_badge_changes(rule_type: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Column values of an UpdateBadge, the rule checked against the badge's own type."""
    if not changes:
        raise InvalidArgument.field("update_mask", "must name at least one field")
    return {
        name: validate_rule(rule_type, value, "badge.rule")
        if name == "rule"
        else badge_text(name, value)
        for name, value in changes.items()
    }
