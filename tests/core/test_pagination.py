"""Page sizes and page tokens: defaults, clamps, and every way a token can be bad."""

from __future__ import annotations

import pytest

from server.core.errors import InvalidArgument
from server.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageTokens, page_size


@pytest.mark.parametrize(
    ("requested", "expected"),
    [(0, DEFAULT_PAGE_SIZE), (1, 1), (MAX_PAGE_SIZE, MAX_PAGE_SIZE), (10_000, MAX_PAGE_SIZE)],
)
def test_page_size_defaults_and_clamps(requested: int, expected: int) -> None:
    assert page_size(requested) == expected


def test_negative_page_size_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as err:
        page_size(-1)
    assert err.value.violations[0].field == "page_size"


def test_a_token_round_trips_under_its_own_filters() -> None:
    tokens = PageTokens("secret")
    token = tokens.encode([42, "2026-01-01"], {"types": ["ISSUE"]})
    assert tokens.decode(token, {"types": ["ISSUE"]}) == [42, "2026-01-01"]
    assert tokens.decode("", {"types": ["ISSUE"]}) is None


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-token",
        PageTokens("secret").encode([1])[:-4] + "AAAA",  # tampered
        PageTokens("another secret").encode([1]),  # forged with another key
    ],
)
def test_bad_tokens_are_invalid_argument(bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        PageTokens("secret").decode(bad)
    assert err.value.violations[0].field == "page_token"


def test_a_token_is_bound_to_its_filters() -> None:
    tokens = PageTokens("secret")
    token = tokens.encode([7], {"user": "a"})
    with pytest.raises(InvalidArgument, match="different filters"):
        tokens.decode(token, {"user": "b"})


@pytest.mark.parametrize(("rows", "kept", "more"), [(0, 0, False), (3, 3, False), (4, 3, True)])
def test_a_page_keeps_size_rows_and_keys_the_next_on_the_last(
    rows: int, kept: int, more: bool
) -> None:
    tokens = PageTokens("secret")
    page = tokens.page(list(range(rows)), 3, {"f": 1}, lambda n: [n * 10])
    assert page.items == list(range(kept))
    assert bool(page.next_page_token) is more
    if more:
        assert tokens.decode(page.next_page_token, {"f": 1}) == [20]
