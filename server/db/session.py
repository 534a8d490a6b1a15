"""Engine and transactions: `Database` is the one way services reach PostgreSQL.

db = Database.from_url(settings.database_url)
async with db.transaction() as session:      # one READ COMMITTED transaction
    ...
result = await db.run(use_case)              # same, retried on 40001 / 40P01
await db.dispose()
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from prometheus_client import Gauge
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from server.db.driver import Driver

T = TypeVar("T")

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected

_log = logging.getLogger(__name__)

# Pool use, summed over the live processes (and over the Databases of one process: a server
# has one). Checked out near capacity: calls queue for connections (raise the pool, or add
# replicas if the database has room).
POOL_CHECKED_OUT = Gauge(
    "smartstart_db_pool_checked_out",
    "Database connections in use (checked out of the pool)",
    multiprocess_mode="livesum",
)
POOL_CAPACITY = Gauge(
    "smartstart_db_pool_capacity",
    "Connections the pool may open (SMARTSTART_DB_POOL_SIZE + SMARTSTART_DB_MAX_OVERFLOW)",
    multiprocess_mode="livesum",
)


def _count_pool_use(engine: AsyncEngine) -> None:
    def checkout(*_: Any) -> None:
        POOL_CHECKED_OUT.inc()

    def checkin(*_: Any) -> None:
        POOL_CHECKED_OUT.dec()

    event.listen(engine.sync_engine, "checkout", checkout)
    event.listen(engine.sync_engine, "checkin", checkin)


def normalize_url(url: str) -> str:
    """postgres:// and postgresql:// (any driver) → postgresql+asyncpg://, rest unchanged."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def sync_url(url: str) -> str:
    """The same database for psycopg2 (used by tools that need a sync driver)."""
    return "postgresql+psycopg2://" + normalize_url(url)[len("postgresql+asyncpg://") :]


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE of a DBAPIError (asyncpg via SQLAlchemy's adapter), else None."""
    orig: Any = getattr(error, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None), error.__cause__):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def constraint_of(error: BaseException) -> str | None:
    """The constraint (or unique index) an IntegrityError names, else None."""
    orig: Any = getattr(error, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None), error.__cause__):
        name = getattr(candidate, "constraint_name", None)
        if isinstance(name, str):
            return name
    return None


def is_retryable(error: BaseException) -> bool:
    if not isinstance(error, DBAPIError):
        return False
    return error.connection_invalidated or sqlstate_of(error) in RETRYABLE_SQLSTATES


class Database:
    """An async engine plus a session factory; sessions never expire objects on commit."""

    def __init__(self, engine: AsyncEngine, *, capacity: int = 0) -> None:
        self._engine = engine
        _count_pool_use(engine)
        self._capacity = capacity
        POOL_CAPACITY.inc(capacity)
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=True)
        # Same pool; statements run without BEGIN/COMMIT (one round trip for a lone read).
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        pool_size: int = 20,
        max_overflow: int = 10,
        statement_cache: bool = True,
        echo: bool = False,
    ) -> Database:
        """Build the engine. `statement_cache=False` for PgBouncer in transaction mode."""
        sa_url = make_url(normalize_url(url))
        # Every statement is a module constant with binds on keys, prepared once per
        # connection: plan it once too. With the default (auto), PostgreSQL re-plans the
        # first executions of each and keeps re-planning statements whose generic plan it
        # under-rates, such as the multi-row CTEs over arrays of the group-committed writes
        # (~0.3 ms of planning per execution; issuance +7% with generic plans).
        connect_args: dict[str, Any] = {
            "server_settings": {"timezone": "UTC", "plan_cache_mode": "force_generic_plan"}
        }
        if not statement_cache:
            connect_args["statement_cache_size"] = 0
            # Unique names so two backends behind PgBouncer never see the same prepared name.
            connect_args["prepared_statement_name_func"] = lambda: f"__s_{uuid.uuid4().hex}__"
            sa_url = sa_url.update_query_dict({"prepared_statement_cache_size": "0"})
        engine = create_async_engine(
            sa_url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            # No pre-ping: it costs a round trip per transaction. A connection found dead
            # mid-use is invalidated by SQLAlchemy and `run` retries on a fresh one.
            pool_pre_ping=False,
            isolation_level="READ COMMITTED",
            connect_args=connect_args,
            echo=echo,
        )
        return cls(engine, capacity=pool_size + max_overflow)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return self._sessions

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction: commit when the block ends normally, roll back when it raises."""
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a single-statement read: autocommit, so no BEGIN/COMMIT round
        trips. Several statements here do not share a snapshot: use `transaction` for that."""
        async with self._reader.connect() as conn:
            yield conn

    async def read_rows(self, sql: str, *args: Any) -> list[Any]:
        """Every row (asyncpg Records) of one autocommit statement sent on the driver."""
        async with self._reader.connect() as conn:
            driver = await Driver.of(conn, autocommit=True)
            return await driver.fetch(sql, args)

    async def run(self, fn: Callable[[AsyncSession], Awaitable[T]], *, attempts: int = 5) -> T:
        """`fn(session)` in a transaction, retried (fresh transaction) on 40001 / 40P01 and
        on a connection that turned out dead (every use case is idempotent on its key)."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        for attempt in range(1, attempts + 1):
            try:
                async with self.transaction() as session:
                    return await fn(session)
            except DBAPIError as error:
                if attempt == attempts or not is_retryable(error):
                    raise
                delay = min(0.5, 0.01 * 2**attempt) * random.uniform(0.5, 1.5)
                _log.info(
                    "retrying transaction after %s (attempt %d of %d)",
                    sqlstate_of(error),
                    attempt,
                    attempts,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def dispose(self) -> None:
        await self._engine.dispose()
        POOL_CAPACITY.dec(self._capacity)
        self._capacity = 0
