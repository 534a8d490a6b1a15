"""The one canonical encoding and hash rule behind every hash chain (ledger and audit).

A third party recomputes a chain with nothing but this description:

    canonical(entry) = UTF-8 bytes of JSON with keys sorted, no whitespace
                       (separators "," and ":"), non-ASCII kept as UTF-8, integers as
                       JSON numbers, absent values as null, timestamps as RFC 3339 UTC
                       with exactly six fractional digits and a "Z" ("2026-01-02T03:04:05.000006Z").
    hash(entry)      = lowercase hex SHA-256 of  prev_hash  ":"  canonical(entry)
    prev_hash        = the previous entry's hash, or GENESIS (64 zeros) for the first entry.

The entry covers every stored field except `hash` itself (and `prev_hash`, which is
chained explicitly). tests/test_chain.py pins a test vector.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def format_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("chained timestamps must be timezone-aware")
    utc = value.astimezone(UTC)
    if utc.year < 1000:  # isoformat pads the year to four digits, strftime's %Y does not
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # Same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ"), several times faster (hot path).
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_PLAIN = (str, int, bool, type(None))  # exact types, emitted as they are


def _normalize(value: Any) -> Any:
    # Exact-type checks first: entries are mostly flat dicts of str/int/None, and an
    # isinstance check against an ABC (Mapping) costs more than the rest together.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is datetime:
        return format_time(value)
    if kind is dict or isinstance(value, Mapping):
        return {str(k): _normalize(v) for k, v in value.items()}
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        return [_normalize(v) for v in value]
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        raise TypeError("floats are not allowed in chained entries; use integers (fixed point)")
    return str(value)


def canonical(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(
        _normalize(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def chain_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(b":")
    digest.update(canonical(entry))
    return digest.hexdigest()


def payload_hash(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(payload)).hexdigest()
