"""Each stored enum is defined once, in Python: the migrated database's CHECK constraints
accept exactly its members, so a member added in code without a migration (or the reverse)
fails here."""

from __future__ import annotations

import re
from enum import StrEnum

import pytest
from sqlalchemy import text

from server.conversion.domain import RequestStatus, WindowStatus
from server.db.session import Database
from server.document.domain import (
    DocumentStatus,
    HoldTarget,
    SignatureRequestStatus,
    SignerStatus,
    SigningOrder,
)
from server.jobs.registry import Outcome, Trigger
from server.profile.domain import ActivityKind, AwardStatus, BadgeRuleType, KycStatus
from server.wallet.domain import Tier
from server.wallet.entries import EntryType

STORED = [
    ("users", "kyc_status", KycStatus),
    ("badges", "rule_type", BadgeRuleType),
    ("badge_awards", "status", AwardStatus),
    ("activity_events", "kind", ActivityKind),
    ("ledger_entries", "type", EntryType),
    ("task_rewards", "tier", Tier),
    ("conversion_windows", "status", WindowStatus),
    ("conversion_requests", "status", RequestStatus),
    ("documents", "status", DocumentStatus),
    ("signature_requests", "ordering", SigningOrder),
    ("signature_requests", "status", SignatureRequestStatus),
    ("signature_signers", "status", SignerStatus),
    ("legal_holds", "target_type", HoldTarget),
    ("job_runs", "trigger", Trigger),
    ("job_runs", "outcome", Outcome),
]


@pytest.mark.parametrize(
    ("table", "column", "enum"), STORED, ids=lambda v: getattr(v, "__name__", v)
)
async def test_check_constraint_accepts_exactly_the_enum(
    db: Database, table: str, column: str, enum: type[StrEnum]
) -> None:
    async with db.transaction() as session:
        definition = (
            await session.execute(
                text(
                    "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
                    " WHERE c.conrelid = CAST(:table AS regclass) AND c.contype = 'c'"
                    " AND c.conname = :name"
                ),
                {"table": table, "name": f"ck_{table}_{column}"},
            )
        ).scalar_one()
    allowed = set(re.findall(r"'([^']*)'::text", definition))
    assert allowed == {member.value for member in enum}
