"""Statements on the asyncpg connection under SQLAlchemy, for hot paths.

SQLAlchemy's per-statement work (compilation cache lookups, result machinery, greenlet
switches) is a large share of a short request's CPU. Hot paths send module-constant SQL on
the asyncpg connection the pool already owns (asyncpg prepares each statement once per
connection), while Database keeps owning transactions, retries and the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.ext.asyncio import AsyncConnection

_ERROR_CLASSES: dict[str, type[DBAPIError]] = {
    "22": DataError,
    "23": IntegrityError,
    "40": OperationalError,
    "42": ProgrammingError,
    "53": OperationalError,
    "57": OperationalError,
}


class Driver:
    """The asyncpg connection under a SQLAlchemy connection.

    Errors are re-raised as SQLAlchemy DBAPIError (the asyncpg error is `.orig`, so
    sqlstate_of and Database.run's 40001/40P01 retry see them); an error that is not the
    server's answer to a statement (connection lost, protocol state unknown) invalidates
    the connection so the pool does not hand it out again.
    """

    def __init__(self, conn: AsyncConnection, driver: Any, *, autocommit: bool = False) -> None:
        self._conn = conn
        self._driver = driver
        self._autocommit = autocommit

    @classmethod
    async def of(cls, conn: AsyncConnection, *, autocommit: bool = False) -> Driver:
        raw = await conn.get_raw_connection()
        return cls(conn, raw.driver_connection, autocommit=autocommit)

    async def fetchrow(self, sql: str, args: Sequence[Any]) -> Any:
        self._check_transaction()
        try:
            return await self._driver.fetchrow(sql, *args)
        except Exception as error:
            raise await self._translate(error, sql, args) from error

    async def fetch(self, sql: str, args: Sequence[Any]) -> list[Any]:
        self._check_transaction()
        try:
            return list(await self._driver.fetch(sql, *args))
        except Exception as error:
            raise await self._translate(error, sql, args) from error

    def _check_transaction(self) -> None:
        if not self._autocommit and not self._driver.is_in_transaction():
            # The adapter begins lazily, on its first statement: a raw statement before that
            # would autocommit. Transactional callers run a SQLAlchemy statement first.
            raise RuntimeError("driver statement outside the session's transaction")

    async def _translate(self, error: Exception, sql: str, args: Sequence[Any]) -> DBAPIError:
        state = getattr(error, "sqlstate", None)
        if not isinstance(state, str) or state.startswith("08") or self._driver.is_closed():
            await self._conn.invalidate(error)
            return DBAPIError(sql, list(args), error, connection_invalidated=True)
        kind = _ERROR_CLASSES.get(state[:2], DBAPIError)
        return kind(sql, list(args), error)
