"""The layout's promises that a change could quietly break: pure modules need no transport
and no database driver, and every kind of domain error has its status code."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from server.core import errors
from server.interceptors.errors import STATUS_CODES, status_code

# Rules and value types: importable without grpc, SQLAlchemy or asyncpg.
PURE_MODULES = [
    "server.core.errors",
    "server.core.chain",
    "server.core.context",
    "server.core.validation",
    "server.core.access",
    "server.core.params",
    "server.audit.domain",
    "server.profile.domain",
    "server.profile.gamification",
    "server.profile.activity_rules",
    "server.profile.badge_rules",
    "server.profile.skills_rules",
    "server.profile.portfolio_rules",
    "server.wallet.domain",
    "server.wallet.entries",
    "server.wallet.verify",
    "server.wallet.reward_fold",
    "server.conversion.domain",
    "server.document.domain",
    "server.jobs.registry",
    "server.ops.domain",
]

_BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"grpc", "sqlalchemy", "asyncpg", "google"}:
            raise ImportError(f"a pure module imported {name}")
        return None
sys.meta_path.insert(0, Block())
import importlib
for module in sys.argv[1:]:
    importlib.import_module(module)
"""


def test_pure_modules_import_no_transport_and_no_database() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _BLOCKER, *PURE_MODULES],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _kinds() -> list[type[errors.DomainError]]:
    found: list[type[errors.DomainError]] = []
    todo = [errors.DomainError]
    while todo:
        kind = todo.pop()
        for sub in kind.__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


@pytest.mark.parametrize("kind", _kinds(), ids=lambda k: k.__name__)
def test_every_kind_of_domain_error_has_a_status(kind: type[errors.DomainError]) -> None:
    code = status_code(kind("message"))
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.OK)


def test_a_subclass_maps_as_its_parent() -> None:
    assert status_code(errors.IdempotencyConflict("x")) is grpc.StatusCode.ALREADY_EXISTS
    assert errors.IdempotencyConflict not in STATUS_CODES
