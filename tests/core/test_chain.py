"""The canonical encoding behind every hash chain: exact text, for any input shape."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.core.chain import canonical, format_time


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.builds(timezone, st.integers(-1439, 1439).map(lambda m: timedelta(minutes=m))),
    )
)
def test_format_time_is_the_documented_strftime_text(value: datetime) -> None:
    assert format_time(value) == value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_format_time_keeps_six_digits_and_refuses_naive_times() -> None:
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2026, 1, 2))


class Kind(enum.StrEnum):
    ISSUE = "ISSUE"


class Level(enum.IntEnum):
    THREE = 3


def test_canonical_shapes() -> None:
    entry = {
        "b": [1, (2, "x"), {"z": None, "a": True}],
        "a": Kind.ISSUE,
        "n": Level.THREE,
        "id": uuid.UUID(int=1),
        "at": datetime(2026, 1, 2, 4, 4, 5, 6, tzinfo=timezone(timedelta(hours=1))),
        "ü": "ß",
    }
    assert (
        canonical(entry)
        == (
            '{"a":"ISSUE","at":"2026-01-02T03:04:05.000006Z","b":[1,[2,"x"],{"a":true,"z":null}],'
            '"id":"00000000-0000-0000-0000-000000000001","n":3,"ü":"ß"}'
        ).encode()
    )
    with pytest.raises(TypeError, match="floats"):
        canonical({"x": 1.5})
