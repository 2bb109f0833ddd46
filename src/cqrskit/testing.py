"""Fakes and helpers for testing code built on cqrskit.

- `RecordingBehaviour` records what passes through it, so a test can assert the exact order in which
  behaviours ran.
- `InMemoryCache` and `FailingCache` are cache backends for `QueryCache` and `CacheInvalidation`: a
  dict with a clock you control, and a cache that is always down.
- `override_handler` swaps the handler of one message type in a container for the length of a
  ``with`` block, and rebuilds the buses that had been built with the old one.
- `override_providers` overrides providers of a container by name and resets every singleton built
  from them (your buses), so the next bus is built with the overrides: the base of a pytest fixture
  that gives each test fresh buses.
- `watch_overrides` makes a container's buses refuse to run (`StaleOverrideError`) once a provider
  they were built from is overridden, so a plain ``provider.override(...)`` made too late is never
  silently ignored. Under pytest it is applied to every container a fixture gives (the ``cqrskit``
  pytest plugin).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from operator import attrgetter
from typing import Any, Literal, TypeVar

import attrs
from dependency_injector import containers, providers

from cqrskit._bus import BusCore
from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._errors import ConfigurationError, HandlerNotFoundError, StaleOverrideError
from cqrskit._names import qualified_name
from cqrskit._results import Result
from cqrskit.caching._fakes import FailingCache, InMemoryCache
from cqrskit.events._bus import EventBus

__all__ = [
    "FailingCache",
    "InMemoryCache",
    "ProviderWatch",
    "Recorded",
    "RecordingBehaviour",
    "override_handler",
    "override_providers",
    "watch_overrides",
]

ContainerT = TypeVar("ContainerT", bound=containers.Container)


@attrs.frozen
class Recorded:
    """One thing a `RecordingBehaviour` saw: a message on its way in (``"before"``) or out (``"after"``).

    On the way out `result` holds the Result, or `error` the exception that passed through.
    """

    behaviour: str
    phase: Literal["before", "after"]
    message: Any
    context: Context
    result: Result[Any] | None = None
    error: BaseException | None = None


class RecordingBehaviour:
    """A pass-through behaviour that records every message before and after the rest of the pipeline.

    Give several of them one `journal` list to see how they nest::

        journal: list[Recorded] = []
        recorders = [RecordingBehaviour("outer", journal), RecordingBehaviour("inner", journal)]
        bus = CommandBus(handlers, recorders)
        await bus.execute(CreateUser(...))
        assert [(r.behaviour, r.phase) for r in journal] == [
            ("outer", "before"), ("inner", "before"), ("inner", "after"), ("outer", "after")]

    It sits anywhere in the chain.
    """

    def __init__(self, name: str = "recording", journal: list[Recorded] | None = None) -> None:
        self.name = name
        self.journal: list[Recorded] = [] if journal is None else journal

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Record `message`, run the rest of the pipeline, record what came back."""
        self.journal.append(Recorded(self.name, "before", message, context))
        try:
            result = await call_next(message, context)
        except BaseException as exc:
            self.journal.append(Recorded(self.name, "after", message, context, error=exc))
            raise
        self.journal.append(Recorded(self.name, "after", message, context, result=result))
        return result

    @property
    def messages(self) -> list[Any]:
        """The messages this behaviour saw, in order (once each)."""
        return [r.message for r in self.journal if r.behaviour == self.name and r.phase == "before"]

    def phases(self) -> list[tuple[str, str]]:
        """``(behaviour name, phase)`` for every entry of the journal, in order."""
        return [(r.behaviour, r.phase) for r in self.journal]

    def __repr__(self) -> str:
        return f"RecordingBehaviour({self.name!r})"


def _providers_under(provider: providers.Provider[Any]) -> Iterator[providers.Provider[Any]]:
    return provider.traverse()


