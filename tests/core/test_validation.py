"""Shared checks of caller-supplied values: each names its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from server.core.errors import InvalidArgument
from server.core.validation import (
    MAX_FUTURE_SKEW,
    not_future,
    parse_uuid,
    request_key,
    required_time,
    text,
    url,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def field_of(error: pytest.ExceptionInfo[InvalidArgument]) -> str:
    return error.value.violations[0].field


def test_request_key() -> None:
    assert request_key("r-1") == "r-1"
    for bad in ("", "x" * 129, "tab\there"):
        with pytest.raises(InvalidArgument) as error:
            request_key(bad, "task_id")
        assert field_of(error) == "task_id"


def test_times() -> None:
    paris = datetime(2026, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert required_time(paris, "at") == NOW
    with pytest.raises(InvalidArgument, match="required"):
        required_time(None, "at")
    with pytest.raises(InvalidArgument, match="time zone"):
        required_time(datetime(2026, 6, 1), "at")
    assert not_future(NOW + MAX_FUTURE_SKEW, "at", NOW) == NOW + MAX_FUTURE_SKEW
    with pytest.raises(InvalidArgument, match="5 minutes") as error:
        not_future(NOW + MAX_FUTURE_SKEW + timedelta(microseconds=1), "at", NOW)
    assert field_of(error) == "at"


def test_ids_text_and_urls() -> None:
    with pytest.raises(InvalidArgument):
        parse_uuid("nope", "venture_id")
    assert text("  Ada  ", "name", min_length=1, max_length=3) == "Ada"
    with pytest.raises(InvalidArgument, match=r"1\.\.3"):
        text("    ", "name", min_length=1, max_length=3)
    assert url("", "site", max_length=20, schemes=("https",)) == ""
    assert url("https://a.example", "site", max_length=20, schemes=("https",))
    for bad in ("http://a.example", "https://", "https://" + "a" * 30, "javascript:alert(1)"):
        with pytest.raises(InvalidArgument):
            url(bad, "site", max_length=20, schemes=("https",))
