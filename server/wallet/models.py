"""Wallet service tables: wallets, the hash-chained ledger, task rewards."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from server.core.chain import GENESIS
from server.db.base import Base, created_at, one_of, updated_at, uuid_pk
from server.wallet.domain import Tier
from server.wallet.entries import EntryType


class Wallet(Base):
    """One per user. `head_seq`/`head_hash` are the ledger chain head, moved under the row lock."""

    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint("buz_balance >= 0", name="balance_nonneg"),
        CheckConstraint("pending_lock >= 0", name="pending_nonneg"),
        CheckConstraint("head_seq >= 0", name="head_seq_nonneg"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), unique=True)
    buz_balance: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    pending_lock: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    head_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    head_hash: Mapped[str] = mapped_column(server_default=GENESIS)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class LedgerEntry(Base):
    """Append-only (trigger); per-wallet hash chain, seq 1, 2, ... with no gaps.

    Paging a wallet's history newest-first uses the (wallet_id, seq) unique index backwards.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("wallet_id", "seq"),
        UniqueConstraint("wallet_id", "prev_hash"),
        one_of("type", EntryType, "type"),
        CheckConstraint("seq >= 1", name="seq_positive"),
        CheckConstraint(
            "(type = 'ADJUST' AND amount <> 0) OR (type <> 'ADJUST' AND amount > 0)",
            name="amount_sign",
        ),
        CheckConstraint("balance_after >= 0 AND pending_after >= 0", name="after_nonneg"),
        Index("ix_ledger_entries_ref", "ref_kind", "ref_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str]
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    pending_after: Mapped[int] = mapped_column(BigInteger)
    ref_kind: Mapped[str | None]  # a RefKind
    ref_id: Mapped[str | None]
    note: Mapped[str | None]
    actor_id: Mapped[str | None]
    request_id: Mapped[str | None]
    created_at: Mapped[datetime] = created_at()
    prev_hash: Mapped[str]
    hash: Mapped[str]


class TaskReward(Base):
    """The outcome of one accepted task (idempotent on task_id; payload_hash detects misuse)."""

    __tablename__ = "task_rewards"
    __table_args__ = (
        one_of("tier", Tier, "tier"),
        CheckConstraint("quality BETWEEN 1 AND 5", name="quality_range"),
        CheckConstraint(
            "buz_computed >= 0 AND buz_awarded >= 0 AND buz_capped >= 0"
            " AND buz_awarded + buz_capped <= buz_computed",
            name="buz_amounts",
        ),
        CheckConstraint("xp_awarded >= 0", name="xp_nonneg"),
        Index("ix_task_rewards_user_day", "user_id", "accepted_day"),
        Index("ix_task_rewards_user_created", "user_id", "created_at", "task_id"),
    )

    task_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    venture_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ventures.id"))
    tier: Mapped[str]
    quality: Mapped[int] = mapped_column(Integer)
    reviewer_ids: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'::text[]")
    )
    accepted_at: Mapped[datetime]
    accepted_day: Mapped[date]  # UTC day of accepted_at: the daily-cap bucket
    payload_hash: Mapped[str]
    reviewer_cred_milli: Mapped[int] = mapped_column(Integer)
    buz_computed: Mapped[int] = mapped_column(BigInteger)
    buz_awarded: Mapped[int] = mapped_column(BigInteger)
    buz_capped: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    withheld_reasons: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'::text[]")
    )
    xp_awarded: Mapped[int] = mapped_column(BigInteger)
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_entries.id"))
    created_at: Mapped[datetime] = created_at()