@contextmanager
def override_handler(container: containers.Container, message_type: type, handler: object) -> Iterator[None]:
    """Serve `message_type` with `handler` inside the ``with`` block, then restore the original.

    It overrides the handler provider that every ``providers.Dict`` of the container maps
    `message_type` to (the ``Factory`` itself, or the one behind ``.provider``), and resets the
    singletons built from those maps (your buses) on entry and on exit, so the next ``container.
    command_bus()`` is built with the fake inside the block and with the original after it, even when
    the block raises::

        with override_handler(container, CreateUser, FakeCreateUser()):
            result = await container.command_bus().execute(CreateUser(...))
    """
    maps: list[providers.Provider[Any]] = []
    targets: list[providers.Provider[Any]] = []
    for mapping in container.traverse(types=[providers.Dict]):
        value = mapping.kwargs.get(message_type)
        if value is None:
            continue
        if isinstance(value, providers.Delegate):
            value = value.provides
        if not isinstance(value, providers.Provider):
            raise ConfigurationError(
                f"the handler for {message_type.__qualname__} is a plain object, not a provider; "
                "declare it with providers.Factory(...) or providers.Singleton(...) to override it"
            )
        maps.append(mapping)
        targets.append(value)
    if not targets:
        raise HandlerNotFoundError(message_type)
    dependents = [
        singleton
        for singleton in container.traverse(types=[providers.BaseSingleton])
        if any(related is mapping for related in _providers_under(singleton) for mapping in maps)
    ]
    replacement = providers.Object(handler)
    for target in targets:
        target.override(replacement)
    for singleton in dependents:
        singleton.reset()
    try:
        yield
    finally:
        for target in targets:
            target.reset_last_overriding()
        for singleton in dependents:
            singleton.reset()


def _singletons_built_from(
    container: containers.Container, targets: list[providers.Provider[Any]]
) -> list[providers.BaseSingleton[Any]]:
    """Every singleton of `container` whose provider tree holds one of `targets` (or is one)."""
    return [
        singleton
        for singleton in container.traverse(types=[providers.BaseSingleton])
        if any(singleton is target for target in targets)
        or any(related is target for related in _providers_under(singleton) for target in targets)
    ]


@contextmanager
def override_providers(container: containers.Container, **replacements: object) -> Iterator[None]:
    """Override the providers of `container` named by the keywords for the ``with`` block, then restore.

    A value that is not a provider is served as it is (wrapped in ``providers.Object``). Every singleton
    built from an overridden provider (your buses, and whatever else depends on it) is reset on entry
    and on exit, so an override is never silently ignored by a bus that was built before it: the next
    ``container.command_bus()`` is built with the replacements, and after the block with the originals.
    A name the container does not declare is a `ConfigurationError`. The fixture pattern::

        @pytest.fixture
        def container() -> Iterator[Container]:
            container = Container()
            with override_providers(container, mailer=FakeMailer(), users=providers.Singleton(FakeUsers)):
                yield container
    """
    targets: list[providers.Provider[Any]] = []
    for name in replacements:
        provider = container.providers.get(name)
        if provider is None:
            known = ", ".join(sorted(container.providers)) or "none"
            raise ConfigurationError(f"the container has no provider named {name!r} (it has: {known})")
        targets.append(provider)
    dependents = _singletons_built_from(container, targets)
    for target, replacement in zip(targets, replacements.values(), strict=True):
        target.override(
            replacement if isinstance(replacement, providers.Provider) else providers.Object(replacement)
        )
    for singleton in dependents:
        singleton.reset()
    try:
        yield
    finally:
        for target in targets:
            target.reset_last_overriding()
        for singleton in dependents:
            singleton.reset()


_LAST_OVERRIDING = attrgetter("last_overriding")


