"""`EventBus`: each event type maps to its subscribers, each behind a pipeline composed once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import structlog

from cqrskit import _operation_ids
from cqrskit._context import Context, dispatch_context
from cqrskit._errors import ConfigurationError, HandlerNotFoundError
from cqrskit._names import qualified_name
from cqrskit._outcome import result_from_exception, was_logged
from cqrskit._pipeline import (
    Pipeline,
    call_target,
    check_behaviours,
    compose,
    handler_step,
    selected_behaviours,
)
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


class _Subscription:
    __slots__ = ("name", "pipeline")

    def __init__(self, name: str, pipeline: Pipeline) -> None:
        self.name = name
        self.pipeline = pipeline


class EventBus:
    """Delivers an event to every subscriber of its type, each through the behaviours given.

    `handlers` maps each `Event` subclass to its subscribers: a sequence of handlers (``async def
    handle(self, event, context)``, or zero-argument factories returning one), named after their
    class, or a mapping of name to handler when you want to choose the names. A name is how the
    `Consumer`'s inbox remembers that a subscriber has handled a message, so keep it stable.
    Behaviours are listed outermost first; one pipeline per (event type, subscriber) is composed
    here, once.
    """

    __slots__ = ("_behaviours", "_by_name", "_chains", "_logger", "_routes", "_subscriptions")

    def __init__(
        self,
        handlers: Mapping[type, Sequence[object] | Mapping[str, object]],
        behaviours: Iterable[object] = (),
        *,
        logger: Any = None,
    ) -> None:
        if not isinstance(handlers, Mapping):
            raise ConfigurationError(
                f"handlers must map event types to sequences of subscribers, got {type(handlers).__name__}"
            )
        behaviour_list = tuple(behaviours)
        check_behaviours(behaviour_list, Event)
        targets = {id(b): call_target(b) for b in behaviour_list}
        subscriptions: dict[type, tuple[_Subscription, ...]] = {}
        chains: dict[type, tuple[object, ...]] = {}
        routes: dict[type, Mapping[str, object]] = {}
        for event_type, subscribers in handlers.items():
            if not (isinstance(event_type, type) and issubclass(event_type, Event)):  # type: ignore[redundant-expr]  # checked for callers without a type checker
                raise ConfigurationError(
                    f"EventBus routes Event subclasses only; {qualified_name(event_type)} is not one"
                )
            named = self._named(event_type, subscribers)
            chain = selected_behaviours(behaviour_list, event_type)
            subscriptions[event_type] = tuple(
                _Subscription(name, compose(handler_step(event_type, value), chain, targets, event_type))
                for name, value in named.items()
            )
            chains[event_type] = chain
            routes[event_type] = MappingProxyType(named)
        self._subscriptions = subscriptions
        self._by_name = {(t, s.name): s for t, subs in subscriptions.items() for s in subs}
        self._chains: Mapping[type, tuple[object, ...]] = MappingProxyType(chains)
        self._routes: Mapping[type, Mapping[str, object]] = MappingProxyType(routes)
        self._behaviours = behaviour_list
        self._logger = logger if logger is not None else structlog.get_logger("cqrskit")

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
        return self._behaviours

    def behaviours_for(self, event_type: type) -> tuple[object, ...]:
        """Return the behaviours in `event_type`'s pipelines, outermost first."""
        try:
            return self._chains[event_type]
        except KeyError:
            raise HandlerNotFoundError(event_type) from None

    def subscribers(self, event_type: type) -> tuple[str, ...]:
        """Return the names of `event_type`'s subscribers, in the order they run (maybe none)."""
        return tuple(s.name for s in self._subscriptions.get(event_type, ()))

    async def publish(self, event: Event, context: Context | None = None) -> tuple[Result[Any], ...]:
        """Run every subscriber of ``type(event)``, one after the other; return one Result each.

        Each subscriber is a dispatch of its own, with its own operation id. A subscriber that fails
        gets a failed Result (an unexpected exception is logged with its traceback) and the others
        still run. An event type nobody subscribes to gives an empty tuple.
        """
        subscriptions = self._subscriptions.get(type(event))
        if not subscriptions:
            return ()
        return tuple([await self._run(s, event, context) for s in subscriptions])

    async def deliver(self, event: Event, subscriber: str, context: Context | None = None) -> Result[Any]:
        """Run one subscriber, by name, and return its Result (the `Consumer` calls this)."""
        subscription = self._by_name.get((type(event), subscriber))
        if subscription is None:
            raise HandlerNotFoundError(type(event))
        return await self._run(subscription, event, context)

    async def _run(self, subscription: _Subscription, event: Event, context: Context | None) -> Result[Any]:
        operation_id = _operation_ids.new_operation_id()
        context = dispatch_context(context, operation_id)
        try:
            result = await subscription.pipeline(event, context)
        except (HandlerNotFoundError, ConfigurationError):
            raise
        except Exception as exc:  # noqa: BLE001 - one subscriber's failure never stops the others
            return result_from_exception(
                exc, event, context, log=not was_logged(exc, operation_id), logger=self._logger
            )
        if result.is_failure:
            self._logger.warning(
                "subscriber_failed",
                event_type=type(event).__qualname__,
                subscriber=subscription.name,
                status=str(result.status),
                operation_id=operation_id,
                correlation_id=context.correlation_id,
            )
        if result._operation_id is None:  # a behaviour's own Result: the bus fills the id in
            result = result.evolve(operation_id=operation_id)
        return result

    def __repr__(self) -> str:
        count = sum(len(s) for s in self._subscriptions.values())
        return (
            f"EventBus({len(self._subscriptions)} event types, {count} subscribers, "
            f"{len(self._behaviours)} behaviours)"
        )
