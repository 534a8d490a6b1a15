"""Document rules (documents, shares, signatures, legal holds): pure, no I/O.

Today the statuses and kinds the schema stores; the rules arrive with DocumentService.
"""

from __future__ import annotations

from enum import StrEnum


class DocumentStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DELETED = "DELETED"


class SigningOrder(StrEnum):
    SEQUENTIAL = "SEQUENTIAL"
    PARALLEL = "PARALLEL"


class SignatureRequestStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


class SignerStatus(StrEnum):
    PENDING = "PENDING"
    SIGNED = "SIGNED"
    DECLINED = "DECLINED"


class HoldTarget(StrEnum):
    DOCUMENT = "DOCUMENT"
    USER = "USER"
