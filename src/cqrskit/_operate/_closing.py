"""Closing what a process opened: transports, databases, every closable singleton it built, resources."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from dependency_injector import containers, providers

from cqrskit._loggable import loggable_exception
from cqrskit.events._consumer import Consumer
from cqrskit.events._relay import OutboxRelay


async def close_components(
    consumers: Sequence[Consumer], relays: Sequence[OutboxRelay], log: Any
) -> set[int]:
    """Close each transport and dispose of each database once; return the ids of what was closed."""
    closed: set[int] = set()
    components: list[Consumer | OutboxRelay] = [*consumers, *relays]
    for component in components:
        for resource, method in ((component.transport, "close"), (component.database, "dispose")):
            if id(resource) in closed or not hasattr(resource, method):
                continue
            closed.add(id(resource))
            try:
                await getattr(resource, method)()
            except Exception as exc:  # noqa: BLE001 - logged; the process goes on
                log.warning("close_failed", resource=repr(resource), **loggable_exception(exc))
    return closed


def track_singletons(container: containers.Container) -> list[object]:
    """Make every singleton provider of `container` note what it builds; return that list, in order.

    Call it before anything is built. dependency-injector offers no public way to ask a singleton
    provider whether it has built its object without building it, so each provider's factory is
    wrapped (through the public `set_provides`) to append the object it returns; the provider still
    keeps and shares it as before. `close_opened` then closes exactly what this process built.
    """
    built: list[object] = []
    for provider in container.traverse(types=[providers.BaseSingleton]):
        factory = provider.provides
        if factory is not None:
            provider.set_provides(functools.partial(_noted, factory, built))
    return built


def _noted(factory: Callable[..., Any], built: list[object], *args: Any, **kwargs: Any) -> Any:
    made = factory(*args, **kwargs)
    if inspect.isawaitable(made):  # an async factory: note the object it gives, not the coroutine

        async def noted() -> Any:
            result = await made
            built.append(result)
            return result

        return noted()
    built.append(made)
    return made


_CLOSERS = ("aclose", "close", "dispose")
"""The coroutine methods that close a singleton, in the order they are looked for."""


async def close_opened(
    container: containers.Container, built: Sequence[object], closed: set[int], log: Any
) -> None:
    """Close what the process built and has not closed yet, last built first; then the resources.

    A singleton is closed when it has a coroutine method ``aclose``, ``close`` or ``dispose`` (a
    cache backend such as a Redis cache and its connection pool, a `Database`'s engine, a transport,
    an HTTP client); those in `closed` were closed already. Then the container's
    `providers.Resource` providers that were initialised are shut down (``shutdown_resources()``),
    for what the container itself says how to close. A failure is logged and the rest still closed.
    """
    for made in reversed(built):
        if id(made) in closed:
            continue
        method = next(
            (m for name in _CLOSERS if inspect.iscoroutinefunction(m := getattr(made, name, None))), None
        )
        if method is None:
            continue
        closed.add(id(made))
        try:
            await method()
        except Exception as exc:  # noqa: BLE001 - logged; the process goes on
            log.warning("close_failed", resource=type(made).__qualname__, **loggable_exception(exc))
    try:
        shutting_down = container.shutdown_resources()
        if inspect.isawaitable(shutting_down):
            await shutting_down
    except Exception as exc:  # noqa: BLE001 - logged; the process goes on
        log.warning("close_failed", resource="resources", **loggable_exception(exc))
