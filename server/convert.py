"""Proto ⇄ Python helpers shared by every servicer (timestamps, field masks)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import grpc.aio
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from server.errors import InvalidArgument


def parse_uuid(raw: str, field: str, description: str = "must be a UUID") -> uuid.UUID:
    """A caller-supplied id; anything but a UUID is INVALID_ARGUMENT naming the field."""
    try:
        return uuid.UUID(raw)
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument.field(field, description) from None


def to_timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(message: Message, field: str) -> datetime | None:
    """The timestamp field's value, or None when the field is unset."""
    if not message.HasField(field):
        return None
    ts: Timestamp = getattr(message, field)
    return ts.ToDatetime(tzinfo=UTC)


def mask_changes(resource: Message, mask: FieldMask, allowed: tuple[str, ...]) -> dict[str, Any]:
    """{path: value} for each path of `mask`; paths outside `allowed` are INVALID_ARGUMENT."""
    changes: dict[str, Any] = {}
    for path in mask.paths:
        if path not in allowed:
            raise InvalidArgument.field("update_mask", f"`{path}` cannot be updated")
        changes[path] = getattr(resource, path)
    return changes


# Servicer signatures: the request/response type parameters add nothing at that boundary.
ServicerContext = grpc.aio.ServicerContext[Any, Any]
