"""Proto ⇄ Python helpers shared by every package's mappers: timestamps, field masks, enums.

Transport-side only: servicers and mappers import this, domain modules never do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

import grpc.aio
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from server.core.errors import InvalidArgument

E = TypeVar("E", bound=StrEnum)
V = TypeVar("V", bound=int)

# Servicer signatures: the request/response type parameters add nothing at that boundary.
ServicerContext = grpc.aio.ServicerContext[Any, Any]


def to_timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def from_timestamp(message: Message, field: str) -> datetime | None:
    """The timestamp field's value, or None when the field is unset; a value outside the
    Timestamp range (or with nanos outside 0..999,999,999) is INVALID_ARGUMENT."""
    if not message.HasField(field):
        return None
    ts: Timestamp = getattr(message, field)
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS and 0 <= ts.nanos <= 999_999_999):
        raise InvalidArgument.field(
            field, "must be a valid timestamp from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z"
        )
    return ts.ToDatetime(tzinfo=UTC)


def mask_changes(resource: Message, mask: FieldMask, allowed: tuple[str, ...]) -> dict[str, Any]:
    """{path: value} for each path of `mask`; paths outside `allowed` are INVALID_ARGUMENT."""
    changes: dict[str, Any] = {}
    for path in mask.paths:
        if path not in allowed:
            raise InvalidArgument.field("update_mask", f"`{path}` cannot be updated")
        changes[path] = getattr(resource, path)
    return changes


class ProtoEnum(Generic[E, V]):
    """A domain enum and its proto enum, mapped by name: `KycStatus.PASSED` ⇄ `KYC_STATUS_PASSED`.

    The domain enum is the one definition; the mapping is derived (`value_of` is the proto
    enum's `Value`, e.g. `pb.KycStatus.Value`), and building it fails at import when a member
    has no proto value, so the two cannot drift apart silently. Proto numbers without a
    member (UNSPECIFIED, or a number a newer client sends) decode to None.
    """

    def __init__(self, domain: type[E], value_of: Callable[[str], V], prefix: str) -> None:
        self._unspecified = value_of(f"{prefix}UNSPECIFIED")
        self._to_pb: dict[str, V] = {}
        for member in domain:
            name = f"{prefix}{member.name}"
            try:
                self._to_pb[member] = value_of(name)
            except ValueError:
                raise TypeError(f"the proto enum has no value {name}") from None
        self._from_pb: Mapping[int, E] = {self._to_pb[m]: m for m in domain}

    def to_pb(self, member: str) -> V:
        """The proto number of a member (or of its value, as read from a row); UNSPECIFIED
        for a value no member has (a row written outside the API)."""
        return self._to_pb.get(member, self._unspecified)

    def from_pb(self, number: int) -> E | None:
        return self._from_pb.get(number)
