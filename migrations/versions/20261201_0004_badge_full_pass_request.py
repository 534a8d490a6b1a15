"""The badge job's state gains `full_pass_requested_at`: the daily maintenance asks for a
full pass after it moved every profile's reputation (repScore) or repaired levels.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "badge_evaluation_state",
        sa.Column("full_pass_requested_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("badge_evaluation_state", "full_pass_requested_at")
