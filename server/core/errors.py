"""Domain errors: what use cases and pure rules raise when a call cannot be served.

No transport here (importable without grpc): each class names a kind of failure, and the
error interceptor's one table (server/interceptors/errors.py STATUS_CODES) maps the kind to a
gRPC status code with google.rpc details (ErrorInfo with an UPPER_SNAKE reason, BadRequest,
RetryInfo). Nothing else in the code base chooses a status code. Unexpected exceptions become
INTERNAL with no text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

ERROR_DOMAIN = "smartstart.core"


class Reason(StrEnum):
    """ErrorInfo reasons clients can branch on (documented in the README)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"  # noqa: S105 - a reason code, not a secret
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RATE_LIMITED = "RATE_LIMITED"
    KYC_REQUIRED = "KYC_REQUIRED"
    REPUTATION_TOO_LOW = "REPUTATION_TOO_LOW"
    DEVICE_NOT_COMPLIANT = "DEVICE_NOT_COMPLIANT"
    DAILY_CAP_REACHED = "DAILY_CAP_REACHED"
    DAILY_LIMIT_REACHED = "DAILY_LIMIT_REACHED"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    INSUFFICIENT_LOCK = "INSUFFICIENT_LOCK"
    WINDOW_NOT_OPEN = "WINDOW_NOT_OPEN"
    POOL_EXHAUSTED = "POOL_EXHAUSTED"
    BELOW_MINIMUM = "BELOW_MINIMUM"
    INVALID_STATE = "INVALID_STATE"
    LEGAL_HOLD = "LEGAL_HOLD"
    CHECKSUM_MISMATCH = "CHECKSUM_MISMATCH"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    TOO_LARGE = "TOO_LARGE"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    CONCURRENT_MODIFICATION = "CONCURRENT_MODIFICATION"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


@dataclass(eq=False)
class DomainError(Exception):
    """Base of every expected failure. The subclass is the kind (and so the status code)."""

    message: str
    reason: Reason | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    violations: tuple[FieldViolation, ...] = ()
    retry_after_s: float | None = None

    default_reason = Reason.INVALID_ARGUMENT

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def effective_reason(self) -> Reason:
        return self.reason or self.default_reason


class InvalidArgument(DomainError):
    default_reason = Reason.INVALID_ARGUMENT

    @classmethod
    def field(cls, name: str, description: str, reason: Reason | None = None) -> InvalidArgument:
        return cls(
            f"{name}: {description}", reason=reason, violations=(FieldViolation(name, description),)
        )


class NotFound(DomainError):
    default_reason = Reason.NOT_FOUND


class AlreadyExists(DomainError):
    default_reason = Reason.ALREADY_EXISTS


class IdempotencyConflict(AlreadyExists):
    default_reason = Reason.IDEMPOTENCY_CONFLICT


class FailedPrecondition(DomainError):
    default_reason = Reason.INVALID_STATE


class PermissionDenied(DomainError):
    default_reason = Reason.PERMISSION_DENIED


class Unauthenticated(DomainError):
    default_reason = Reason.UNAUTHENTICATED


class ResourceExhausted(DomainError):
    default_reason = Reason.RATE_LIMITED


class Aborted(DomainError):
    default_reason = Reason.CONCURRENT_MODIFICATION


class DataLoss(DomainError):
    default_reason = Reason.CHECKSUM_MISMATCH


class Unimplemented(DomainError):
    default_reason = Reason.NOT_IMPLEMENTED
