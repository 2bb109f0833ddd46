"""`EventPublisher`, what handlers publish through, and `InProcessPublisher`, which delivers in-process."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._messages import Command
from cqrskit._pipeline import require_kind
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit.events._event import Event
from cqrskit.scope import defer_until_commit

if TYPE_CHECKING:
    from cqrskit.events._bus import EventBus

__all__ = ["CURRENT_CONTEXT", "EventPublisher", "InProcessPublisher"]


class EventPublisher(Protocol):
    """What a handler publishes domain events through: ``await publisher.publish(event)``.

    Inject one into your handlers from the container. Nothing a publisher is given inside a
    `Transaction` leaves the process before that transaction commits.
    """

    async def publish(self, event: Event, context: Context | None = None) -> None:
        """Publish `event`; `context` is only needed when the publisher is not also a behaviour."""
        ...


CURRENT_CONTEXT: ContextVar[Context | None] = ContextVar("cqrskit_events_context", default=None)
"""The context of the command a publisher behaviour wraps in this task (set by both publishers)."""


class InProcessPublisher:
    """Delivers published events to an `EventBus` in this process, once the command's work is durable.

    Use the same object twice in the container: injected into handlers as their `EventPublisher`,
    and listed as a command-bus behaviour at `Stage.PUBLISHING`: inside `Retry` and `Transaction`, before
    `Idempotency`. As a behaviour it collects what the handler publishes; when the command
    succeeds, it hands the events to the open transaction to deliver after the outermost COMMIT
    (before ``execute`` returns, outside the committed session), or, with no transaction open,
    delivers them as soon as the handler has returned. An attempt that fails or rolls back,
    including one `Retry` discards, delivers nothing. Subscribers see ``context.child()`` of the
    command's context. A subscriber's failure is logged and never changes the command's Result.
    """

    stage = Stage.PUBLISHING

    def __init__(self, event_bus: EventBus) -> None:
        self._event_bus = event_bus
        # One variable per publisher: another publisher behaviour in the same chain has its own.
        self._pending: ContextVar[list[Event] | None] = ContextVar(
            f"cqrskit_in_process_{id(self):x}", default=None
        )

    def bind(self, message_type: type) -> InProcessPublisher:
        """Stay in every command's pipeline; on any bus but a command bus, raise `ConfigurationError`."""
        require_kind(self, message_type, Command)
        return self

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Collect the events the rest of the pipeline publishes; deliver them when it succeeds."""
        pending: list[Event] = []
        token = self._pending.set(pending)
        context_token = CURRENT_CONTEXT.set(context)
        try:
            result = await call_next(message, context)
        finally:
            CURRENT_CONTEXT.reset(context_token)
            self._pending.reset(token)
        if result.is_success and pending:
            await self._deliver_later(tuple(pending), context.child())
        return result

    async def publish(self, event: Event, context: Context | None = None) -> None:
        """Publish `event`: queued for the command being handled, or delivered after commit.

        Called outside a dispatch this publisher wraps (it is not wired as a behaviour), the event
        goes out after the open transaction commits, or at once when none is open.
        """
        pending = self._pending.get()
        if pending is not None:
            pending.append(event)
            return
        await self._deliver_later((event,), context.child() if context is not None else Context())

    async def _deliver_later(self, events: tuple[Event, ...], context: Context) -> None:
        deliver = _delivery(self._event_bus, events, context)
        if not defer_until_commit(deliver):
            await deliver()

    def __repr__(self) -> str:
        return f"InProcessPublisher({self._event_bus!r})"


def _delivery(event_bus: EventBus, events: tuple[Event, ...], context: Context) -> Callable[[], Any]:
    async def deliver() -> None:
        for event in events:
            await event_bus.publish(event, context)

    return deliver
