"""Module-constant SQL with named placeholders, rendered for asyncpg or SQLAlchemy.

Statement fragments owned by one writer (the ledger's entry CTEs, the audit log's event
CTEs) are shared by use cases that fold them into their own statements. Fragments use
`{name}` placeholders; `compose` joins (prefix, fragment) parts into one asyncpg statement,
numbering placeholders `$1, $2, ...` by first use (under each part's prefix, so two
fragments' names cannot collide), and `Statement.args` lays a dict of values out in that
order. `sqlalchemy_text` renders a fragment with `:name` binds instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, text


class _Binds:
    def __init__(self) -> None:
        self.names: dict[str, str] = {}


class _Scope:
    """str.format_map mapping: `{name}` → `$n` for prefix + name, numbered by first use."""

    def __init__(self, binds: _Binds, prefix: str) -> None:
        self._binds, self._prefix = binds, prefix

    def __getitem__(self, name: str) -> str:
        key = self._prefix + name
        names = self._binds.names
        if key not in names:
            names[key] = f"${len(names) + 1}"
        return names[key]


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    names: tuple[str, ...]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments, from values keyed prefix + name."""
        return [values[name] for name in self.names]


def compose(*parts: tuple[str, str]) -> Statement:
    """One asyncpg statement from (prefix, fragment) parts, concatenated."""
    binds = _Binds()
    sql = "".join(fragment.format_map(_Scope(binds, prefix)) for prefix, fragment in parts)
    return Statement(sql, tuple(binds.names))


class _Colon:
    def __getitem__(self, name: str) -> str:
        return f":{name}"


def sqlalchemy_text(fragment: str) -> TextClause:
    """A fragment with `{name}` placeholders as a SQLAlchemy text() with `:name` binds."""
    return text(fragment.format_map(_Colon()))


def unnest(prefix: str, columns: Sequence[tuple[str, str]], alias: str) -> str:
    """`unnest(CAST({prefix<name>} AS <type>[]), ...) AS alias(<name>, ...)`: rows from one
    array parameter per column (a multi-row write whose text does not depend on the count)."""
    casts = ", ".join(f"CAST({{{prefix}{name}}} AS {sql_type}[])" for name, sql_type in columns)
    return f"unnest({casts}) AS {alias}({', '.join(name for name, _ in columns)})"
