"""The badge rule format: validator (every refusal names its JSON path), evaluator (tables
and properties), metrics and snapshots."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.errors import InvalidArgument
from server.profile.badge_rules import (
    KYC_METRIC,
    MAX_CONDITIONS,
    MAX_DEPTH,
    NUMERIC_METRICS,
    OPERATORS,
    MetricFacts,
    evaluate,
    metric_values,
    rule_metrics,
    snapshot,
    validate_rule,
)
from server.profile.seeds import SEED_BADGES

NOW = datetime(2026, 8, 1, 12, tzinfo=UTC)


def path_of(rule_type: str, rule: Any) -> str:
    with pytest.raises(InvalidArgument) as err:
        validate_rule(rule_type, rule)
    (violation,) = err.value.violations
    return violation.field


def c(metric: str, op: str, value: Any) -> dict[str, Any]:
    return {"metric": metric, op: value}


# --- validator -------------------------------------------------------------------------------


def test_seeded_rules_are_valid_in_the_one_format() -> None:
    for badge in SEED_BADGES:
        assert validate_rule(badge.rule_type, badge.rule) == badge.rule


@pytest.mark.parametrize(
    ("rule_type", "rule", "path"),
    [
        ("THRESHOLD", None, "rule"),
        ("THRESHOLD", {}, "rule"),
        ("COMPOSITE", None, "rule"),
        ("MANUAL", {"conditions": [c("level", "gte", 2)]}, "rule"),
        ("THRESHOLD", {"all": [c("level", "gte", 2)]}, "rule"),
        ("THRESHOLD", {"conditions": []}, "rule.conditions"),
        ("THRESHOLD", {"conditions": "level"}, "rule.conditions"),
        (
            "THRESHOLD",
            {"conditions": [c("level", "gte", 1), c("karma", "gte", 1)]},
            "rule.conditions[1].metric",
        ),
        ("THRESHOLD", {"conditions": [c("level", "ge", 1)]}, "rule.conditions[0].ge"),
        ("THRESHOLD", {"conditions": [{"metric": "level"}]}, "rule.conditions[0]"),
        (
            "THRESHOLD",
            {"conditions": [{"metric": "level", "gte": 1, "lte": 3}]},
            "rule.conditions[0]",
        ),
        ("THRESHOLD", {"conditions": [c("level", "gte", "2")]}, "rule.conditions[0].gte"),
        ("THRESHOLD", {"conditions": [c("level", "gte", True)]}, "rule.conditions[0].gte"),
        ("THRESHOLD", {"conditions": [c("level", "gte", float("nan"))]}, "rule.conditions[0].gte"),
        ("THRESHOLD", {"conditions": [c(KYC_METRIC, "gte", "PASSED")]}, "rule.conditions[0].gte"),
        ("THRESHOLD", {"conditions": [c(KYC_METRIC, "eq", "APPROVED")]}, "rule.conditions[0].eq"),
        ("THRESHOLD", {"conditions": [{"all": [c("level", "gte", 1)]}]}, "rule.conditions[0]"),
        ("COMPOSITE", c("level", "gte", 1), "rule"),
        ("COMPOSITE", {"all": [c("level", "gte", 1)], "any": [c("level", "gte", 1)]}, "rule"),
        ("COMPOSITE", {"none": [c("level", "gte", 1)]}, "rule"),
        ("COMPOSITE", {"all": []}, "rule.all"),
        (
            "COMPOSITE",
            {"all": [c("level", "gte", 1), {"any": [c("lvl", "eq", 1)]}]},
            "rule.all[1].any[0].metric",
        ),
        ("COMPOSITE", {"any": [{"all": [c("level", "between", 1)]}]}, "rule.any[0].all[0].between"),
        ("COMPOSITE", {"any": [3]}, "rule.any[0]"),
        ("FANCY", {"conditions": [c("level", "gte", 1)]}, "rule_type"),
    ],
)
def test_an_invalid_rule_names_the_offending_path(rule_type: str, rule: Any, path: str) -> None:
    assert path_of(rule_type, rule) == path


def test_limits_on_size_and_depth() -> None:
    deep: dict[str, Any] = c("level", "gte", 1)
    for _ in range(MAX_DEPTH):
        deep = {"all": [deep]}
    validate_rule("COMPOSITE", deep)
    assert path_of("COMPOSITE", {"any": [deep]}).startswith("rule.any[0]")
    many = {"conditions": [c("level", "gte", i) for i in range(MAX_CONDITIONS + 1)]}
    assert path_of("THRESHOLD", many) == f"rule.conditions[{MAX_CONDITIONS}]"


def test_validation_normalises_integral_numbers() -> None:
    got = validate_rule("THRESHOLD", {"conditions": [c("tasksAccepted", "gte", 5.0)]})
    assert got == {"conditions": [c("tasksAccepted", "gte", 5)]}
    assert validate_rule("MANUAL", None) == {} == validate_rule("MANUAL", {})


# --- evaluator -------------------------------------------------------------------------------


def facts(**overrides: Any) -> MetricFacts:
    base: dict[str, Any] = {
        "joined_at": NOW - timedelta(days=10),
        "kyc_status": "NONE",
        "level": 1,
        "rep_milli": 0,
    }
    return MetricFacts(**(base | overrides))


def holds(rule: dict[str, Any], rule_type: str = "THRESHOLD", **fact: Any) -> bool:
    return evaluate(rule_type, validate_rule(rule_type, rule), metric_values(facts(**fact), NOW))


def test_the_seeded_rules_at_their_edges() -> None:
    early = next(b.rule for b in SEED_BADGES if b.code == "EARLY_CONTRIBUTOR")
    assert not holds(early, tasks_accepted=4)
    assert holds(early, tasks_accepted=5)
    assert holds(early, tasks_accepted=5, joined_at=NOW - timedelta(days=90))
    assert not holds(early, tasks_accepted=5, joined_at=NOW - timedelta(days=91))
    reviewer = next(b.rule for b in SEED_BADGES if b.code == "TOP_REVIEWER")
    assert holds(reviewer, helpful_reviews=50, reviews_total=50, reviews_agreed=40)  # 80 %
    assert not holds(reviewer, helpful_reviews=50, reviews_total=51, reviews_agreed=40)
    builder = next(b.rule for b in SEED_BADGES if b.code == "COMMUNITY_BUILDER")
    assert holds(builder, endorsements_received=10, quality_sum=12, quality_count=3)  # 4.0
    assert not holds(builder, endorsements_received=10, quality_sum=11, quality_count=3)
    assert not holds(builder, endorsements_received=10)  # no tasks: average 0
    champion = next(b.rule for b in SEED_BADGES if b.code == "SECURITY_CHAMPION")
    days = [NOW.date() - timedelta(days=i) for i in range(90)]
    assert holds(champion, kyc_status="PASSED", compliant_days=days)
    assert not holds(champion, kyc_status="PASSED", compliant_days=days[:-1])
    assert not holds(champion, kyc_status="PASSED", compliant_days=days, policy_violations=1)
    assert not holds(champion, kyc_status="PENDING", compliant_days=days)


def test_metrics_and_snapshot() -> None:
    m = metric_values(
        facts(
            reviews_total=3,
            reviews_agreed=2,
            rep_milli=60_500,
            quality_sum=9,
            quality_count=2,
            compliant_days=[date(2026, 8, 1), date(2026, 7, 31), date(2026, 7, 29)],
        ),
        NOW,
    )
    assert m["reviewAgreementPct"] == Fraction(200, 3)
    assert m["repScore"] == Fraction(121, 2)
    assert m["deviceCompliantDays"] == 2
    assert m["daysSinceJoin"] == 10
    assert snapshot(m, {"reviewAgreementPct", "avgTaskQuality", "kycStatus", "level"}) == {
        "avgTaskQuality": 4.5,
        "kycStatus": "NONE",
        "level": 1,
        "reviewAgreementPct": 66.667,
    }
    assert holds({"conditions": [c("repScore", "gte", 60.5)]}, rep_milli=60_500)
    assert not holds({"conditions": [c("repScore", "gt", 60.5)]}, rep_milli=60_500)


# --- properties ------------------------------------------------------------------------------

numbers = st.one_of(st.integers(-5, 200), st.sampled_from([0.5, 4.0, 66.667, 80.0]))
conditions = st.one_of(
    st.builds(c, st.sampled_from(NUMERIC_METRICS), st.sampled_from(OPERATORS), numbers),
    st.builds(c, st.just(KYC_METRIC), st.just("eq"), st.sampled_from(["NONE", "PASSED"])),
)
nodes = st.recursive(
    conditions,
    lambda inner: st.builds(
        lambda kind, children: {kind: children},
        st.sampled_from(["all", "any"]),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=8,
)
groups = st.builds(
    lambda kind, children: {kind: children},
    st.sampled_from(["all", "any"]),
    st.lists(nodes, min_size=1, max_size=3),
)
metric_sets = st.builds(
    metric_values,
    st.builds(
        facts,
        tasks_accepted=st.integers(0, 120),
        helpful_reviews=st.integers(0, 120),
        reviews_total=st.integers(0, 120),
        reviews_agreed=st.integers(0, 120),
        policy_violations=st.integers(0, 3),
        endorsements_received=st.integers(0, 30),
        quality_sum=st.integers(0, 500),
        quality_count=st.integers(0, 100),
        level=st.integers(1, 10),
        rep_milli=st.integers(0, 200_000),
        kyc_status=st.sampled_from(["NONE", "PASSED"]),
        joined_at=st.sampled_from([NOW - timedelta(days=d) for d in (0, 5, 90, 91, 400)]),
    ),
    st.just(NOW),
)


def _depth(node: Any) -> int:
    if "metric" in node:
        return 0
    (children,) = node.values()
    return 1 + max(_depth(child) for child in children)


def _count(node: Any) -> int:
    if "metric" in node:
        return 1
    (children,) = node.values()
    return sum(_count(child) for child in children)


@settings(max_examples=300)
@given(groups, metric_sets)
def test_a_group_is_the_and_or_or_of_its_children(rule: dict[str, Any], metrics: Any) -> None:
    if _depth(rule) > MAX_DEPTH or _count(rule) > MAX_CONDITIONS:
        return
    assert validate_rule("COMPOSITE", rule) is not None
    ((kind, children),) = rule.items()
    each = [
        evaluate("COMPOSITE", child, metrics)
        if "metric" not in child
        else evaluate("THRESHOLD", {"conditions": [child]}, metrics)
        for child in children
    ]
    assert evaluate("COMPOSITE", rule, metrics) == (all(each) if kind == "all" else any(each))
    assert rule_metrics(rule) <= set(metrics)


@settings(max_examples=300)
@given(st.lists(conditions, min_size=1, max_size=6), metric_sets)
def test_threshold_is_all_of_its_conditions(conds: list[dict[str, Any]], metrics: Any) -> None:
    threshold = evaluate("THRESHOLD", validate_rule("THRESHOLD", {"conditions": conds}), metrics)
    assert threshold == evaluate("COMPOSITE", {"all": conds}, metrics)
    assert threshold == all(evaluate("COMPOSITE", {"any": [x]}, metrics) for x in conds)


@settings(max_examples=300)
@given(st.sampled_from(NUMERIC_METRICS), numbers, metric_sets)
def test_operators_agree_with_each_other(metric: str, value: Any, metrics: Any) -> None:
    def op(name: str) -> bool:
        return evaluate("THRESHOLD", {"conditions": [c(metric, name, value)]}, metrics)

    assert op("gte") == (op("gt") or op("eq"))
    assert op("lte") == (op("lt") or op("eq"))
    assert op("lt") == (not op("gte"))
    assert op("gt") == (not op("lte"))


@settings(max_examples=200)
@given(groups, st.sampled_from(["karma", "xp", "LEVEL"]), st.data())
def test_an_unknown_metric_anywhere_is_named_by_its_path(
    rule: dict[str, Any], bad: str, data: st.DataObject
) -> None:
    if _depth(rule) > MAX_DEPTH or _count(rule) > MAX_CONDITIONS:
        return
    paths: list[tuple[str, dict[str, Any]]] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if "metric" in node:
            paths.append((path, node))
            return
        ((kind, children),) = node.items()
        for i, child in enumerate(children):
            walk(child, f"{path}.{kind}[{i}]")

    walk(rule, "rule")
    index = data.draw(st.integers(0, len(paths) - 1))
    paths[index][1]["metric"] = bad
    # the validator reports the first bad condition in document order: the one changed
    first = next(p for p, n in paths if n["metric"] == bad)
    assert first == paths[index][0]
    assert path_of("COMPOSITE", rule) == f"{first}.metric"
