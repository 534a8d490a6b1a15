"""Portfolio item field rules and the item view. Pure.

title 1..120; description 0..4000; at most 10 URLs, each an absolute http(s) URL of at
most 300 characters; at most 20 document ids (UUIDs, distinct); task_id 0..128 printable
characters; at most 20 impact metrics, names 1..40 characters of [A-Za-z0-9_.-], values
finite numbers. Whether the documents and the task are the owner's is the use case's
check (server/profile/portfolio.py).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.core.errors import InvalidArgument
from server.core.validation import MAX_KEY_LENGTH, parse_uuid, text, url

PORTFOLIO_EDITABLE = (
    "title",
    "description",
    "urls",
    "document_ids",
    "task_id",
    "impact_metrics",
    "is_public",
)
MAX_URLS = 10
MAX_DOCUMENTS = 20
MAX_METRICS = 20
_METRIC_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


@dataclass(frozen=True, slots=True)
class PortfolioView:
    item_id: uuid.UUID
    owner_user_id: uuid.UUID
    title: str
    description: str
    urls: tuple[str, ...]
    document_ids: tuple[uuid.UUID, ...]
    task_id: str
    buz_earned: int
    impact_metrics: Mapping[str, float]
    is_public: bool
    created_at: datetime
    updated_at: datetime


def _urls(values: Sequence[str]) -> list[str]:
    if len(values) > MAX_URLS:
        raise InvalidArgument.field("urls", f"must list at most {MAX_URLS} URLs")
    out = []
    for i, value in enumerate(values):
        checked = url(value, f"urls[{i}]", max_length=300, schemes=("http", "https"))
        if not checked:
            raise InvalidArgument.field(f"urls[{i}]", "must not be empty")
        out.append(checked)
    return out


def _documents(values: Sequence[str]) -> list[uuid.UUID]:
    if len(values) > MAX_DOCUMENTS:
        raise InvalidArgument.field("document_ids", f"must list at most {MAX_DOCUMENTS} ids")
    ids = [parse_uuid(v, f"document_ids[{i}]") for i, v in enumerate(values)]
    if len(set(ids)) != len(ids):
        raise InvalidArgument.field("document_ids", "must be distinct")
    return ids


def _task(value: str) -> str | None:
    if not value:
        return None
    if len(value) > MAX_KEY_LENGTH or not value.isprintable():
        raise InvalidArgument.field("task_id", f"must be 0..{MAX_KEY_LENGTH} printable characters")
    return value


def _metrics(values: Mapping[str, float]) -> dict[str, float]:
    if len(values) > MAX_METRICS:
        raise InvalidArgument.field("impact_metrics", f"must have at most {MAX_METRICS} entries")
    for name, value in values.items():
        if not _METRIC_NAME.fullmatch(name):
            raise InvalidArgument.field(
                f"impact_metrics[{name[:40]}]", "names are 1..40 characters of [A-Za-z0-9_.-]"
            )
        if not math.isfinite(value):
            raise InvalidArgument.field(f"impact_metrics[{name}]", "must be a finite number")
    return dict(values)


_CHECKS: dict[str, Any] = {
    "title": lambda v: text(v, "title", min_length=1, max_length=120),
    "description": lambda v: text(v, "description", max_length=4000),
    "urls": _urls,
    "document_ids": _documents,
    "task_id": _task,
    "impact_metrics": _metrics,
    "is_public": bool,
}


def validate_item(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The checked values of the named fields (a create names them all, an update its
    mask's paths); INVALID_ARGUMENT naming the first bad one."""
    return {name: _CHECKS[name](value) for name, value in fields.items()}
