"""Conversion service tables: ventures, windows, requests, equity grants (the cap table)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from server.conversion.domain import JOB_CREATOR, RequestStatus, WindowStatus
from server.db.base import Base, created_at, one_of, updated_at, uuid_pk


class Venture(Base):
    """`granted_bps` moves with each approval and `pending_bps` reserves the bp of PENDING
    requests, both by conditional UPDATEs; the CHECKs keep them within the pool."""

    __tablename__ = "ventures"
    __table_args__ = (
        CheckConstraint("pool_bps BETWEEN 0 AND 10000", name="pool_range"),
        CheckConstraint("granted_bps >= 0 AND granted_bps <= pool_bps", name="granted_within_pool"),
        CheckConstraint("pending_bps >= 0", name="pending_nonnegative"),
        CheckConstraint("granted_bps + pending_bps <= pool_bps", name="reserved_within_pool"),
        Index("uq_ventures_name_lower", text("lower(name)"), unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str]
    description: Mapped[str] = mapped_column(server_default="")
    pool_bps: Mapped[int] = mapped_column(Integer)
    granted_bps: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    pending_bps: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class ConversionWindow(Base):
    """Windows may overlap; the job's quarterly windows are one per opens_at (the partial
    unique index makes its insert idempotent across runs and replicas)."""

    __tablename__ = "conversion_windows"
    __table_args__ = (
        CheckConstraint("closes_at > opens_at", name="closes_after_opens"),
        CheckConstraint("equity_rate_bps BETWEEN 1 AND 10000", name="rate_range"),
        one_of("status", WindowStatus, "status"),
        Index("ix_conversion_windows_status", "status"),
        Index("ix_conversion_windows_opens_at", "opens_at", "id"),
        Index(
            "uq_conversion_windows_job_opens_at",
            "opens_at",
            unique=True,
            postgresql_where=text(f"created_by = '{JOB_CREATOR}'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    label: Mapped[str]
    opens_at: Mapped[datetime]
    closes_at: Mapped[datetime]
    equity_rate_bps: Mapped[int] = mapped_column(Integer)  # bp of equity per 10,000 BUZ
    status: Mapped[str] = mapped_column(server_default="SCHEDULED")
    created_by: Mapped[str]  # a board member's user id, or JOB_CREATOR
    finalized_at: Mapped[datetime | None]
    finalized_by: Mapped[str | None]  # actor id (board member or "system")
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class ConversionRequest(Base):
    __tablename__ = "conversion_requests"
    __table_args__ = (
        CheckConstraint("buz_requested > 0", name="requested_positive"),
        CheckConstraint(
            "buz_locked >= 0 AND buz_locked <= buz_requested", name="locked_within_requested"
        ),
        CheckConstraint("equity_bp > 0", name="equity_positive"),
        one_of("status", RequestStatus, "status"),
        Index(
            "uq_conversion_requests_one_pending",
            "user_id",
            "window_id",
            "venture_id",
            unique=True,
            postgresql_where=text("status = 'PENDING'"),
        ),
        Index("ix_conversion_requests_window_status", "window_id", "status"),
        Index("ix_conversion_requests_user_created", "user_id", "created_at", "id"),
        Index("ix_conversion_requests_created_at", "created_at", "id"),
        Index("ix_conversion_requests_venture_id", "venture_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    window_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversion_windows.id"))
    venture_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ventures.id"))
    buz_requested: Mapped[int] = mapped_column(BigInteger)
    equity_rate_bps: Mapped[int] = mapped_column(Integer)  # the window's rate when requested
    buz_locked: Mapped[int] = mapped_column(BigInteger)
    equity_bp: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(server_default="PENDING")
    decided_by: Mapped[str | None]  # actor id
    resolved_at: Mapped[datetime | None]  # left PENDING
    decision_note: Mapped[str | None]
    request_id: Mapped[str | None]
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class EquityGrant(Base):
    """Write-once (trigger): a venture's cap table row from one approved conversion."""

    __tablename__ = "equity_grants"
    __table_args__ = (
        CheckConstraint("bps > 0", name="bps_positive"),
        Index("ix_equity_grants_venture_granted", "venture_id", "granted_at", "id"),
        Index("ix_equity_grants_user_id", "user_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    venture_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ventures.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    conversion_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversion_requests.id"), unique=True
    )
    bps: Mapped[int] = mapped_column(Integer)
    granted_at: Mapped[datetime] = created_at()
