"""Hypothesis strategies for any protobuf message, built from its descriptor.

Most fields of a drawn request look valid (guessed from the field's name and type: request
ids, user ids that exist, e-mails, URLs, recent times, small quantities, real enum values),
so the request gets past the first check and into the use case; some fields are hostile. A
hostile field gets what a careless or malicious caller sends:
empty, huge, NUL and other control characters, right-to-left marks, SQL and format-string
bait, malformed ids, URLs and e-mails, negative and extreme integers, unknown enum numbers,
timestamps at and beyond both ends of their range (and with nanos out of range), long repeated
fields, deep JSON values. Valid-looking ids come from a pool the test fills with ids that
exist on the server, so calls reach past "not found" into the use cases.
"""

from __future__ import annotations

import string
import time
from collections.abc import Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
}
# Timestamp's own range is 0001-01-01 .. 9999-12-31 (seconds -62135596800 .. 253402300799).
TS_MIN, TS_MAX = -62_135_596_800, 253_402_300_799

HOSTILE_TEXT = (
    "",
    " ",
    "   \t ",
    "me",
    "\x00",
    "a\x00b",
    "\x01\x02\x1b[31m",
    "\x7f\x85\x9f",
    "line\nbreak",
    "\u202egnp.exe",
    "\ufeff",
    "🦄" * 40,
    "x" * 129,
    "x" * 5_000,
    "' OR 1=1 --",
    "'; DROP TABLE users; --",
    "%s%n%x{0}{}",
    "../../../../etc/passwd",
    "javascript:alert(1)",
    "http://",
    "https://",
    "https://example.com/" + "a" * 400,
    "ftp://example.com/x",
    "http://[::1",
    "user@example.com",
    "@",
    "a@",
    "@b",
    "not-a-uuid",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "{00000000-0000-0000-0000-000000000000}",
    "NaN",
    "-1",
    "9" * 40,
    "ISSUE",
    "PASSED",
    "S",
)
_PRINTABLE = st.text(alphabet=string.printable, max_size=40)
_UNICODE = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60)


