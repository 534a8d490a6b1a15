"""Gamification: activity event ids unique per kind, with payload hash and metric counters;
approvedConversions read from conversion_requests (no user_metrics counter); badge rules in
the contract's format ({"metric": m, "gte": 5} instead of {"metric", "op", "value"}); the
badge job's state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:00:00+00:00
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTERS_WITH_CONVERSIONS = "tasks_accepted >= 0 AND critical_bug_reports >= 0 AND helpful_reviews >= 0 AND reviews_total >= 0 AND reviews_agreed >= 0 AND policy_violations >= 0 AND approved_conversions >= 0 AND endorsements_received >= 0 AND quality_sum >= 0 AND quality_count >= 0"
_COUNTERS = "tasks_accepted >= 0 AND critical_bug_reports >= 0 AND helpful_reviews >= 0 AND reviews_total >= 0 AND reviews_agreed >= 0 AND policy_violations >= 0 AND endorsements_received >= 0 AND quality_sum >= 0 AND quality_count >= 0"


def _to_contract(node: Any) -> Any:
    """{"metric", "op", "value"} → {"metric": m, op: value}, at any depth."""
    if isinstance(node, dict):
        if set(node) == {"metric", "op", "value"}:
            return {"metric": node["metric"], node["op"]: node["value"]}
        return {key: _to_contract(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_to_contract(child) for child in node]
    return node


def _to_0001(node: Any) -> Any:
    if isinstance(node, dict):
        if "metric" in node and len(node) == 2:
            (op,) = (key for key in node if key != "metric")
            return {"metric": node["metric"], "op": op, "value": node[op]}
        return {key: _to_0001(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_to_0001(child) for child in node]
    return node


def _rewrite_rules(convert: Callable[[Any], Any]) -> None:
    bind = op.get_bind()
    for badge_id, rule in bind.execute(sa.text("SELECT id, rule FROM badges")).all():
        new = convert(rule)
        if new != rule:
            bind.execute(
                sa.text("UPDATE badges SET rule = CAST(:rule AS jsonb) WHERE id = :id"),
                {"rule": json.dumps(new), "id": badge_id},
            )


def upgrade() -> None:
    _rewrite_rules(_to_contract)
    op.create_table(
        "badge_evaluation_state",
        sa.Column("id", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("last_full_day", sa.Date(), nullable=True),
        sa.Column("changed_since", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id", name=op.f("ck_badge_evaluation_state_singleton")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_badge_evaluation_state")),
    )
    op.drop_constraint(op.f("uq_activity_events_event_id"), "activity_events", type_="unique")
    op.create_unique_constraint(
        op.f("uq_activity_events_kind_event_id"), "activity_events", ["kind", "event_id"]
    )
    # No RPC wrote activity events before this revision; rows written by hand get an empty
    # hash (a retry of such an event is a conflict, never a silent replay).
    op.add_column(
        "activity_events",
        sa.Column("payload_hash", sa.Text(), server_default="", nullable=False),
    )
    op.alter_column("activity_events", "payload_hash", server_default=None)
    op.add_column(
        "activity_events",
        sa.Column(
            "metrics",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )

    op.drop_constraint(op.f("ck_user_metrics_counters_nonneg"), "user_metrics", type_="check")
    op.drop_column("user_metrics", "approved_conversions")
    op.create_check_constraint(op.f("ck_user_metrics_counters_nonneg"), "user_metrics", _COUNTERS)


def downgrade() -> None:
    op.drop_table("badge_evaluation_state")
    _rewrite_rules(_to_0001)
    op.drop_constraint(op.f("ck_user_metrics_counters_nonneg"), "user_metrics", type_="check")
    op.add_column(
        "user_metrics",
        sa.Column(
            "approved_conversions", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.create_check_constraint(
        op.f("ck_user_metrics_counters_nonneg"), "user_metrics", _COUNTERS_WITH_CONVERSIONS
    )

    op.drop_column("activity_events", "metrics")
    op.drop_column("activity_events", "payload_hash")
    op.drop_constraint(op.f("uq_activity_events_kind_event_id"), "activity_events", type_="unique")
    op.create_unique_constraint(
        op.f("uq_activity_events_event_id"), "activity_events", ["event_id"]
    )
