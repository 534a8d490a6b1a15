"""Document service tables: clients, documents, shares, comments, signatures, legal holds."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, created_at, one_of, updated_at, uuid_pk
from server.document.domain import (
    DocumentStatus,
    HoldTarget,
    SignatureRequestStatus,
    SignerStatus,
    SigningOrder,
)


class Client(Base):
    """An owner-scoped contact."""

    __tablename__ = "clients"
    __table_args__ = (Index("ix_clients_owner_created", "owner_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str]
    email: Mapped[str | None]
    phone: Mapped[str | None]
    organization: Mapped[str | None]
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        one_of("status", DocumentStatus, "status"),
        CheckConstraint("size_bytes >= 0", name="size_nonneg"),
        CheckConstraint("(status = 'DELETED') = (deleted_at IS NOT NULL)", name="deleted_pair"),
        Index("ix_documents_owner_created", "owner_id", "created_at", "id"),
        Index("ix_documents_client_id", "client_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str]
    filename: Mapped[str]
    media_type: Mapped[str]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str]
    blob_key: Mapped[str]
    client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clients.id"))
    status: Mapped[str] = mapped_column(server_default="ACTIVE")
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class DocumentShare(Base):
    """A share with exactly one of a user or a client; expired or revoked shares grant nothing."""

    __tablename__ = "document_shares"
    __table_args__ = (
        CheckConstraint("num_nonnulls(to_user_id, to_client_id) = 1", name="one_target"),
        Index("ix_document_shares_document_created", "document_id", "created_at", "id"),
        Index("ix_document_shares_to_user_id", "to_user_id"),
        Index("ix_document_shares_to_client_id", "to_client_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id"))
    to_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    to_client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clients.id"))
    can_view: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    can_comment: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    can_sign: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = created_at()


class DocumentComment(Base):
    __tablename__ = "document_comments"
    __table_args__ = (
        Index("ix_document_comments_document_created", "document_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id"))
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str]
    created_at: Mapped[datetime] = created_at()


class SigningKey(Base):
    """A user's ECDSA P-256 public key; never deleted (trigger), only retired."""

    __tablename__ = "signing_keys"
    __table_args__ = (Index("ix_signing_keys_user_id", "user_id"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)  # key id
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    public_key_pem: Mapped[str]
    algorithm: Mapped[str] = mapped_column(server_default="ES256")
    created_at: Mapped[datetime] = created_at()
    retired_at: Mapped[datetime | None]


class SignatureRequest(Base):
    __tablename__ = "signature_requests"
    __table_args__ = (
        one_of("ordering", SigningOrder, "ordering"),
        one_of("status", SignatureRequestStatus, "status"),
        Index("ix_signature_requests_document_created", "document_id", "created_at", "id"),
        Index("ix_signature_requests_requester_created", "requester_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id"))
    requester_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    document_sha256: Mapped[str]
    ordering: Mapped[str] = mapped_column(server_default="PARALLEL")
    status: Mapped[str] = mapped_column(server_default="PENDING")
    expires_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    certificate: Mapped[bytes | None]
    certificate_signature: Mapped[bytes | None]
    certificate_key_id: Mapped[str | None] = mapped_column(ForeignKey("service_keys.id"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class SignatureSigner(Base):
    __tablename__ = "signature_signers"
    __table_args__ = (
        one_of("status", SignerStatus, "status"),
        CheckConstraint("position >= 0", name="position_nonneg"),
        Index("ix_signature_signers_signer_id", "signer_id"),
    )

    request_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("signature_requests.id"), primary_key=True
    )
    signer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(server_default="PENDING")
    key_id: Mapped[str | None] = mapped_column(ForeignKey("signing_keys.id"))
    payload: Mapped[bytes | None]
    signature: Mapped[bytes | None]
    signed_at: Mapped[datetime | None]


class LegalHold(Base):
    """A hold on one document or on all of a user's documents, placed and released with reasons."""

    __tablename__ = "legal_holds"
    __table_args__ = (
        one_of("target_type", HoldTarget, "target_type"),
        CheckConstraint("(released_at IS NULL) = (released_by IS NULL)", name="released_pair"),
        Index(
            "ix_legal_holds_active_target",
            "target_type",
            "target_id",
            postgresql_where=text("released_at IS NULL"),
        ),
        Index("ix_legal_holds_placed", "placed_at", "id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    target_type: Mapped[str]
    target_id: Mapped[uuid.UUID]
    reason: Mapped[str]
    placed_by: Mapped[str]  # actor id
    placed_at: Mapped[datetime] = created_at()
    released_by: Mapped[str | None]
    released_at: Mapped[datetime | None]
    release_reason: Mapped[str | None]
