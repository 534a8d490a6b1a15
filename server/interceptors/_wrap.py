"""Run interceptor code around the servicer itself, in the servicer's own task.

grpc.aio calls `intercept_service` while it looks the handler up, before the servicer runs and
in another context: a ContextVar set there never reaches the servicer, and an exception the
servicer raises never passes back through it. So each SmartStart interceptor supplies an
`around(method, context)` async context manager, and `wrap_handler` enters it just before the
servicer's behaviour runs and leaves it after the behaviour finishes (for a streaming response:
after the last message), for all four RPC shapes.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias, TypeVar

import grpc
import grpc.aio

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Around: TypeAlias = Callable[[Context], AbstractAsyncContextManager[None]]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


async def _resolve(result: Any) -> Any:
    # Generated base servicers are plain functions (they raise NotImplementedError); real
    # servicers are coroutines. Accept both.
    if inspect.isawaitable(result):
        return await result
    return result


async def _drain(result: Any, context: Context) -> None:
    """Finish a streaming behaviour that is not an async generator function."""
    result = await _resolve(result)
    if result is None:  # it wrote its messages with context.write()
        return
    if hasattr(result, "__aiter__"):
        async for item in result:
            await context.write(item)
    else:
        for item in result:
            await context.write(item)


def _wrap_unary_response(behaviour: Callable[..., Any], around: Around) -> Callable[..., Any]:
    async def wrapped(request: Any, context: Context) -> Any:
        async with around(context):
            return await _resolve(behaviour(request, context))

    return wrapped


def _wrap_stream_response(behaviour: Callable[..., Any], around: Around) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behaviour):
        # Stay an async generator so grpc.aio keeps streaming the yielded messages itself.
        async def wrapped_gen(request: Any, context: Context) -> AsyncIterator[Any]:
            async with around(context):
                async for item in behaviour(request, context):
                    yield item

        return wrapped_gen

    async def wrapped(request: Any, context: Context) -> None:
        async with around(context):
            await _drain(behaviour(request, context), context)

    return wrapped


def wrap_handler(handler: Handler, around: Around) -> Handler:
    """The same handler (same shape and serializers) with `around` wrapped round its behaviour."""
    kwargs: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(handler.unary_unary, around), **kwargs
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream_response(handler.unary_stream, around), **kwargs
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(handler.stream_unary, around), **kwargs
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream_response(handler.stream_stream, around), **kwargs
        )
    return handler


class AroundInterceptor(abc.ABC):
    """One layer of the chain: its work happens in `around`, inside the servicer's task."""

    @abc.abstractmethod
    def around(self, method: str, context: Context) -> AbstractAsyncContextManager[None]:
        """Enter before the servicer runs, exit after it finished (exceptions pass through)."""


class InterceptorChain(grpc.aio.ServerInterceptor):
    """The AroundInterceptors as ONE grpc interceptor, outermost first.

    grpc.aio runs every registered interceptor's `intercept_service` on every call (an
    await chain to look the handler up); one interceptor that nests the layers' `around`s
    round the behaviour itself costs a fraction of four. The wrapped handler is built once
    per method: the handler grpc finds is the same object call after call.
    """

    def __init__(
        self,
        layers: Sequence[AroundInterceptor],
        *,
        prepare: Callable[[Handler], Handler] | None = None,
    ) -> None:
        self._layers = tuple(layers)
        # Applied to the handler first, so it runs innermost (right round the servicer).
        self._prepare = prepare
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED by itself
            return handler
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._prepare(handler) if self._prepare is not None else handler
        for layer in reversed(self._layers):  # innermost first, so the first layer is outermost
            wrapped = wrap_handler(wrapped, _bind(layer, method))
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _bind(layer: AroundInterceptor, method: str) -> Around:
    def around(context: Context) -> AbstractAsyncContextManager[None]:
        return layer.around(method, context)

    return around


def metadata_value(context: Context, key: str) -> str | None:
    """The first value of an ASCII metadata key (keys arrive lower-case)."""
    for item in context.invocation_metadata() or ():
        k, v = item[0], item[1]
        if k == key:
            return v if isinstance(v, str) else v.decode("ascii", "replace")
    return None
