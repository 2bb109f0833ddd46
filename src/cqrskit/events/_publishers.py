"""`EventPublisher`, what handlers publish through, and `InProcessPublisher`, which delivers in-process."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

import attrs

from cqrskit.context import Context
from cqrskit.events._event import Event
from cqrskit.messages import Command
from cqrskit.protocols import CallNext
from cqrskit.results import Result
from cqrskit.scope import defer_until_commit

__all__ = ["EventPublisher", "InProcessPublisher", "current_dispatch", "outer_behaviour_types"]


class EventPublisher(Protocol):
    """What a handler publishes domain events through: ``await publisher.publish(event)``.

    Inject one into your handlers from the container. Nothing a publisher is given inside a
    `Transaction` leaves the process before that transaction commits.
    """

    async def publish(self, event: Event, context: Context | None = None) -> None:
        """Publish `event`; `context` is only needed when the publisher is not also a behaviour."""
        ...


@attrs.define
class _Dispatch:
    """The command being handled, as a publisher that is also a behaviour sees it."""

    context: Context
    events: list[Event] = attrs.Factory(list)


_current: ContextVar[_Dispatch | None] = ContextVar("cqrskit_events_dispatch", default=None)


def current_dispatch() -> _Dispatch | None:
    """Return the dispatch a publisher behaviour opened in this task, or None."""
    return _current.get()


def outer_behaviour_types() -> tuple[type, ...]:
    """Behaviour types that must sit outside a publisher: Retry and Transaction, when installed."""
    types: list[type] = []
    # Both live in modules that may be missing (another extra, another part of cqrskit): look them
    # up by name rather than import them at module level.
    for module, name in (("cqrskit.behaviours.retry", "Retry"), ("cqrskit.sqlalchemy", "Transaction")):
        try:
            found = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        types.append(found)
    return tuple(types)


class InProcessPublisher:
    """Delivers published events to an `EventBus` in this process, once the command's work is durable.

    Use the same object twice in the container: injected into handlers as their `EventPublisher`,
    and listed as a command-bus behaviour INSIDE `Retry` and `Transaction` (last, or just before
    `Idempotency`). As a behaviour it collects what the handler publishes; when the command
    succeeds, it hands the events to the open transaction to deliver after the outermost COMMIT
    (before ``execute`` returns, outside the committed session), or, with no transaction open,
    delivers them as soon as the handler has returned. An attempt that fails or rolls back,
    including one `Retry` discards, delivers nothing. Subscribers see ``context.child()`` of the
    command's context. A subscriber's failure is logged and never changes the command's Result.
    """

    message_kinds: tuple[type, ...] = (Command,)

    def __init__(self, event_bus: Any) -> None:
        self._event_bus = event_bus

    @property
    def inside_of(self) -> tuple[type, ...]:
        """Retry and Transaction must sit outside this behaviour."""
        return outer_behaviour_types()

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Collect the events the rest of the pipeline publishes; deliver them when it succeeds."""
        dispatch = _Dispatch(context)
        token = _current.set(dispatch)
        try:
            result = await call_next(message, context)
        finally:
            _current.reset(token)
        if result.is_success and dispatch.events:
            await self._deliver_later(tuple(dispatch.events), context.child())
        return result

    async def publish(self, event: Event, context: Context | None = None) -> None:
        """Publish `event`: queued for the command being handled, or delivered after commit.

        Called outside a dispatch this publisher wraps (it is not wired as a behaviour), the event
        goes out after the open transaction commits, or at once when none is open.
        """
        dispatch = _current.get()
        if dispatch is not None:
            dispatch.events.append(event)
            return
        await self._deliver_later((event,), context.child() if context is not None else Context())

    async def _deliver_later(self, events: tuple[Event, ...], context: Context) -> None:
        deliver = _delivery(self._event_bus, events, context)
        if not defer_until_commit(deliver):
            await deliver()

    def __repr__(self) -> str:
        return f"InProcessPublisher({self._event_bus!r})"


def _delivery(event_bus: Any, events: tuple[Event, ...], context: Context) -> Callable[[], Any]:
    async def deliver() -> None:
        for event in events:
            await event_bus.publish(event, context)

    return deliver
