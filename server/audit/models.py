"""Audit tables: hash-chained events, chain heads, signed checkpoints, incidents, service keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, created_at


class AuditEvent(Base):
    """Write-once (trigger). Chained per `chain_id` (server/audit/domain.py)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("chain_id", "seq"),
        UniqueConstraint("chain_id", "prev_hash"),
        # Query API: filters by scope+ref, actor, action, time range; keyset on (occurred_at, id).
        Index("ix_audit_events_scope_ref", "scope", "ref_id", "occurred_at", "id"),
        Index("ix_audit_events_actor", "actor_id", "occurred_at", "id"),
        Index("ix_audit_events_action", "action", "occurred_at", "id"),
        Index("ix_audit_events_occurred", "occurred_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    chain_id: Mapped[str]
    seq: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    actor_id: Mapped[str | None]
    action: Mapped[str]
    scope: Mapped[str]
    ref_id: Mapped[str]
    request_id: Mapped[str | None]
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    payload_hash: Mapped[str]
    prev_hash: Mapped[str]
    hash: Mapped[str]


class AuditChainHead(Base):
    """The last (seq, hash) of each audit chain; locked FOR UPDATE by appenders."""

    __tablename__ = "audit_chain_heads"

    chain_id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str]
    updated_at: Mapped[datetime] = created_at()


class ServiceKey(Base):
    """The service's own public keys (checkpoints, certificates), listed by key id."""

    __tablename__ = "service_keys"

    id: Mapped[str] = mapped_column(Text, primary_key=True)  # key id
    public_key_pem: Mapped[str]
    algorithm: Mapped[str] = mapped_column(server_default="ES256")
    created_at: Mapped[datetime] = created_at()
    retired_at: Mapped[datetime | None]


class AuditCheckpoint(Base):
    """Write-once (trigger): a signature over every chain head (audit and ledger) at a time."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_created", "created_at", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    created_at: Mapped[datetime] = created_at()
    heads: Mapped[dict[str, Any]] = mapped_column(JSONB)
    merkle_root: Mapped[str]
    key_id: Mapped[str] = mapped_column(ForeignKey("service_keys.id"))
    signature: Mapped[bytes]


class IntegrityIncident(Base):
    """A detected chain break. Recorded, never repaired by rewriting history."""

    __tablename__ = "integrity_incidents"
    __table_args__ = (
        Index(
            "ix_integrity_incidents_open",
            "detected_at",
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index("ix_integrity_incidents_chain", "chain_kind", "chain_id", "seq"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    detected_at: Mapped[datetime] = created_at()
    chain_kind: Mapped[str]  # AUDIT | LEDGER
    chain_id: Mapped[str]
    seq: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str]  # e.g. CHANGED, MISSING, INSERTED, REORDERED, TRUNCATED, FORK
    detail: Mapped[str] = mapped_column(server_default="")
    resolved_at: Mapped[datetime | None]
