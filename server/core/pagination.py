"""Keyset pagination with opaque, tamper-proof page tokens.

A token is the Fernet encryption of the last row's keyset values plus a fingerprint of the
query's filters: a client cannot read, forge or reuse it under other filters (that is
INVALID_ARGUMENT). Tokens carry a timestamp and expire after TOKEN_TTL_S.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from cryptography.fernet import Fernet, InvalidToken

from server.core.errors import InvalidArgument

T = TypeVar("T")
# A newest-first keyset: (time, id) of the last row of a page, the id as text.
TimeKey = tuple[datetime, str]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
TOKEN_TTL_S = 24 * 3600
# Far above any token this server issues; a longer one is not worth decrypting.
MAX_TOKEN_LENGTH = 2048


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


class PageTokens:
    def __init__(self, secret: str) -> None:
        # No configured secret: a random per-process key (tokens die with the process).
        material = secret.encode() if secret else secrets.token_bytes(32)
        key = base64.urlsafe_b64encode(hashlib.sha256(b"page-token:" + material).digest())
        self._fernet = Fernet(key)

    @staticmethod
    def _filters_digest(filters: Any) -> str:
        raw = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def encode(self, keyset: list[Any], filters: Any = None) -> str:
        body = json.dumps({"k": keyset, "f": self._filters_digest(filters)}, default=str)
        return self._fernet.encrypt(body.encode()).decode()

    def decode(self, token: str, filters: Any = None) -> list[Any] | None:
        """The keyset after which the next page starts, or None for the first page."""
        if not token:
            return None
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidArgument.field("page_token", "is invalid or expired")
        try:
            body = json.loads(self._fernet.decrypt(token.encode(), ttl=TOKEN_TTL_S))
        except (InvalidToken, ValueError) as exc:
            raise InvalidArgument.field("page_token", "is invalid or expired") from exc
        if body.get("f") != self._filters_digest(filters):
            raise InvalidArgument.field("page_token", "was issued for different filters")
        keyset: list[Any] = body["k"]
        return keyset

    def page(
        self,
        rows: Sequence[T],
        size: int,
        filters: Any,
        keyset: Callable[[T], list[Any]],
    ) -> Page[T]:
        """The page of `rows` fetched with LIMIT size + 1: the first `size`, and a token
        after the last of them when there were more."""
        items = list(rows[:size])
        more = len(rows) > size
        return Page(items, self.encode(keyset(items[-1]), filters) if more else "")

    def time_keyset(self, token: str, filters: Any = None) -> TimeKey | None:
        """The (time, id) after which a newest-first page continues (`time_key`'s keyset)."""
        keyset = self.decode(token, filters)
        return (datetime.fromisoformat(keyset[0]), str(keyset[1])) if keyset else None


def time_key(at: datetime, ident: object) -> list[Any]:
    """The keyset of a row in a newest-first list ordered by (time, id)."""
    return [at.isoformat(), str(ident)]
