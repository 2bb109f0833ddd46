"""Streaming queries: `Stream`, the handler's end of a stream pipeline, and watching a stream end.

A streaming query's pipeline has the shape of any other: each step returns a `Result`. On success its
data is a `Stream`, and a behaviour that must see the items (count them, time them, bound the wait
for each) returns a Result carrying a new `Stream` wrapped around the one it got. Streams are pulled:
nothing runs in the handler until a consumer asks for the next item, and closing the outermost
stream closes every one inside it, down to the handler's generator (its ``finally`` blocks and
``async with`` exits run then, which is how a database session and its cursor are released).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from cqrskit._context import Context
from cqrskit._errors import ConfigurationError
from cqrskit._names import qualified_name
from cqrskit._results import Result, handler_result

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

__all__ = [
    "CANCELLED",
    "CLOSED",
    "COMPLETED",
    "FAILED",
    "Stream",
    "StreamEnd",
    "stream_handler_step",
    "watch",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
K = TypeVar("K")

COMPLETED: Final = "completed"
"""The handler yielded its last item."""
CLOSED: Final = "closed"
"""The consumer stopped before the last item (closed the stream, or the client went away)."""
FAILED: Final = "failed"
"""An exception ended the stream after its first item."""
CANCELLED: Final = "cancelled"
"""The task reading the stream was cancelled."""


class Stream(Generic[T_co]):
    """The items of a streaming query, pulled one at a time: an async iterator you close when done.

    ``await query_bus.stream(query, context)`` gives a `Result` whose data is a Stream. Read it with
    ``async with`` so that stopping early releases what the handler holds (its database session and
    cursor)::

        result = await bus.stream(ExportUsers(), context)
        async with result.unwrap() as users:
            async for user in users:
                ...

    The handler produces an item only when you ask for it. A failure after the first item raises
    `ResultError` from the iteration, carrying the failed `Result` (its status and safe errors).
    """

    __slots__ = ("_items",)

    def __init__(self, items: AsyncIterator[T_co]) -> None:
        self._items = items

    def __aiter__(self) -> Self:
        return self

    def __anext__(self) -> Awaitable[T_co]:
        # Returns the inner awaitable instead of awaiting it: one coroutine less per item and layer.
        return self._items.__anext__()

    async def aclose(self) -> None:
        """Stop the stream: the handler's generator is closed and releases what it holds."""
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Stream({self._items!r})"


StreamEnd = Callable[[str, int, "BaseException | None"], None]
"""Called once when a watched stream ends: how it ended, how many items it gave, the exception if any."""


def watch(
    stream: Stream[T],
    on_end: StreamEnd,
    enter: Callable[[], K] | None = None,
    leave: Callable[[K], None] | None = None,
) -> Stream[T]:
    """Return `stream` wrapped so that `on_end` learns how it ended, and the item count.

    The ending is one of `COMPLETED`, `CLOSED`, `FAILED`, `CANCELLED`. `enter` and `leave` run around
    the wait for each item (to make a span current, say); `leave` gets what `enter` returned.
    """
    return Stream(_watched(stream, on_end, enter, leave))


async def _watched(
    stream: Stream[T],
    on_end: StreamEnd,
    enter: Callable[[], K] | None,
    leave: Callable[[K], None] | None,
) -> AsyncIterator[T]:
    count = 0
    ending: str = CLOSED  # what GeneratorExit (the consumer closing early) leaves it at
    error: BaseException | None = None
    try:
        while True:
            if enter is None or leave is None:
                try:
                    item = await stream.__anext__()
                except StopAsyncIteration:
                    ending = COMPLETED
                    return
            else:
                token = enter()
                try:
                    item = await stream.__anext__()
                except StopAsyncIteration:
                    ending = COMPLETED
                    return
                finally:
                    leave(token)
            count += 1
            yield item
    except Exception as exc:
        ending, error = FAILED, exc
        raise
    except asyncio.CancelledError:
        ending = CANCELLED
        raise
    finally:
        try:
            await stream.aclose()
        finally:
            on_end(ending, count, error)


async def _primed(first: T, items: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        yield first
        while True:
            try:
                item = await items.__anext__()
            except StopAsyncIteration:
                return
            yield item
    finally:
        await _close(items)


async def _nothing() -> AsyncIterator[Any]:
    return
    yield  # an async generator with no items


async def _close(items: object) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()


def _stream_handle(value: object) -> Callable[[Any, Context], Any] | None:
    handle: Callable[[Any, Context], Any] | None = getattr(value, "handle", None)
    if isinstance(value, type) or not callable(handle):
        return None
    return handle


def stream_handler_step(
    message_type: type, value: object
) -> Callable[[Any, Context], Awaitable[Result[Any]]]:
    """Return the innermost step of a streaming query's pipeline, for a handler object or factory.

    It starts the handler and waits for its first item, so that a failure before the first item
    (not found, refused, the database down) becomes the dispatch's Result like any other; the
    Result's data is then a `Stream` giving that item and the rest.
    """
    handle = _stream_handle(value)
    factory: Callable[[], Any] | None = None
    if handle is None:
        if not callable(value) or isinstance(value, type):
            raise ConfigurationError(
                f"the handler for {qualified_name(message_type)} is {value!r}: give an object whose "
                "'handle(self, query, context)' is an async generator, or a zero-argument callable "
                "returning one"
            )
        factory = value

    async def call_stream_handler(message: Any, context: Context) -> Result[Any]:
        if factory is None:
            items: Any = handle(message, context)  # type: ignore[misc]  # handle is set here
        else:
            made = factory()
            made_handle = _stream_handle(made)
            if made_handle is None:
                raise ConfigurationError(
                    f"the handler factory for {qualified_name(message_type)} returned {made!r}, "
                    "which has no 'handle' method"
                )
            items = made_handle(message, context)
        if inspect.isawaitable(items):  # an ``async def handle`` that returns an async iterator
            items = await items
        if not hasattr(items, "__anext__"):
            raise ConfigurationError(
                f"the handler of {qualified_name(message_type)} returned {type(items).__name__}; "
                "a streaming query's handler yields its items (an async generator)"
            )
        try:
            first = await items.__anext__()
        except StopAsyncIteration:
            return handler_result(Stream(_nothing()), context.operation_id)
        except BaseException:
            await _close(items)
            raise
        return handler_result(Stream(_primed(first, items)), context.operation_id)

    return call_stream_handler
