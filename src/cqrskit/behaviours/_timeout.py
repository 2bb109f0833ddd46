"""`Timeout`: cancel a dispatch that runs past its deadline and answer TIMEOUT."""

from __future__ import annotations

import asyncio
import math
from _thread import get_ident
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._errors import DETAIL, ConfigurationError
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
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

    On expiry the handler is cancelled for real: it sees `asyncio.CancelledError` at its current
    ``await``, its transaction rolls back, and the dispatch returns a TIMEOUT Result. A `TimeoutError`
    the handler raises itself is not a TIMEOUT (it travels up like any exception), and a cancellation
    of the whole dispatch from outside propagates as `CancelledError`.

    Deadlines are kept in one queue per duration and event loop, served by a single loop timer, which
    costs a fraction of an `asyncio.timeout` per dispatch and behaves the same way.
    """

    stage = Stage.TIMEOUT

    def __init__(
        self, default: float | None = None, per_message: Mapping[type[Any], float | None] = _NO_OVERRIDES
    ) -> None:
        self._default = _seconds(default, "default")
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

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return the deadline for `message_type`, in seconds."""
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
