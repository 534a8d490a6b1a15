"""Every request, before its servicer sees it: bytes that do not decode as the method's
message are INVALID_ARGUMENT (grpc would answer UNKNOWN with its own text), and no text field
anywhere in the message may hold a control character (core/validation.py's rule: PostgreSQL
refuses NUL, and the others only confuse logs and UIs).

Field-specific limits (lengths, formats) stay with the use cases; this is the floor every
RPC gets, the ones added later included.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from server.core.errors import InvalidArgument
from server.core.validation import check_characters
from server.interceptors._wrap import Context, Handler


class Undecodable:
    """What the deserializer hands on instead of raising (the behaviour refuses it)."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def error(self) -> InvalidArgument:
        return InvalidArgument(f"the request does not decode as {self.type_name}")


def _safe(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None
    owner = getattr(deserialize, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    undecodable = Undecodable(getattr(descriptor, "full_name", "the method's request message"))

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # DecodeError, or a recursion limit: the bytes are the caller's fault
            return undecodable

    return decode


# Per message type: its string fields and its message fields (map entries apart), so a check
# looks only at what is set and at what can hold text.
_Plan = tuple[frozenset[str], frozenset[str]]
_plans: dict[Any, _Plan] = {}


def _plan(descriptor: Descriptor | Any) -> _Plan:
    plan = _plans.get(descriptor)
    if plan is None:
        strings = frozenset(
            f.name for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING
        )
        messages = frozenset(
            f.name for f in descriptor.fields if f.type == FieldDescriptor.TYPE_MESSAGE
        )
        plan = _plans[descriptor] = (strings, messages)
    return plan


def check_text(message: Message, prefix: str = "") -> None:
    """INVALID_ARGUMENT naming the first text field (path like `profile.bio` or
    `reviewer_ids[2]`) that holds a control character."""
    strings, messages = _plan(message.DESCRIPTOR)
    if not strings and not messages:
        return
    for field, value in message.ListFields():
        name = field.name
        if name in strings:
            if field.is_repeated:
                for i, item in enumerate(value):
                    check_characters(item, f"{prefix}{name}[{i}]")
            else:
                check_characters(value, prefix + name)
        elif name in messages:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    path = f"{prefix}{name}[{key!r}]"
                    if isinstance(key, str):
                        check_characters(key, path)
                    if isinstance(item, Message):
                        check_text(item, path + ".")
                    elif isinstance(item, str):
                        check_characters(item, path)
            elif field.is_repeated:
                for i, item in enumerate(value):
                    check_text(item, f"{prefix}{name}[{i}].")
            else:
                check_text(value, f"{prefix}{name}.")


def _checked(request: Any) -> Any:
    if isinstance(request, Undecodable):
        raise request.error()
    if isinstance(request, Message):
        check_text(request)
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _checked(request)


def _unary_request(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behaviour):

        async def checked_gen(request: Any, context: Context) -> AsyncIterator[Any]:
            async for item in behaviour(_checked(request), context):
                yield item

        return checked_gen

    def checked(request: Any, context: Context) -> Any:
        return behaviour(_checked(request), context)

    return checked


def _stream_request(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behaviour):

        async def checked_gen(requests: Any, context: Context) -> AsyncIterator[Any]:
            async for item in behaviour(_checked_stream(requests), context):
                yield item

        return checked_gen

    def checked(requests: Any, context: Context) -> Any:
        return behaviour(_checked_stream(requests), context)

    return checked


def checked_requests(handler: Handler) -> Handler:
    """The same handler with its requests decoded safely and checked before its behaviour."""
    kwargs: dict[str, Any] = {
        "request_deserializer": _safe(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_unary_request(handler.unary_unary), **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_unary_request(handler.unary_stream), **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_stream_request(handler.stream_unary), **kwargs)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _stream_request(handler.stream_stream), **kwargs
        )
    return handler
