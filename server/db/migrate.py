"""Run Alembic migrations programmatically (CLI `smartstart migrate`, server start-up, tests).

Both functions are synchronous. The Alembic env is async (asyncio.run inside); when called
from a thread whose event loop is running, the work moves to a helper thread, so callers
may use them from anywhere (in async code prefer `await asyncio.to_thread(upgrade, url)`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

_REPO_ROOT = Path(__file__).resolve().parents[2]


def script_location() -> Path:
    """migrations/ in a checkout, server/_migrations in an installed wheel."""
    for candidate in (
        _REPO_ROOT / "migrations",
        Path(__file__).resolve().parents[1] / "_migrations",
    ):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("Alembic migrations not found")


def alembic_config(url: str) -> Config:
    """An Alembic Config for `url` (the env reads the URL from config.attributes)."""
    ini = _REPO_ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["database_url"] = url
    return config


def _off_loop(fn: Callable[[], None]) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn()
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(fn).result()


def upgrade(url: str, revision: str = "head") -> None:
    _off_loop(lambda: command.upgrade(alembic_config(url), revision))


def downgrade(url: str, revision: str) -> None:
    _off_loop(lambda: command.downgrade(alembic_config(url), revision))


def current(url: str) -> None:
    """Print the current revision (Alembic's `current`)."""
    _off_loop(lambda: command.current(alembic_config(url)))