class Pools:
    """Valid-looking values the test learns from the server (ids that exist)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def id_strategy(self) -> st.SearchStrategy[str]:
        return st.one_of(st.uuids().map(str), st.sampled_from(self.ids or ["me"]))


_KEY = st.text(alphabet=string.ascii_letters + string.digits + "-_:.", min_size=1, max_size=24)
_WORDS = st.text(alphabet=string.ascii_letters + " ", min_size=1, max_size=30).map(str.strip)


def plausible_text(field: FieldDescriptor, pools: Pools) -> st.SearchStrategy[str]:
    """What a well-behaved caller would put in this field, guessed from its name."""
    name = field.name
    if name.endswith(("request_id", "event_id", "task_id", "external_id", "key", "slug", "code")):
        return _KEY
    if name.endswith("_id") or name in ("id", "user_id"):
        return pools.id_strategy()
    if "email" in name:
        return _KEY.map(lambda k: f"{k}@example.com")
    if "url" in name:
        return _KEY.map(lambda k: f"https://example.com/{k}")
    if name in ("page_token", "etag"):
        return st.just("")
    return _WORDS


def plausible_scalar(field: FieldDescriptor, pools: Pools) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return plausible_text(field, pools)
    if kind in _INT_RANGES:
        return st.integers(1, 5) if "size" not in field.name else st.integers(0, 50)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        named = [v.number for v in field.enum_type.values if v.number != 0]
        return st.sampled_from(named or [0])
    return scalar(field, pools)


def text(pools: Pools) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE_TEXT),
        pools.id_strategy(),
        _PRINTABLE,
        _UNICODE,
        st.text(
            alphabet=st.characters(exclude_categories=("Cs",)), min_size=1_000, max_size=20_000
        ),
    ).filter(_encodable)


def _encodable(value: str) -> bool:
    # A protobuf string must be valid UTF-8 (the client refuses lone surrogates itself).
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _integer(kind: int) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[kind]
    edges = sorted({low, high, 0, 1, -1 if low < 0 else 0, 5, 100, 10_000, 10_001, high // 2})
    return st.one_of(st.sampled_from(edges), st.integers(low, high), st.integers(-10, 1_000))


def _timestamp(cls: type[Message]) -> st.SearchStrategy[Message]:
    recent = st.integers(-3600, 60).map(lambda d: cls(seconds=int(time.time()) + d))
    seconds = st.one_of(
        st.integers(TS_MIN, TS_MAX),
        st.sampled_from([TS_MIN, TS_MAX, TS_MIN - 1, TS_MAX + 1, 0, -1, INT64[0], INT64[1]]),
        st.integers(1_700_000_000, 1_900_000_000),  # around now
    )
    nanos = st.one_of(
        st.integers(0, 999_999_999), st.sampled_from([-1, 1_000_000_000, INT32[0], INT32[1]])
    )
    hostile = st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)
    return st.one_of(recent, recent, hostile)


def _json(pools: Pools) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False, allow_infinity=False),
        text(pools),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(
                st.one_of(st.sampled_from(HOSTILE_TEXT), _PRINTABLE), children, max_size=5
            ),
        ),
        max_leaves=20,
    )


def _value(cls: type[Message], pools: Pools) -> st.SearchStrategy[Message]:
    def build(data: Any) -> Message:
        message = cls()
        if isinstance(data, dict):
            message.struct_value.update(data)  # type: ignore[attr-defined]
        elif isinstance(data, list):
            message.list_value.extend(data)  # type: ignore[attr-defined]
        elif data is None:
            message.null_value = 0  # type: ignore[attr-defined]
        elif isinstance(data, bool):
            message.bool_value = data  # type: ignore[attr-defined]
        elif isinstance(data, int | float):
            message.number_value = data  # type: ignore[attr-defined]
        else:
            message.string_value = data  # type: ignore[attr-defined]
        return message

    return _json(pools).map(build)


def scalar(field: FieldDescriptor, pools: Pools) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if field.name.endswith("_id") or field.name in ("id", "user_id"):
            return st.one_of(pools.id_strategy(), text(pools))
        return text(pools)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(
            st.binary(max_size=64), st.sampled_from([b"", b"\xff\xfe", b"\x00" * 100, b"%PDF-1.7"])
        )
    if kind in _INT_RANGES:
        return _integer(kind)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.one_of(
            st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64),
            st.sampled_from([0.0, -0.0, 1e308, -1e308]),
        )
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 100), st.sampled_from(INT32))
    raise TypeError(f"no strategy for field type {kind}")


def _mask(cls: type[Message], siblings: Sequence[str]) -> st.SearchStrategy[Message]:
    """Paths of the fields of the resource the mask goes with, or hostile ones."""
    hostile = st.one_of(_PRINTABLE, st.sampled_from(HOSTILE_TEXT))
    named = st.sampled_from(list(siblings)) if siblings else hostile
    return st.lists(st.one_of(named, named, hostile), max_size=6).map(lambda p: cls(paths=p))


def message(
    descriptor: Descriptor, pools: Pools, depth: int = 0, siblings: Sequence[str] = ()
) -> st.SearchStrategy[Message]:
    cls = message_factory.GetMessageClass(descriptor)
    name = descriptor.full_name
    if name == "google.protobuf.Timestamp":
        return _timestamp(cls)
    if name == "google.protobuf.Value":
        return _value(cls, pools)
    if name == "google.protobuf.Struct":
        return st.dictionaries(_PRINTABLE, _json(pools), max_size=5).map(_struct(cls))
    if name == "google.protobuf.FieldMask":
        return _mask(cls, siblings)
    fields = list(descriptor.fields)
    # A FieldMask in this message names the fields of the resource beside it.
    resource_fields = [
        f.name
        for other in fields
        if other.message_type is not None and other.message_type.full_name.startswith("smartstart.")
        for f in other.message_type.fields
    ]

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message_ = cls()
        for field in fields:
            if not draw(st.sampled_from((True, True, True, False))):
                continue
            _set(draw, message_, field, pools, depth, resource_fields)
        return message_

    return build()


def _struct(cls: type[Message]) -> Any:
    def make(data: dict[str, Any]) -> Message:
        message_ = cls()
        message_.update(data)  # type: ignore[attr-defined]
        return message_

    return make


def _element(field: FieldDescriptor, pools: Pools, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return message(field.message_type, pools, depth + 1)
    # Mostly what a careful caller sends, so the call reaches the use case; else hostile.
    return st.one_of(
        plausible_scalar(field, pools), plausible_scalar(field, pools), scalar(field, pools)
    )


def _set(
    draw: st.DrawFn,
    target: Message,
    field: FieldDescriptor,
    pools: Pools,
    depth: int,
    resource_fields: Sequence[str],
) -> None:
    name = field.name
    if field.type == FieldDescriptor.TYPE_MESSAGE and depth >= 3:
        return
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        entries = draw(
            st.dictionaries(
                scalar(key_field, pools), _element(value_field, pools, depth), max_size=4
            )
        )
        container = getattr(target, name)
        for key, value in entries.items():
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                container[key].CopyFrom(value)
            else:
                container[key] = value
        return
    if field.is_repeated:
        size = draw(st.one_of(st.integers(0, 4), st.sampled_from([50, 300])))
        values = draw(st.lists(_element(field, pools, depth), min_size=0, max_size=size))
        if size > 4 and values:  # a long list: repeat what was drawn instead of drawing more
            values = (values * (size // len(values) + 1))[:size]
        container = getattr(target, name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for value in values:
                container.add().CopyFrom(value)
        else:
            container.extend(values)
        return
    if field.message_type is not None and field.message_type.full_name.endswith("FieldMask"):
        value = draw(message(field.message_type, pools, depth + 1, resource_fields))
    else:
        value = draw(_element(field, pools, depth))
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(target, name).CopyFrom(value)
    else:
        setattr(target, name, value)


def raw_bytes() -> st.SearchStrategy[bytes]:
    """Bytes that mostly do not decode as any message: garbage, truncated varints, wrong wire
    types, huge length prefixes."""
    return st.one_of(
        st.binary(min_size=1, max_size=200),
        st.sampled_from(
            [
                b"\xff",
                b"\x0a",  # field 1, length-delimited, no length
                b"\x0a\xff\xff\xff\xff\x0f",  # a 4 GiB length prefix
                b"\x08" + b"\xff" * 11,  # a varint longer than 10 bytes
                b"\x0f\x00",  # wire type 7 does not exist
                b"\x0a\x02\xc3\x28",  # a string field with invalid UTF-8
                b"\x12\x04\x0a\x02\xff\xfe",  # a nested message with invalid UTF-8
            ]
        ),
    )


def methods_of(services: Sequence[Any]) -> list[tuple[str, Any]]:
    """(path, method descriptor) of every method of the given service descriptors."""
    return [
        (f"/{service.full_name}/{method.name}", method)
        for service in services
        for method in service.methods
    ]
