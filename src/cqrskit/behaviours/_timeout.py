"""`Timeout`: cancel a dispatch that runs past its deadline and answer TIMEOUT."""

from __future__ import annotations

import asyncio
import math
from _thread import get_ident
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any

from cqrskit._context import Context
from cqrskit._contracts import CallNext, Step
from cqrskit._errors import DETAIL, ConfigurationError
from cqrskit._results import Result, ResultError
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
from cqrskit._streams import Stream
from cqrskit.behaviours._deadlines import DeadlineQueue

__all__ = ["Timeout"]

_NO_OVERRIDES: Mapping[type, float | None] = MappingProxyType({})
_TIMEOUT = OperationStatus.TIMEOUT
_current_task = asyncio.current_task


def _seconds(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ConfigurationError(
            f"Timeout {where} must be a positive number of seconds or None, got {value!r}"
        )
    return float(value)


class Timeout:
    """Cancels the rest of the pipeline when it runs longer than its deadline, and returns TIMEOUT.

    Its place is `Stage.TIMEOUT`: inside Logging, Metrics and Audit (so they record the TIMEOUT) and
    outside Retry, so one deadline covers every attempt Retry makes. `default`
    is the deadline in seconds for every message type, `per_message` overrides it per type (None there
    means no deadline for that type); a type with no deadline leaves Timeout out of its pipeline::

        Timeout(default=10, per_message={ExportReport: 120, Ping: None})

    For a `StreamQuery` the deadline bounds the whole stream, from the opening to the last item
    (the consumer's time between items counts), and `per_item` (a mapping of stream query type to
    seconds) bounds the wait for each item, the first included; either or both may be set::

        Timeout(per_message={ExportUsers: 600}, per_item={ExportUsers: 5})

    A stream that runs out of time before its first item answers TIMEOUT; after it, the stream ends
    by raising `ResultError` carrying a TIMEOUT Result.

    On expiry the handler is cancelled for real: it sees `asyncio.CancelledError` at its current
    ``await``, its transaction rolls back, and the dispatch returns a TIMEOUT Result. A `TimeoutError`
    the handler raises itself is not a TIMEOUT (it travels up like any exception), and a cancellation
    of the whole dispatch from outside propagates as `CancelledError`.

    Deadlines are kept in one queue per duration and event loop, served by a single loop timer, which
    costs a fraction of an `asyncio.timeout` per dispatch and behaves the same way.
    """

    stage = Stage.TIMEOUT

    def __init__(
        self,
        default: float | None = None,
        per_message: Mapping[type[Any], float | None] = _NO_OVERRIDES,
        *,
        per_item: Mapping[type[Any], float | None] = _NO_OVERRIDES,
    ) -> None:
        self._default = _seconds(default, "default")
        self._per_item: Mapping[type, float | None] = MappingProxyType(
            {t: _seconds(v, f"per_item for {getattr(t, '__qualname__', t)}") for t, v in per_item.items()}
        )
        overrides: dict[type, float | None] = {}
        for message_type, seconds in per_message.items():
            if not isinstance(message_type, type):
                raise ConfigurationError(
                    f"Timeout's per_message keys are message types, got {message_type!r}"
                )
            overrides[message_type] = _seconds(seconds, f"for {message_type.__qualname__}")
        self._per_message: Mapping[type, float | None] = MappingProxyType(overrides)
        self._queues: dict[type, DeadlineQueue] = {}
        self._shared: dict[float, DeadlineQueue] = {}
        self._errors: dict[float, Mapping[str, str]] = {}

    @property
    def configured_types(self) -> frozenset[type]:
        """The message types with a setting of their own here (the route inspector checks they are routed)."""
        return frozenset(self._per_message)

    def seconds_for(self, message_type: type) -> float | None:
        """Return the deadline in seconds for `message_type`, or None when it has none."""
        return self._per_message.get(message_type, self._default)

    def bind(self, message_type: type) -> Timeout | None:
        """Leave the pipeline of a type with no deadline (None); stay in the others."""
        return None if self.seconds_for(message_type) is None else self

    def bind_stream(self, message_type: type) -> Step | None:
        """For a streaming query: bound the whole stream, the wait for each item, or both (None: stay out)."""
        total = self.seconds_for(message_type)
        per_item = self._per_item.get(message_type)
        if total is None and per_item is None:
            return None
        limit = min(s for s in (total, per_item) if s is not None)
        errors: Mapping[str, str] = MappingProxyType(
            {DETAIL: f"the stream did not finish within {total:g} seconds"}
            if per_item is None
            else {DETAIL: f"the stream gave no item within {limit:g} seconds"}
        )

        async def bounded(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
            loop = asyncio.get_running_loop()
            deadline = None if total is None else loop.time() + total
            try:
                async with asyncio.timeout(limit) as opening:
                    result = await call_next(message, context)
            except TimeoutError:
                if opening.expired():
                    return Result.failure(_TIMEOUT, errors)
                raise
            if result.is_failure:
                return result
            stream: Stream[Any] = result.data
            return result.success(Stream(_bounded(stream, deadline, per_item, errors)))

        return bounded

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return the deadline for `message_type`, in seconds (and the wait per item of a stream)."""
        per_item = self._per_item.get(message_type)
        if per_item is not None:
            return {"seconds": self.seconds_for(message_type), "per_item": per_item}
        return {"seconds": self.seconds_for(message_type)}

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the rest of the pipeline under the deadline of the message's type."""
        queue = self._queues.get(type(message))
        if queue is None or get_ident() != queue.thread or (task := _current_task(queue.loop)) is None:
            queue, task = self._queue_for(type(message))
            if queue is None or task is None:
                return await call_next(message, context)
        entry = queue.start(task)
        try:
            result = await call_next(message, context)
        except BaseException as exc:
            # Ours was one of the cancellations: a timeout only when the cancellation came back out (a
            # handler may turn it into another error, which then travels up).
            if queue.stop(entry) and isinstance(exc, asyncio.CancelledError):
                return Result.failure(_TIMEOUT, self._errors[queue.seconds])
            raise
        queue.stop(entry)
        return result

    def _queue_for(self, message_type: type) -> tuple[DeadlineQueue | None, asyncio.Task[Any] | None]:
        """Find the running task and the deadline queue for `message_type` on its loop (the slow path).

        It runs once per message type and event loop: afterwards the queue remembers both.
        """
        seconds = self.seconds_for(message_type)
        if seconds is None:
            return None, None
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Timeout must run inside an asyncio task")
        queue = self._shared.get(seconds)
        if queue is None or queue.loop is not loop or queue.thread != get_ident():
            queue = DeadlineQueue(loop, seconds)
            self._shared[seconds] = queue
            self._errors[seconds] = {DETAIL: f"the operation did not finish within {seconds:g} seconds"}
        self._queues[message_type] = queue
        return queue, task

    def __repr__(self) -> str:
        overrides = ", ".join(f"{t.__qualname__}: {s!r}" for t, s in self._per_message.items())
        return f"Timeout(default={self._default!r}, per_message={{{overrides}}})"


async def _bounded(
    stream: Stream[Any], deadline: float | None, per_item: float | None, errors: Mapping[str, str]
) -> AsyncIterator[Any]:
    """Give `stream`'s items, each within `per_item` seconds and all before `deadline` (loop time)."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            when = deadline
            if per_item is not None:
                item_deadline = loop.time() + per_item
                when = item_deadline if when is None else min(when, item_deadline)
            try:
                async with asyncio.timeout_at(when) as waiting:
                    item = await stream.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                if waiting.expired():
                    raise ResultError(Result.failure(_TIMEOUT, errors)) from None
                raise
            yield item
    finally:
        await stream.aclose()
