"""Initial schema: every table, write-once triggers, default settings and seeded badges.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 22:37:46.497422+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from server.core.settings_defaults import SETTINGS_DEFAULTS

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Tables whose rows are never changed or removed, and tables whose rows are never removed.
WRITE_ONCE_TABLES = ("ledger_entries", "audit_events", "audit_checkpoints", "equity_grants")
NEVER_DELETED_TABLES = ("badge_awards", "signing_keys")

REJECT_FUNCTION = """
CREATE FUNCTION smartstart_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is %: % rejected', TG_TABLE_NAME, TG_ARGV[0], TG_OP
        USING ERRCODE = 'P0001',
              HINT = 'rows of this table are evidence; record a new row instead';
END
$$
"""


def _create_guards() -> None:
    op.execute(REJECT_FUNCTION)
    for table in WRITE_ONCE_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_write_once BEFORE UPDATE OR DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION smartstart_reject_change('write-once')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION smartstart_reject_change('write-once')"
        )
    for table in NEVER_DELETED_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_never_deleted BEFORE DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION smartstart_reject_change('never deleted')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION smartstart_reject_change('never deleted')"
        )


def _drop_guards() -> None:
    for table in WRITE_ONCE_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_write_once ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    for table in NEVER_DELETED_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_never_deleted ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS smartstart_reject_change()")


def _cond(metric: str, op: str, value: object) -> dict[str, object]:
    return {"metric": metric, "op": op, "value": value}


# The badges as this revision seeded them, frozen here (server/profile/seeds.py moves on;
# revision 0003 rewrites these rules into the contract's format).
SEED_BADGES_0001 = (
    (
        "EARLY_CONTRIBUTOR",
        "Early Contributor",
        "Five accepted tasks within 90 days of joining",
        "early-contributor",
        {"conditions": [_cond("tasksAccepted", "gte", 5), _cond("daysSinceJoin", "lte", 90)]},
    ),
    (
        "BUG_HUNTER_BRONZE",
        "Bug Hunter (Bronze)",
        "Three critical bug reports",
        "bug-hunter-bronze",
        {"conditions": [_cond("criticalBugReports", "gte", 3)]},
    ),
    (
        "TOP_REVIEWER",
        "Top Reviewer",
        "Fifty helpful reviews agreeing with consensus at least 80% of the time",
        "top-reviewer",
        {
            "conditions": [
                _cond("helpfulReviews", "gte", 50),
                _cond("reviewAgreementPct", "gte", 80),
            ]
        },
    ),
    (
        "SECURITY_CHAMPION",
        "Security Champion",
        "KYC passed, 90 device-compliant days in a row, no policy violations",
        "security-champion",
        {
            "conditions": [
                _cond("kycStatus", "eq", "PASSED"),
                _cond("deviceCompliantDays", "gte", 90),
                _cond("policyViolations", "eq", 0),
            ]
        },
    ),
    (
        "EQUITY_PIONEER",
        "Equity Pioneer",
        "First approved BUZ-to-equity conversion",
        "equity-pioneer",
        {"conditions": [_cond("approvedConversions", "gte", 1)]},
    ),
    (
        "COMMUNITY_BUILDER",
        "Community Builder",
        "Ten endorsements received and an average task quality of at least 4.0",
        "community-builder",
        {
            "conditions": [
                _cond("endorsementsReceived", "gte", 10),
                _cond("avgTaskQuality", "gte", 4.0),
            ]
        },
    ),
)


def _seed() -> None:
    settings = sa.table(
        "system_settings",
        sa.column("key", sa.Text()),
        sa.column("value", postgresql.JSONB()),
        sa.column("description", sa.Text()),
        sa.column("updated_by", sa.Text()),
    )
    op.bulk_insert(
        settings,
        [
            {"key": key, "value": d.value, "description": d.description, "updated_by": "migration"}
            for key, d in SETTINGS_DEFAULTS.items()
        ],
    )
    badges = sa.table(
        "badges",
        sa.column("code", sa.Text()),
        sa.column("title", sa.Text()),
        sa.column("description", sa.Text()),
        sa.column("icon", sa.Text()),
        sa.column("rule_type", sa.Text()),
        sa.column("rule", postgresql.JSONB()),
    )
    op.bulk_insert(
        badges,
        [
            dict(zip(("code", "title", "description", "icon", "rule"), b, strict=True))
            | {"rule_type": "THRESHOLD"}
            for b in SEED_BADGES_0001
        ],
    )


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "audit_chain_heads",
        sa.Column("chain_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_audit_chain_heads")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("chain_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("ref_id", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("payload_hash", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint(
            "chain_id", "prev_hash", name=op.f("uq_audit_events_chain_id_prev_hash")
        ),
        sa.UniqueConstraint("chain_id", "seq", name=op.f("uq_audit_events_chain_id_seq")),
    )
    op.create_index(
        "ix_audit_events_action", "audit_events", ["action", "occurred_at", "id"], unique=False
    )
    op.create_index(
        "ix_audit_events_actor", "audit_events", ["actor_id", "occurred_at", "id"], unique=False
    )
    op.create_index("ix_audit_events_occurred", "audit_events", ["occurred_at", "id"], unique=False)
    op.create_index(
        "ix_audit_events_scope_ref",
        "audit_events",
        ["scope", "ref_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_table(
        "badges",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("icon", sa.Text(), server_default="", nullable=False),
        sa.Column("rule_type", sa.Text(), nullable=False),
        sa.Column(
            "rule",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "rule_type IN ('THRESHOLD', 'COMPOSITE', 'MANUAL')", name=op.f("ck_badges_rule_type")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_badges")),
        sa.UniqueConstraint("code", name=op.f("uq_badges_code")),
    )
    op.create_table(
        "conversion_windows",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("equity_rate_bps", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), server_default="SCHEDULED", nullable=False),
        sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finalized_by", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('SCHEDULED', 'OPEN', 'CLOSED', 'FINALIZED')",
            name=op.f("ck_conversion_windows_status"),
        ),
        sa.CheckConstraint(
            "closes_at > opens_at", name=op.f("ck_conversion_windows_closes_after_opens")
        ),
        sa.CheckConstraint("equity_rate_bps > 0", name=op.f("ck_conversion_windows_rate_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversion_windows")),
        sa.UniqueConstraint("opens_at", name=op.f("uq_conversion_windows_opens_at")),
    )
    op.create_index("ix_conversion_windows_status", "conversion_windows", ["status"], unique=False)
    op.create_table(
        "idempotency_records",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_records")),
    )
    op.create_index(
        "ix_idempotency_records_created_at", "idempotency_records", ["created_at"], unique=False
    )
    op.create_table(
        "integrity_incidents",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "detected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("chain_kind", sa.Text(), nullable=False),
        sa.Column("chain_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integrity_incidents")),
    )
    op.create_index(
        "ix_integrity_incidents_chain",
        "integrity_incidents",
        ["chain_kind", "chain_id", "seq"],
        unique=False,
    )
    op.create_index(
        "ix_integrity_incidents_open",
        "integrity_incidents",
        ["detected_at"],
        unique=False,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("run_key", sa.Text(), nullable=True),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("instance", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), server_default="RUNNING", nullable=False),
        sa.Column(
            "counts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("triggered_by", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'SKIPPED')",
            name=op.f("ck_job_runs_outcome"),
        ),
        sa.CheckConstraint("trigger IN ('SCHEDULE', 'MANUAL')", name=op.f("ck_job_runs_trigger")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
    )
    op.create_index(
        "ix_job_runs_job_started",
        "job_runs",
        ["job", sa.literal_column("started_at DESC")],
        unique=False,
    )
    op.create_index(
        "uq_job_runs_succeeded_key",
        "job_runs",
        ["job", "run_key"],
        unique=True,
        postgresql_where=sa.text("outcome = 'SUCCEEDED' AND run_key IS NOT NULL"),
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.UUID(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.Text(), nullable=False),
        sa.Column(
            "placed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("released_by", sa.Text(), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "target_type IN ('DOCUMENT', 'USER')", name=op.f("ck_legal_holds_target_type")
        ),
        sa.CheckConstraint(
            "(released_at IS NULL) = (released_by IS NULL)",
            name=op.f("ck_legal_holds_released_pair"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index(
        "ix_legal_holds_active_target",
        "legal_holds",
        ["target_type", "target_id"],
        unique=False,
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_index("ix_legal_holds_placed", "legal_holds", ["placed_at", "id"], unique=False)
    op.create_table(
        "service_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.Text(), server_default="ES256", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_keys")),
    )
    op.create_table(
        "skills",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_skills")),
        sa.UniqueConstraint("slug", name=op.f("uq_skills_slug")),
    )
    op.create_table(
        "system_settings",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_system_settings")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kyc_status", sa.Text(), server_default="NONE", nullable=False),
        sa.Column("kyc_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kyc_status IN ('NONE', 'PENDING', 'PASSED', 'FAILED')",
            name=op.f("ck_users_kyc_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("external_id", name=op.f("uq_users_external_id")),
    )
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "ventures",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("pool_bps", sa.Integer(), nullable=False),
        sa.Column("granted_bps", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "granted_bps >= 0 AND granted_bps <= pool_bps",
            name=op.f("ck_ventures_granted_within_pool"),
        ),
        sa.CheckConstraint("pool_bps BETWEEN 0 AND 10000", name=op.f("ck_ventures_pool_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ventures")),
        sa.UniqueConstraint("name", name=op.f("uq_ventures_name")),
    )
    op.create_table(
        "activity_events",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('REVIEW_SUBMITTED', 'BUG_REPORT', 'POLICY_VIOLATION')",
            name=op.f("ck_activity_events_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_activity_events_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_activity_events_event_id")),
    )
    op.create_index(
        "ix_activity_events_user_occurred",
        "activity_events",
        ["user_id", "occurred_at"],
        unique=False,
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("heads", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("merkle_root", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["service_keys.id"], name=op.f("fk_audit_checkpoints_key_id_service_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    op.create_index(
        "ix_audit_checkpoints_created", "audit_checkpoints", ["created_at", "id"], unique=False
    )
    op.create_table(
        "badge_awards",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("badge_id", sa.UUID(), nullable=False),
        sa.Column(
            "metrics",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("status", sa.Text(), server_default="ACTIVE", nullable=False),
        sa.Column("awarded_by", sa.Text(), nullable=True),
        sa.Column(
            "awarded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("xp_awarded", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("revoked_by", sa.Text(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('ACTIVE', 'REVOKED')", name=op.f("ck_badge_awards_status")),
        sa.ForeignKeyConstraint(
            ["badge_id"], ["badges.id"], name=op.f("fk_badge_awards_badge_id_badges")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_badge_awards_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_badge_awards")),
        sa.UniqueConstraint("user_id", "badge_id", name=op.f("uq_badge_awards_user_id_badge_id")),
    )
    op.create_index("ix_badge_awards_badge_id", "badge_awards", ["badge_id"], unique=False)
    op.create_index(
        "ix_badge_awards_user_awarded",
        "badge_awards",
        ["user_id", "awarded_at", "id"],
        unique=False,
    )
    op.create_table(
        "clients",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("organization", sa.Text(), nullable=True),
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_clients_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
    )
    op.create_index(
        "ix_clients_owner_created", "clients", ["owner_id", "created_at", "id"], unique=False
    )
    op.create_table(
        "conversion_requests",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("window_id", sa.UUID(), nullable=False),
        sa.Column("venture_id", sa.UUID(), nullable=False),
        sa.Column("buz_requested", sa.BigInteger(), nullable=False),
        sa.Column("buz_locked", sa.BigInteger(), nullable=False),
        sa.Column("equity_bp", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), server_default="PENDING", nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED', 'EXPIRED')",
            name=op.f("ck_conversion_requests_status"),
        ),
        sa.CheckConstraint(
            "buz_locked >= 0 AND buz_locked <= buz_requested",
            name=op.f("ck_conversion_requests_locked_within_requested"),
        ),
        sa.CheckConstraint(
            "buz_requested > 0", name=op.f("ck_conversion_requests_requested_positive")
        ),
        sa.CheckConstraint("equity_bp > 0", name=op.f("ck_conversion_requests_equity_positive")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_conversion_requests_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["venture_id"], ["ventures.id"], name=op.f("fk_conversion_requests_venture_id_ventures")
        ),
        sa.ForeignKeyConstraint(
            ["window_id"],
            ["conversion_windows.id"],
            name=op.f("fk_conversion_requests_window_id_conversion_windows"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversion_requests")),
    )
    op.create_index(
        "ix_conversion_requests_user_created",
        "conversion_requests",
        ["user_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_conversion_requests_venture_id", "conversion_requests", ["venture_id"], unique=False
    )
    op.create_index(
        "ix_conversion_requests_window_status",
        "conversion_requests",
        ["window_id", "status"],
        unique=False,
    )
    op.create_index(
        "uq_conversion_requests_one_pending",
        "conversion_requests",
        ["user_id", "window_id", "venture_id"],
        unique=True,
        postgresql_where=sa.text("status = 'PENDING'"),
    )
    op.create_table(
        "daily_user_stats",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("xp_gain", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "endorsement_weight_milli", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("endorsement_xp", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("badges_awarded", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("buz_issued", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint(
            "xp_gain >= 0 AND endorsement_weight_milli >= 0 AND endorsement_xp >= 0 AND badges_awarded >= 0 AND buz_issued >= 0",
            name=op.f("ck_daily_user_stats_counters_nonneg"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_daily_user_stats_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "day", name=op.f("pk_daily_user_stats")),
    )
    op.create_index("ix_daily_user_stats_day", "daily_user_stats", ["day"], unique=False)
    op.create_table(
        "device_posture_reports",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("compliant", sa.Boolean(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_device_posture_reports_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_posture_reports")),
    )
    op.create_index(
        "ix_device_posture_reports_user_reported",
        "device_posture_reports",
        ["user_id", sa.literal_column("reported_at DESC")],
        unique=False,
    )
    op.create_table(
        "endorsements",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("endorser_id", sa.UUID(), nullable=False),
        sa.Column("endorsee_id", sa.UUID(), nullable=False),
        sa.Column("skill_id", sa.UUID(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("endorsed_on", sa.Date(), nullable=False),
        sa.Column("weight_milli", sa.Integer(), nullable=False),
        sa.Column("xp_awarded", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("endorser_id <> endorsee_id", name=op.f("ck_endorsements_not_self")),
        sa.CheckConstraint("weight_milli >= 0", name=op.f("ck_endorsements_weight_nonneg")),
        sa.CheckConstraint("xp_awarded >= 0", name=op.f("ck_endorsements_xp_nonneg")),
        sa.ForeignKeyConstraint(
            ["endorsee_id"], ["users.id"], name=op.f("fk_endorsements_endorsee_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["endorser_id"], ["users.id"], name=op.f("fk_endorsements_endorser_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["skill_id"], ["skills.id"], name=op.f("fk_endorsements_skill_id_skills")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endorsements")),
        sa.UniqueConstraint(
            "endorser_id",
            "endorsee_id",
            "skill_id",
            name=op.f("uq_endorsements_endorser_id_endorsee_id_skill_id"),
        ),
    )
    op.create_index(
        "ix_endorsements_endorsee_created",
        "endorsements",
        ["endorsee_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_endorsements_endorsee_day", "endorsements", ["endorsee_id", "endorsed_on"], unique=False
    )
    op.create_index(
        "ix_endorsements_endorser_day", "endorsements", ["endorser_id", "endorsed_on"], unique=False
    )
    op.create_table(
        "profiles",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("nickname", sa.Text(), nullable=True),
        sa.Column("bio", sa.Text(), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("website_url", sa.Text(), nullable=True),
        sa.Column("avatar_url", sa.Text(), nullable=True),
        sa.Column("theme", sa.Text(), nullable=True),
        sa.Column("is_public", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("xp", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("level", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("rep_milli", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("rep_through", sa.Date(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("level BETWEEN 1 AND 10", name=op.f("ck_profiles_level_range")),
        sa.CheckConstraint("rep_milli BETWEEN 0 AND 10000000", name=op.f("ck_profiles_rep_range")),
        sa.CheckConstraint("xp >= 0", name=op.f("ck_profiles_xp_nonneg")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_profiles_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_profiles")),
    )
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.Text(), server_default="ES256", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_signing_keys_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
    )
    op.create_index("ix_signing_keys_user_id", "signing_keys", ["user_id"], unique=False)
    op.create_table(
        "user_metrics",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("tasks_accepted", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "critical_bug_reports", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("helpful_reviews", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("reviews_total", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("reviews_agreed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "policy_violations", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "approved_conversions", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "endorsements_received", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("quality_sum", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("quality_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "tasks_accepted >= 0 AND critical_bug_reports >= 0 AND helpful_reviews >= 0 AND reviews_total >= 0 AND reviews_agreed >= 0 AND policy_violations >= 0 AND approved_conversions >= 0 AND endorsements_received >= 0 AND quality_sum >= 0 AND quality_count >= 0",
            name=op.f("ck_user_metrics_counters_nonneg"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_metrics_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_metrics")),
    )
    op.create_table(
        "user_skills",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("skill_id", sa.UUID(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("evidence_url", sa.Text(), nullable=True),
        sa.Column("verified_by", sa.Text(), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(verified_by IS NULL) = (verified_at IS NULL)",
            name=op.f("ck_user_skills_verified_pair"),
        ),
        sa.CheckConstraint("level BETWEEN 1 AND 5", name=op.f("ck_user_skills_level_range")),
        sa.CheckConstraint(
            "verified_by IS NULL OR verified_by <> user_id::text",
            name=op.f("ck_user_skills_not_self_verified"),
        ),
        sa.ForeignKeyConstraint(
            ["skill_id"], ["skills.id"], name=op.f("fk_user_skills_skill_id_skills")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_skills_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "skill_id", name=op.f("pk_user_skills")),
    )
    op.create_index("ix_user_skills_skill_id", "user_skills", ["skill_id"], unique=False)
    op.create_table(
        "wallets",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("buz_balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("pending_lock", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "head_hash",
            sa.Text(),
            server_default="0000000000000000000000000000000000000000000000000000000000000000",
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("buz_balance >= 0", name=op.f("ck_wallets_balance_nonneg")),
        sa.CheckConstraint("head_seq >= 0", name=op.f("ck_wallets_head_seq_nonneg")),
        sa.CheckConstraint("pending_lock >= 0", name=op.f("ck_wallets_pending_nonneg")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_wallets_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets")),
        sa.UniqueConstraint("user_id", name=op.f("uq_wallets_user_id")),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("media_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("blob_key", sa.Text(), nullable=False),
        sa.Column("client_id", sa.UUID(), nullable=True),
        sa.Column("status", sa.Text(), server_default="ACTIVE", nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(status = 'DELETED') = (deleted_at IS NOT NULL)",
            name=op.f("ck_documents_deleted_pair"),
        ),
        sa.CheckConstraint("status IN ('ACTIVE', 'DELETED')", name=op.f("ck_documents_status")),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_documents_size_nonneg")),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_documents_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_documents_owner_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
    )
    op.create_index("ix_documents_client_id", "documents", ["client_id"], unique=False)
    op.create_index(
        "ix_documents_owner_created", "documents", ["owner_id", "created_at", "id"], unique=False
    )
    op.create_table(
        "equity_grants",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("venture_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("conversion_id", sa.UUID(), nullable=False),
        sa.Column("bps", sa.Integer(), nullable=False),
        sa.Column(
            "granted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("bps > 0", name=op.f("ck_equity_grants_bps_positive")),
        sa.ForeignKeyConstraint(
            ["conversion_id"],
            ["conversion_requests.id"],
            name=op.f("fk_equity_grants_conversion_id_conversion_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_equity_grants_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["venture_id"], ["ventures.id"], name=op.f("fk_equity_grants_venture_id_ventures")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equity_grants")),
        sa.UniqueConstraint("conversion_id", name=op.f("uq_equity_grants_conversion_id")),
    )
    op.create_index("ix_equity_grants_user_id", "equity_grants", ["user_id"], unique=False)
    op.create_index(
        "ix_equity_grants_venture_granted",
        "equity_grants",
        ["venture_id", "granted_at", "id"],
        unique=False,
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("wallet_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("pending_after", sa.BigInteger(), nullable=False),
        sa.Column("ref_kind", sa.Text(), nullable=True),
        sa.Column("ref_id", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor_id", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "(type = 'ADJUST' AND amount <> 0) OR (type <> 'ADJUST' AND amount > 0)",
            name=op.f("ck_ledger_entries_amount_sign"),
        ),
        sa.CheckConstraint(
            "type IN ('ISSUE', 'LOCK', 'UNLOCK', 'BURN', 'ADJUST')",
            name=op.f("ck_ledger_entries_type"),
        ),
        sa.CheckConstraint(
            "balance_after >= 0 AND pending_after >= 0", name=op.f("ck_ledger_entries_after_nonneg")
        ),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_ledger_entries_seq_positive")),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["wallets.id"], name=op.f("fk_ledger_entries_wallet_id_wallets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint(
            "wallet_id", "prev_hash", name=op.f("uq_ledger_entries_wallet_id_prev_hash")
        ),
        sa.UniqueConstraint("wallet_id", "seq", name=op.f("uq_ledger_entries_wallet_id_seq")),
    )
    op.create_index("ix_ledger_entries_ref", "ledger_entries", ["ref_kind", "ref_id"], unique=False)
    op.create_table(
        "document_comments",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("document_id", sa.UUID(), nullable=False),
        sa.Column("author_id", sa.UUID(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_document_comments_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_document_comments_document_id_documents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_comments")),
    )
    op.create_index(
        "ix_document_comments_document_created",
        "document_comments",
        ["document_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "document_shares",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("document_id", sa.UUID(), nullable=False),
        sa.Column("to_user_id", sa.UUID(), nullable=True),
        sa.Column("to_client_id", sa.UUID(), nullable=True),
        sa.Column("can_view", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("can_comment", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("can_sign", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "num_nonnulls(to_user_id, to_client_id) = 1", name=op.f("ck_document_shares_one_target")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_document_shares_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name=op.f("fk_document_shares_document_id_documents")
        ),
        sa.ForeignKeyConstraint(
            ["to_client_id"], ["clients.id"], name=op.f("fk_document_shares_to_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["to_user_id"], ["users.id"], name=op.f("fk_document_shares_to_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_shares")),
    )
    op.create_index(
        "ix_document_shares_document_created",
        "document_shares",
        ["document_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_document_shares_to_client_id", "document_shares", ["to_client_id"], unique=False
    )
    op.create_index(
        "ix_document_shares_to_user_id", "document_shares", ["to_user_id"], unique=False
    )
    op.create_table(
        "signature_requests",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("document_id", sa.UUID(), nullable=False),
        sa.Column("requester_id", sa.UUID(), nullable=False),
        sa.Column("document_sha256", sa.Text(), nullable=False),
        sa.Column("ordering", sa.Text(), server_default="PARALLEL", nullable=False),
        sa.Column("status", sa.Text(), server_default="PENDING", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("certificate", sa.LargeBinary(), nullable=True),
        sa.Column("certificate_signature", sa.LargeBinary(), nullable=True),
        sa.Column("certificate_key_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "ordering IN ('SEQUENTIAL', 'PARALLEL')", name=op.f("ck_signature_requests_ordering")
        ),
        sa.CheckConstraint(
            "status IN ('PENDING', 'COMPLETED', 'CANCELLED', 'EXPIRED')",
            name=op.f("ck_signature_requests_status"),
        ),
        sa.ForeignKeyConstraint(
            ["certificate_key_id"],
            ["service_keys.id"],
            name=op.f("fk_signature_requests_certificate_key_id_service_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_signature_requests_document_id_documents"),
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"], ["users.id"], name=op.f("fk_signature_requests_requester_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_requests")),
    )
    op.create_index(
        "ix_signature_requests_document_created",
        "signature_requests",
        ["document_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_signature_requests_requester_created",
        "signature_requests",
        ["requester_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "task_rewards",
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("venture_id", sa.UUID(), nullable=True),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column(
            "reviewer_ids",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_day", sa.Date(), nullable=False),
        sa.Column("payload_hash", sa.Text(), nullable=False),
        sa.Column("reviewer_cred_milli", sa.Integer(), nullable=False),
        sa.Column("buz_computed", sa.BigInteger(), nullable=False),
        sa.Column("buz_awarded", sa.BigInteger(), nullable=False),
        sa.Column("buz_capped", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "withheld_reasons",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("xp_awarded", sa.BigInteger(), nullable=False),
        sa.Column("ledger_entry_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("tier IN ('S', 'A', 'B', 'C')", name=op.f("ck_task_rewards_tier")),
        sa.CheckConstraint(
            "buz_computed >= 0 AND buz_awarded >= 0 AND buz_capped >= 0 AND buz_awarded + buz_capped <= buz_computed",
            name=op.f("ck_task_rewards_buz_amounts"),
        ),
        sa.CheckConstraint("quality BETWEEN 1 AND 5", name=op.f("ck_task_rewards_quality_range")),
        sa.CheckConstraint("xp_awarded >= 0", name=op.f("ck_task_rewards_xp_nonneg")),
        sa.ForeignKeyConstraint(
            ["ledger_entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_task_rewards_ledger_entry_id_ledger_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_task_rewards_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["venture_id"], ["ventures.id"], name=op.f("fk_task_rewards_venture_id_ventures")
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_task_rewards")),
    )
    op.create_index(
        "ix_task_rewards_user_created",
        "task_rewards",
        ["user_id", "created_at", "task_id"],
        unique=False,
    )
    op.create_index(
        "ix_task_rewards_user_day", "task_rewards", ["user_id", "accepted_day"], unique=False
    )
    op.create_table(
        "portfolio_items",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "urls",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column(
            "document_ids",
            postgresql.ARRAY(sa.UUID()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.Column("task_id", sa.Text(), nullable=True),
        sa.Column("buz_earned", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "impact",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("is_public", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("buz_earned >= 0", name=op.f("ck_portfolio_items_buz_nonneg")),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_portfolio_items_owner_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["task_rewards.task_id"],
            name=op.f("fk_portfolio_items_task_id_task_rewards"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portfolio_items")),
    )
    op.create_index(
        "ix_portfolio_items_owner_created",
        "portfolio_items",
        ["owner_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "signature_signers",
        sa.Column("request_id", sa.UUID(), nullable=False),
        sa.Column("signer_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), server_default="PENDING", nullable=False),
        sa.Column("key_id", sa.Text(), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("signature", sa.LargeBinary(), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('PENDING', 'SIGNED', 'DECLINED')", name=op.f("ck_signature_signers_status")
        ),
        sa.CheckConstraint("position >= 0", name=op.f("ck_signature_signers_position_nonneg")),
        sa.ForeignKeyConstraint(
            ["key_id"], ["signing_keys.id"], name=op.f("fk_signature_signers_key_id_signing_keys")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["signature_requests.id"],
            name=op.f("fk_signature_signers_request_id_signature_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["users.id"], name=op.f("fk_signature_signers_signer_id_users")
        ),
        sa.PrimaryKeyConstraint("request_id", "signer_id", name=op.f("pk_signature_signers")),
    )
    op.create_index(
        "ix_signature_signers_signer_id", "signature_signers", ["signer_id"], unique=False
    )
    # ### end Alembic commands ###
    _create_guards()
    _seed()


def downgrade() -> None:
    _drop_guards()
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_index("ix_signature_signers_signer_id", table_name="signature_signers")
    op.drop_table("signature_signers")
    op.drop_index("ix_portfolio_items_owner_created", table_name="portfolio_items")
    op.drop_table("portfolio_items")
    op.drop_index("ix_task_rewards_user_day", table_name="task_rewards")
    op.drop_index("ix_task_rewards_user_created", table_name="task_rewards")
    op.drop_table("task_rewards")
    op.drop_index("ix_signature_requests_requester_created", table_name="signature_requests")
    op.drop_index("ix_signature_requests_document_created", table_name="signature_requests")
    op.drop_table("signature_requests")
    op.drop_index("ix_document_shares_to_user_id", table_name="document_shares")
    op.drop_index("ix_document_shares_to_client_id", table_name="document_shares")
    op.drop_index("ix_document_shares_document_created", table_name="document_shares")
    op.drop_table("document_shares")
    op.drop_index("ix_document_comments_document_created", table_name="document_comments")
    op.drop_table("document_comments")
    op.drop_index("ix_ledger_entries_ref", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index("ix_equity_grants_venture_granted", table_name="equity_grants")
    op.drop_index("ix_equity_grants_user_id", table_name="equity_grants")
    op.drop_table("equity_grants")
    op.drop_index("ix_documents_owner_created", table_name="documents")
    op.drop_index("ix_documents_client_id", table_name="documents")
    op.drop_table("documents")
    op.drop_table("wallets")
    op.drop_index("ix_user_skills_skill_id", table_name="user_skills")
    op.drop_table("user_skills")
    op.drop_table("user_metrics")
    op.drop_index("ix_signing_keys_user_id", table_name="signing_keys")
    op.drop_table("signing_keys")
    op.drop_table("profiles")
    op.drop_index("ix_endorsements_endorser_day", table_name="endorsements")
    op.drop_index("ix_endorsements_endorsee_day", table_name="endorsements")
    op.drop_index("ix_endorsements_endorsee_created", table_name="endorsements")
    op.drop_table("endorsements")
    op.drop_index("ix_device_posture_reports_user_reported", table_name="device_posture_reports")
    op.drop_table("device_posture_reports")
    op.drop_index("ix_daily_user_stats_day", table_name="daily_user_stats")
    op.drop_table("daily_user_stats")
    op.drop_index(
        "uq_conversion_requests_one_pending",
        table_name="conversion_requests",
        postgresql_where=sa.text("status = 'PENDING'"),
    )
    op.drop_index("ix_conversion_requests_window_status", table_name="conversion_requests")
    op.drop_index("ix_conversion_requests_venture_id", table_name="conversion_requests")
    op.drop_index("ix_conversion_requests_user_created", table_name="conversion_requests")
    op.drop_table("conversion_requests")
    op.drop_index("ix_clients_owner_created", table_name="clients")
    op.drop_table("clients")
    op.drop_index("ix_badge_awards_user_awarded", table_name="badge_awards")
    op.drop_index("ix_badge_awards_badge_id", table_name="badge_awards")
    op.drop_table("badge_awards")
    op.drop_index("ix_audit_checkpoints_created", table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
    op.drop_index("ix_activity_events_user_occurred", table_name="activity_events")
    op.drop_table("activity_events")
    op.drop_table("ventures")
    op.drop_table("users")
    op.drop_table("system_settings")
    op.drop_table("skills")
    op.drop_table("service_keys")
    op.drop_index("ix_legal_holds_placed", table_name="legal_holds")
    op.drop_index(
        "ix_legal_holds_active_target",
        table_name="legal_holds",
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.drop_table("legal_holds")
    op.drop_index(
        "uq_job_runs_succeeded_key",
        table_name="job_runs",
        postgresql_where=sa.text("outcome = 'SUCCEEDED' AND run_key IS NOT NULL"),
    )
    op.drop_index("ix_job_runs_job_started", table_name="job_runs")
    op.drop_table("job_runs")
    op.drop_index(
        "ix_integrity_incidents_open",
        table_name="integrity_incidents",
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.drop_index("ix_integrity_incidents_chain", table_name="integrity_incidents")
    op.drop_table("integrity_incidents")
    op.drop_index("ix_idempotency_records_created_at", table_name="idempotency_records")
    op.drop_table("idempotency_records")
    op.drop_index("ix_conversion_windows_status", table_name="conversion_windows")
    op.drop_table("conversion_windows")
    op.drop_table("badges")
    op.drop_index("ix_audit_events_scope_ref", table_name="audit_events")
    op.drop_index("ix_audit_events_occurred", table_name="audit_events")
    op.drop_index("ix_audit_events_actor", table_name="audit_events")
    op.drop_index("ix_audit_events_action", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("audit_chain_heads")
    # ### end Alembic commands ###
