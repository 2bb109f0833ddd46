"""`EventBus`: each event type maps to its subscribers, each behind a pipeline composed once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from cqrskit._bus import BusCore
from cqrskit._context import Context
from cqrskit._contracts import BuildWatch
from cqrskit._errors import ConfigurationError, HandlerNotFoundError
from cqrskit._logs import library_logger
from cqrskit._names import qualified_name
from cqrskit._results import Result
from cqrskit.events._event import Event

__all__ = ["EventBus"]


def _subscriber_name(value: object) -> str:
    """Return a stable name for an unnamed subscriber: its class, or the class its factory makes."""
    target = value
    for _ in range(3):  # a provider, or the delegate ``.provider`` gives: name what it provides
        provides = getattr(target, "provides", None)
        if provides is None:
            break
        target = provides
    if not isinstance(target, type):
        target = target if callable(target) and not hasattr(target, "handle") else type(target)
    return qualified_name(target)


class EventBus:
    """Delivers an event to every subscriber of its type, each through the behaviours given.

    `handlers` maps each `Event` subclass to its subscribers: a sequence of handlers (``async def
    handle(self, event, context)``, or zero-argument factories returning one), named after their
    class, or a mapping of name to handler when you want to choose the names. A name is how the
    `Consumer`'s inbox remembers that a subscriber has handled a message, so keep it stable.
    Behaviours are listed outermost first; one pipeline per (event type, subscriber) is composed
    here, once, by the core every bus shares. `watch` is the `CommandBus`'s: a `BuildWatch` checked
    before every delivery.
    """

    __slots__ = ("_chains", "_core", "_logger", "_routes", "_subscribers")

    def __init__(
        self,
        handlers: Mapping[type, Sequence[object] | Mapping[str, object]],
        behaviours: Iterable[object] = (),
        *,
        logger: Any = None,
        watch: BuildWatch | None = None,
    ) -> None:
        if not isinstance(handlers, Mapping):
            raise ConfigurationError(
                f"handlers must map event types to sequences of subscribers, got {type(handlers).__name__}"
            )
        self._core = core = BusCore(behaviours, "EventBus", logger, watch)
        subscribers: dict[type, tuple[str, ...]] = {}
        chains: dict[type, tuple[object, ...]] = {}
        routes: dict[type, Mapping[str, object]] = {}
        for event_type, given in handlers.items():
            if not (isinstance(event_type, type) and issubclass(event_type, Event)):  # type: ignore[redundant-expr]  # checked for callers without a type checker
                raise ConfigurationError(
                    f"EventBus routes Event subclasses only; {qualified_name(event_type)} is not one"
                )
            named = self._named(event_type, given)
            bound = core.bind(event_type)
            for name, value in named.items():
                core.add_route((event_type, name), event_type, value, bound)
            subscribers[event_type] = tuple(named)
            chains[event_type] = tuple(behaviour for behaviour, _ in bound)
            routes[event_type] = MappingProxyType(named)
        self._subscribers = subscribers
        self._chains: Mapping[type, tuple[object, ...]] = MappingProxyType(chains)
        self._routes: Mapping[type, Mapping[str, object]] = MappingProxyType(routes)
        self._logger = logger if logger is not None else library_logger("cqrskit")

    @staticmethod
    def _named(event_type: type, subscribers: object) -> dict[str, object]:
        if isinstance(subscribers, Mapping):
            return {str(name): value for name, value in subscribers.items()}
        if isinstance(subscribers, (str, bytes)) or not isinstance(subscribers, Iterable):
            raise ConfigurationError(
                f"the subscribers of {qualified_name(event_type)} must be a sequence of handlers or a "
                f"mapping of name to handler, got {subscribers!r}"
            )
        named: dict[str, object] = {}
        for value in subscribers:
            base = _subscriber_name(value)
            name, n = base, 1
            while name in named:
                n += 1
                name = f"{base}#{n}"
            named[name] = value
        return named

    @property
    def routes(self) -> Mapping[type, Mapping[str, object]]:
        """A read-only view: event type to its subscribers by name."""
        return self._routes

    @property
    def behaviours(self) -> tuple[object, ...]:
        """Every behaviour the bus was built with, outermost first."""
        return self._core.behaviours

    def behaviours_for(self, event_type: type) -> tuple[object, ...]:
        """Return the behaviours in `event_type`'s pipelines, outermost first."""
        try:
            return self._chains[event_type]
        except KeyError:
            raise HandlerNotFoundError(event_type) from None

    def subscribers(self, event_type: type) -> tuple[str, ...]:
        """Return the names of `event_type`'s subscribers, in the order they run (maybe none)."""
        return self._subscribers.get(event_type, ())

    async def publish(self, event: Event, context: Context | None = None) -> tuple[Result[Any], ...]:
        """Run every subscriber of ``type(event)``, one after the other; return one Result each.

        Each subscriber is a dispatch of its own, with its own operation id. A subscriber that fails
        gets a failed Result (an unexpected exception is logged with its traceback) and the others
        still run. An event type nobody subscribes to gives an empty tuple.
        """
        names = self._subscribers.get(type(event))
        if not names:
            return ()
        return tuple([await self._run(name, event, context) for name in names])

    async def deliver(self, event: Event, subscriber: str, context: Context | None = None) -> Result[Any]:
        """Run one subscriber, by name, and return its Result (the `Consumer` calls this)."""
        return await self._run(subscriber, event, context)

    async def _run(self, subscriber: str, event: Event, context: Context | None) -> Result[Any]:
        result = await self._core.dispatch(event, context, (type(event), subscriber))
        if result.is_failure:
            tenant = context.tenant if context is not None else None
            self._logger.warning(
                "subscriber_failed",
                event_type=type(event).__qualname__,
                subscriber=subscriber,
                status=str(result.status),
                operation_id=result.operation_id,
                correlation_id=(context.correlation_id if context is not None else None)
                or result.operation_id,
                **({} if tenant is None else {"tenant": tenant}),
            )
        return result

    def __repr__(self) -> str:
        count = sum(len(names) for names in self._subscribers.values())
        return (
            f"EventBus({len(self._subscribers)} event types, {count} subscribers, "
            f"{len(self._core.behaviours)} behaviours)"
        )
