"""Conversion to equity: what the ConversionService contract needs that 0001 lacked.

ventures: description; pending_bps (the bp PENDING requests reserve, so a conditional
UPDATE can keep granted + pending within the pool); names unique without regard to case.
conversion_windows: label and created_by; windows may overlap, so opens_at is unique only
among the job's quarterly windows; the rate is 1..10,000. conversion_requests: the rate
at request time; decided_at becomes resolved_at (set on every way out of PENDING).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 09:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_CREATOR = "job:conversion_windows"  # server.conversion.domain.JOB_CREATOR, frozen here


def upgrade() -> None:
    # ventures
    op.add_column(
        "ventures", sa.Column("description", sa.Text(), server_default="", nullable=False)
    )
    op.add_column(
        "ventures",
        sa.Column("pending_bps", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.execute(
        "UPDATE ventures v SET pending_bps = r.bps"
        " FROM (SELECT venture_id, sum(equity_bp) AS bps FROM conversion_requests"
        "  WHERE status = 'PENDING' GROUP BY venture_id) r"
        " WHERE r.venture_id = v.id"
    )
    op.create_check_constraint(
        op.f("ck_ventures_pending_nonnegative"), "ventures", "pending_bps >= 0"
    )
    op.create_check_constraint(
        op.f("ck_ventures_reserved_within_pool"),
        "ventures",
        "granted_bps + pending_bps <= pool_bps",
    )
    op.drop_constraint(op.f("uq_ventures_name"), "ventures", type_="unique")
    op.create_index("uq_ventures_name_lower", "ventures", [sa.text("lower(name)")], unique=True)

    # conversion_windows
    op.add_column("conversion_windows", sa.Column("label", sa.Text(), nullable=True))
    op.add_column("conversion_windows", sa.Column("created_by", sa.Text(), nullable=True))
    op.execute(
        "UPDATE conversion_windows SET created_by = 'system',"
        " label = to_char(opens_at AT TIME ZONE 'UTC', 'YYYY-\"Q\"Q')"
    )
    op.alter_column("conversion_windows", "label", nullable=False)
    op.alter_column("conversion_windows", "created_by", nullable=False)
    op.drop_constraint(op.f("uq_conversion_windows_opens_at"), "conversion_windows", type_="unique")
    op.create_index(
        "uq_conversion_windows_job_opens_at",
        "conversion_windows",
        ["opens_at"],
        unique=True,
        postgresql_where=sa.text(f"created_by = '{JOB_CREATOR}'"),
    )
    op.create_index(
        "ix_conversion_windows_opens_at", "conversion_windows", ["opens_at", "id"], unique=False
    )
    op.drop_constraint(
        op.f("ck_conversion_windows_rate_positive"), "conversion_windows", type_="check"
    )
    op.create_check_constraint(
        op.f("ck_conversion_windows_rate_range"),
        "conversion_windows",
        "equity_rate_bps BETWEEN 1 AND 10000",
    )

    # conversion_requests
    op.add_column("conversion_requests", sa.Column("equity_rate_bps", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE conversion_requests r SET equity_rate_bps = w.equity_rate_bps"
        " FROM conversion_windows w WHERE w.id = r.window_id"
    )
    op.alter_column("conversion_requests", "equity_rate_bps", nullable=False)
    op.alter_column("conversion_requests", "decided_at", new_column_name="resolved_at")
    op.create_index(
        "ix_conversion_requests_created_at",
        "conversion_requests",
        ["created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_conversion_requests_created_at", table_name="conversion_requests")
    op.alter_column("conversion_requests", "resolved_at", new_column_name="decided_at")
    op.drop_column("conversion_requests", "equity_rate_bps")

    op.drop_constraint(
        op.f("ck_conversion_windows_rate_range"), "conversion_windows", type_="check"
    )
    op.create_check_constraint(
        op.f("ck_conversion_windows_rate_positive"), "conversion_windows", "equity_rate_bps > 0"
    )
    op.drop_index("ix_conversion_windows_opens_at", table_name="conversion_windows")
    op.drop_index(
        "uq_conversion_windows_job_opens_at",
        table_name="conversion_windows",
        postgresql_where=sa.text(f"created_by = '{JOB_CREATOR}'"),
    )
    op.create_unique_constraint(
        op.f("uq_conversion_windows_opens_at"), "conversion_windows", ["opens_at"]
    )
    op.drop_column("conversion_windows", "created_by")
    op.drop_column("conversion_windows", "label")

    op.drop_index("uq_ventures_name_lower", table_name="ventures")
    op.create_unique_constraint(op.f("uq_ventures_name"), "ventures", ["name"])
    op.drop_constraint(op.f("ck_ventures_reserved_within_pool"), "ventures", type_="check")
    op.drop_constraint(op.f("ck_ventures_pending_nonnegative"), "ventures", type_="check")
    op.drop_column("ventures", "pending_bps")
    op.drop_column("ventures", "description")
