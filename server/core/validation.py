"""Checks of caller-supplied values that every service shares: ids, keys, times, text, URLs.

Each raises InvalidArgument naming the field (a BadRequest field violation), so a client
sees which value to fix. Pure: no I/O, no transport.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from server.core.errors import InvalidArgument

# Clocks of callers and server disagree a little; a time further ahead is a caller's bug.
MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_KEY_LENGTH = 128


def parse_uuid(raw: str, field: str, description: str = "must be a UUID") -> uuid.UUID:
    """A caller-supplied id; anything but a UUID is INVALID_ARGUMENT naming the field."""
    try:
        return uuid.UUID(raw)
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument.field(field, description) from None


def request_key(key: str, field: str = "request_id") -> str:
    """An idempotency key (request id, task id): 1..128 printable characters."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidArgument.field(field, f"must be 1..{MAX_KEY_LENGTH} printable characters")
    return key


def required_time(value: datetime | None, field: str) -> datetime:
    """A time the call must carry, with its time zone, as UTC."""
    if value is None:
        raise InvalidArgument.field(field, "is required")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument.field(field, "must carry a time zone")
    return value.astimezone(UTC)


def not_future(value: datetime, field: str, now: datetime) -> datetime:
    """`value` unless it lies more than MAX_FUTURE_SKEW after `now`."""
    if value > now + MAX_FUTURE_SKEW:
        minutes = int(MAX_FUTURE_SKEW.total_seconds() // 60)
        raise InvalidArgument.field(field, f"must not be more than {minutes} minutes in the future")
    return value


def text(value: str, field: str, *, max_length: int, min_length: int = 0) -> str:
    """`value` stripped of surrounding white space, its length within the bounds."""
    value = value.strip()
    if not min_length <= len(value) <= max_length:
        bounds = f"at most {max_length}" if min_length == 0 else f"{min_length}..{max_length}"
        raise InvalidArgument.field(field, f"must be {bounds} characters")
    return value


def url(value: str, field: str, *, max_length: int, schemes: Collection[str]) -> str:
    """Empty, or an absolute URL with one of `schemes` and a host, of at most max_length."""
    if not value:
        return value
    parsed = urlparse(value)
    if len(value) > max_length or parsed.scheme not in schemes or not parsed.netloc:
        raise InvalidArgument.field(
            field,
            f"must be empty or an absolute {'/'.join(sorted(schemes))} URL"
            f" of at most {max_length} chars",
        )
    return value
