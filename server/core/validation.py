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
# Whitespace controls a multi-line text may hold; every other control character is refused
# anywhere (PostgreSQL refuses NUL outright, and the rest only ever confuse logs and UIs).
_TEXT_CONTROLS = frozenset("\t\n\r")
_LINE_BREAKS = frozenset("\n\r\t\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def forbidden_character(value: str) -> str | None:
    """The first character no text may contain: NUL and the other C0 controls but tab,
    newline and carriage return, DEL, and the C1 controls. None when the text is clean."""
    if value.isprintable():  # the common case, in C
        return None
    for ch in value:
        if (ch < " " and ch not in _TEXT_CONTROLS) or "\x7f" <= ch <= "\x9f":
            return ch
    return None


def check_characters(value: str, field: str) -> str:
    """`value`, or INVALID_ARGUMENT naming `field` (and the character's code point) when it
    holds a character no text may contain."""
    bad = forbidden_character(value)
    if bad is not None:
        raise InvalidArgument.field(
            field, f"must not contain the control character U+{ord(bad):04X}"
        )
    return value


def parse_uuid(raw: str, field: str, description: str = "must be a UUID") -> uuid.UUID:
    """A caller-supplied id; anything but a UUID is INVALID_ARGUMENT naming the field."""
    try:
        return uuid.UUID(raw)
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument.field(field, description) from None


def request_key(key: str, field: str = "request_id") -> str:
    """An idempotency key (request id, task id, a caller's own id): 1..128 printable
    characters."""
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


def text(
    value: str, field: str, *, max_length: int, min_length: int = 0, multiline: bool = False
) -> str:
    """`value` stripped of surrounding white space, its length within the bounds, without
    control characters; a single line unless `multiline` (descriptions, notes, reasons)."""
    value = check_characters(value, field).strip()
    if not multiline and not _LINE_BREAKS.isdisjoint(value):
        raise InvalidArgument.field(field, "must be a single line")
    if not min_length <= len(value) <= max_length:
        bounds = f"at most {max_length}" if min_length == 0 else f"{min_length}..{max_length}"
        raise InvalidArgument.field(field, f"must be {bounds} characters")
    return value


def url(value: str, field: str, *, max_length: int, schemes: Collection[str]) -> str:
    """Empty, or an absolute URL with one of `schemes` and a host, of at most max_length."""
    if not value:
        return value
    if len(value) > max_length or not value.isprintable() or " " in value:
        parsed = None
    else:
        try:
            parsed = urlparse(value)
        except ValueError:  # e.g. an invalid IPv6 host
            parsed = None
    if parsed is None or parsed.scheme not in schemes or not parsed.netloc:
        raise InvalidArgument.field(
            field,
            f"must be empty or an absolute {'/'.join(sorted(schemes))} URL"
            f" of at most {max_length} chars",
        )
    return value
