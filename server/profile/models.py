"""Profile service tables: users, profiles, skills, endorsements, badges, activity, portfolio."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, created_at, one_of, updated_at, uuid_pk
from server.profile.domain import ActivityKind, AwardStatus, BadgeRuleType, KycStatus

_EMPTY_JSON = text("'{}'::jsonb")
_EMPTY_TEXT_ARRAY = text("'{}'::text[]")


class User(Base):
    """A platform user; `id` is the JWT `sub`, `external_id` the platform's own id."""

    __tablename__ = "users"
    __table_args__ = (
        one_of("kyc_status", KycStatus, "kyc_status"),
        # E-mail addresses are unique case-insensitively.
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    external_id: Mapped[str] = mapped_column(unique=True)
    email: Mapped[str]
    display_name: Mapped[str]
    joined_at: Mapped[datetime]
    kyc_status: Mapped[str] = mapped_column(server_default="NONE")
    kyc_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class Profile(Base):
    """One per user, created with the user. Reputation is kept in thousandths."""

    __tablename__ = "profiles"
    __table_args__ = (
        CheckConstraint("xp >= 0", name="xp_nonneg"),
        CheckConstraint("level BETWEEN 1 AND 10", name="level_range"),
        CheckConstraint("rep_milli BETWEEN 0 AND 10000000", name="rep_range"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    nickname: Mapped[str | None]
    bio: Mapped[str | None]
    location: Mapped[str | None]
    website_url: Mapped[str | None]
    avatar_url: Mapped[str | None]
    theme: Mapped[str | None]
    is_public: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    xp: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    level: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    rep_milli: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # Last UTC day whose decay/gain has been applied. NULL until the profile's first gain,
    # whose writer sets it to the day before that gain's day (reputation is 0 until then,
    # and decay keeps 0 at 0). The daily job folds day d only where rep_through = d - 1, so
    # a second run of the same day changes nothing.
    rep_through: Mapped[date | None]
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class DevicePostureReport(Base):
    __tablename__ = "device_posture_reports"
    __table_args__ = (
        Index("ix_device_posture_reports_user_reported", "user_id", text("reported_at DESC")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    compliant: Mapped[bool]
    reported_at: Mapped[datetime]
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    created_at: Mapped[datetime] = created_at()


class Skill(Base):
    """The admin-kept skills catalogue."""

    __tablename__ = "skills"

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(unique=True)
    name: Mapped[str]
    category: Mapped[str] = mapped_column(server_default="")
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class UserSkill(Base):
    """A skill a user declared; verified by an admin or a peer (never by oneself)."""

    __tablename__ = "user_skills"
    __table_args__ = (
        CheckConstraint("level BETWEEN 1 AND 5", name="level_range"),
        CheckConstraint(
            "verified_by IS NULL OR verified_by <> user_id::text", name="not_self_verified"
        ),
        CheckConstraint("(verified_by IS NULL) = (verified_at IS NULL)", name="verified_pair"),
        Index("ix_user_skills_skill_id", "skill_id"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    skill_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("skills.id"), primary_key=True)
    level: Mapped[int] = mapped_column(Integer)
    evidence_url: Mapped[str | None]
    verified_by: Mapped[str | None]  # actor id: an admin or a peer user (never the owner)
    verified_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class Endorsement(Base):
    __tablename__ = "endorsements"
    __table_args__ = (
        UniqueConstraint("endorser_id", "endorsee_id", "skill_id"),
        CheckConstraint("endorser_id <> endorsee_id", name="not_self"),
        CheckConstraint("weight_milli >= 0", name="weight_nonneg"),
        CheckConstraint("xp_awarded >= 0", name="xp_nonneg"),
        # daily limit per endorser, daily XP cap per endorsee, listing received endorsements
        Index("ix_endorsements_endorser_day", "endorser_id", "endorsed_on"),
        Index("ix_endorsements_endorsee_day", "endorsee_id", "endorsed_on"),
        Index("ix_endorsements_endorsee_created", "endorsee_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    endorser_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    endorsee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    skill_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("skills.id"))
    message: Mapped[str | None]
    endorsed_on: Mapped[date]
    weight_milli: Mapped[int] = mapped_column(Integer)
    xp_awarded: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = created_at()


class Badge(Base):
    __tablename__ = "badges"
    __table_args__ = (one_of("rule_type", BadgeRuleType, "rule_type"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    code: Mapped[str] = mapped_column(unique=True)
    title: Mapped[str]
    description: Mapped[str] = mapped_column(server_default="")
    icon: Mapped[str] = mapped_column(server_default="")
    rule_type: Mapped[str]
    rule: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class BadgeAward(Base):
    """Once per (user, badge); never deleted (trigger), revocation is a status."""

    __tablename__ = "badge_awards"
    __table_args__ = (
        UniqueConstraint("user_id", "badge_id"),
        one_of("status", AwardStatus, "status"),
        Index("ix_badge_awards_user_awarded", "user_id", "awarded_at", "id"),
        Index("ix_badge_awards_badge_id", "badge_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    badge_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("badges.id"))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    status: Mapped[str] = mapped_column(server_default="ACTIVE")
    awarded_by: Mapped[str | None]  # actor id of an admin; NULL: awarded by the rules
    awarded_at: Mapped[datetime] = created_at()
    xp_awarded: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    revoked_by: Mapped[str | None]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None]


class BadgeEvaluationState(Base):
    """The hourly badge job's progress (one row): the UTC day of its last full pass, the
    time from which it looks for users whose metrics changed, and when a full pass was last
    asked for and not yet made (by the daily maintenance, which moves every repScore)."""

    __tablename__ = "badge_evaluation_state"
    __table_args__ = (CheckConstraint("id", name="singleton"),)

    id: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    last_full_day: Mapped[date | None]
    changed_since: Mapped[datetime | None]
    full_pass_requested_at: Mapped[datetime | None]


class ActivityEvent(Base):
    """Caller-reported activity (system), idempotent on the caller's `event_id` per kind.

    `payload` is the normalised call, `payload_hash` tells a retry from a conflict, and
    `metrics` the user_metrics counters the event added to `user_id` (the daily metric
    repair sums them)."""

    __tablename__ = "activity_events"
    __table_args__ = (
        one_of("kind", ActivityKind, "kind"),
        UniqueConstraint("kind", "event_id"),
        Index("ix_activity_events_user_occurred", "user_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    event_id: Mapped[str]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str]
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    payload_hash: Mapped[str]
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime] = created_at()


class UserMetrics(Base):
    """Counters the badge rules read, moved in the same transaction as the event that moves
    them; `updated_at` is when any metric of the user last changed (the hourly badge job
    evaluates the users changed since its last run). approvedConversions is read from
    conversion_requests itself."""

    __tablename__ = "user_metrics"
    __table_args__ = (
        CheckConstraint(
            "tasks_accepted >= 0 AND critical_bug_reports >= 0 AND helpful_reviews >= 0"
            " AND reviews_total >= 0 AND reviews_agreed >= 0 AND policy_violations >= 0"
            " AND endorsements_received >= 0 AND quality_sum >= 0 AND quality_count >= 0",
            name="counters_nonneg",
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    tasks_accepted: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    critical_bug_reports: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    helpful_reviews: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    reviews_total: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    reviews_agreed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    policy_violations: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    endorsements_received: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    quality_sum: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    quality_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated_at: Mapped[datetime] = updated_at()


class DailyUserStats(Base):
    """Per user and UTC day: the inputs of that day's reputation gain and the daily caps."""

    __tablename__ = "daily_user_stats"
    __table_args__ = (
        CheckConstraint(
            "xp_gain >= 0 AND endorsement_weight_milli >= 0 AND endorsement_xp >= 0"
            " AND badges_awarded >= 0 AND buz_issued >= 0",
            name="counters_nonneg",
        ),
        Index("ix_daily_user_stats_day", "day"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    xp_gain: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    endorsement_weight_milli: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    endorsement_xp: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    badges_awarded: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    buz_issued: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class PortfolioItem(Base):
    __tablename__ = "portfolio_items"
    __table_args__ = (
        CheckConstraint("buz_earned >= 0", name="buz_nonneg"),
        Index("ix_portfolio_items_owner_created", "owner_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str]
    description: Mapped[str] = mapped_column(server_default="")
    urls: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=_EMPTY_TEXT_ARRAY)
    document_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(PG_UUID(as_uuid=True)), server_default=text("'{}'::uuid[]")
    )
    task_id: Mapped[str | None] = mapped_column(ForeignKey("task_rewards.task_id"))
    buz_earned: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    impact: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    is_public: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
