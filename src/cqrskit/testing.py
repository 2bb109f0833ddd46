"""Fakes and helpers for testing code built on cqrskit.

- `RecordingBehaviour` records what passes through it, so a test can assert the exact order in which
  behaviours ran.
- `InMemoryCache` and `FailingCache` are cache backends for `QueryCache` and `CacheInvalidation`: a
  dict with a clock you control, and a cache that is always down.
- `override_handler` swaps the handler of one message type in a container for the length of a
  ``with`` block, and rebuilds the buses that had been built with the old one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import attrs
from dependency_injector import containers, providers

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._errors import ConfigurationError, HandlerNotFoundError
from cqrskit._results import Result
from cqrskit.caching._fakes import FailingCache, InMemoryCache

__all__ = ["FailingCache", "InMemoryCache", "Recorded", "RecordingBehaviour", "override_handler"]


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