class ProviderWatch:
    """A `BuildWatch` over the providers a bus was built from: `watch_overrides` gives one to each bus.

    `arm` records which provider overrides each one of them (none, usually); the check it returns
    raises `StaleOverrideError`, naming the bus and the first provider whose override changed since.
    Providers behind ``.provider`` (a `Delegate`) are left out: the bus calls those per dispatch, so
    it sees their overrides.
    """

    def __init__(self, bus: str, watched: dict[str, providers.Provider[Any]]) -> None:
        self._bus = bus
        self._names = tuple(watched)
        self._providers = tuple(watched.values())

    @property
    def providers(self) -> dict[str, providers.Provider[Any]]:
        """The providers watched, by the name an error would give them."""
        return dict(zip(self._names, self._providers, strict=True))

    def arm(self) -> Callable[[], None]:
        """Record the providers' overrides as the bus is built; return the check run per dispatch."""
        watched = self._providers
        armed = tuple(map(_LAST_OVERRIDING, watched))

        def check() -> None:
            if tuple(map(_LAST_OVERRIDING, watched)) != armed:
                self._refuse(armed)

        return check

    def _refuse(self, armed: tuple[object, ...]) -> None:
        for name, provider, was in zip(self._names, self._providers, armed, strict=True):
            if provider.last_overriding is not was:
                raise StaleOverrideError(self._bus, name)

    def __repr__(self) -> str:
        return f"ProviderWatch({self._bus}, {len(self._providers)} providers)"


def _is_bus_provider(provider: providers.Provider[Any]) -> bool:
    provides = getattr(provider, "provides", None)
    if not isinstance(provides, type):
        return False
    # The event bus composes a BusCore; the command and query buses are ones.
    return issubclass(provides, (BusCore, EventBus))


def _describe(provider: providers.Provider[Any], names: dict[int, str]) -> str:
    name = names.get(id(provider))
    if name is not None:
        return name
    provides = getattr(provider, "provides", None)
    if provides is None:
        return f"a {type(provider).__name__} provider"
    return f"the {type(provider).__name__} of {qualified_name(provides)}"


def _built_from(bus: providers.Provider[Any], names: dict[int, str]) -> dict[str, providers.Provider[Any]]:
    """Every provider `bus` resolves when it is built, named; not those behind a `Delegate`."""
    seen: dict[int, providers.Provider[Any]] = {}
    pending = list(bus.related)
    while pending:
        provider = pending.pop()
        if id(provider) in seen or isinstance(provider, providers.Delegate):
            continue
        seen[id(provider)] = provider
        pending.extend(provider.related)
    watched: dict[str, providers.Provider[Any]] = {}
    for provider in seen.values():
        watched.setdefault(_describe(provider, names), provider)
    return watched


def watch_overrides(container: ContainerT) -> ContainerT:
    """Make every bus of `container` refuse to dispatch once a provider it was built from is overridden.

    A bus is built once, from what the providers give at that moment, so a plain
    ``container.users.override(FakeUsers())`` made after ``container.command_bus()`` would not reach
    it. After this call each bus provider of the container (a ``CommandBus``, ``QueryBus`` or
    ``EventBus`` singleton or factory) builds its bus with a `ProviderWatch`, and a dispatch on a bus
    built before such an override raises `StaleOverrideError`, which names the bus and the provider
    and says the fix. A bus already built is reset, so the next one is watched. Calling it again does
    nothing more. Returns `container`, so a fixture can write ``container = watch_overrides(Container())``.

    The check costs a few hundred nanoseconds per dispatch, which is why buses are not watched unless
    asked: under pytest the ``cqrskit`` plugin (``cqrskit._pytest_plugin``) asks for every container a
    fixture gives.
    """
    names = {id(provider): f"container.{name}" for name, provider in container.providers.items()}
    bus: Any  # a Singleton or a Factory of a bus: both take add_kwargs
    for bus in container.traverse():
        if not _is_bus_provider(bus) or "watch" in getattr(bus, "kwargs", {}):
            continue
        label = names.get(id(bus), f"the {qualified_name(bus.provides)} provider")
        bus.add_kwargs(watch=ProviderWatch(label, _built_from(bus, names)))
        if isinstance(bus, providers.BaseSingleton):
            bus.reset()
    return container
