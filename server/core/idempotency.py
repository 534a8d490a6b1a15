"""The idempotency-record primitive: claim a caller's key inside the use case's transaction.

    stored = await idempotency.claim(session, scope, key, fingerprint)
    if stored is not None:
        return rebuild(stored)          # a retry: answer what the first call answered
    ... do the change, append the audit event ...
    await idempotency.complete(session, scope, key, response_json)

The claim is an `INSERT … ON CONFLICT DO NOTHING`: while the first call's transaction is
open, a concurrent duplicate blocks on the unique key, then sees the committed record (or
takes the key over if the first call rolled back). The record commits or rolls back with
the effect, so a key never points at a change that did not happen.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import IdempotencyConflict

_CLAIM = text(
    "INSERT INTO idempotency_records (scope, key, fingerprint) "
    "VALUES (:scope, :key, :fingerprint) ON CONFLICT DO NOTHING RETURNING 1"
)
_READ = text(
    "SELECT fingerprint, response FROM idempotency_records WHERE scope = :scope AND key = :key"
)
_COMPLETE = text(
    "UPDATE idempotency_records SET response = CAST(:response AS jsonb) "
    "WHERE scope = :scope AND key = :key"
)


def fingerprint(message: Message, *, ignore: tuple[str, ...] = ("request_id",)) -> str:
    """SHA-256 of the request's deterministic bytes, without the idempotency key itself."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in ignore:
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def scope_for(method: str, caller: str | None) -> str:
    """Keys are per RPC and per caller: two callers may pick the same request id."""
    return f"{method}:{caller or '-'}"


async def claim(
    session: AsyncSession, scope: str, key: str, fingerprint: str
) -> dict[str, Any] | None:
    """Own `key` (returns None) or return the first call's stored response."""
    owned = (
        await session.execute(_CLAIM, {"scope": scope, "key": key, "fingerprint": fingerprint})
    ).first()
    if owned is not None:
        return None
    stored = await lookup(session, scope, key, fingerprint)
    if stored is None:  # pragma: no cover - the conflicting row is committed and never deleted
        raise RuntimeError("idempotency record vanished")
    return stored


async def lookup(
    session: AsyncSession, scope: str, key: str, fingerprint: str
) -> dict[str, Any] | None:
    """The stored response of `key` without claiming it (None: no call used it yet), for a
    use case that must answer a retry before it can claim (RunJob claims once it holds the
    job's lock, so a retry must not wait for that lock)."""
    row = (await session.execute(_READ, {"scope": scope, "key": key})).first()
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise IdempotencyConflict(
            "request_id was already used with a different request",
            metadata={"request_id": key},
        )
    stored: dict[str, Any] = row.response or {}
    return stored


async def complete(session: AsyncSession, scope: str, key: str, response: dict[str, Any]) -> None:
    await session.execute(
        _COMPLETE, {"scope": scope, "key": key, "response": json.dumps(response, default=str)}
    )
