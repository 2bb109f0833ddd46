"""The core's contracts: what a handler and a behaviour are, and how a behaviour calls the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeAlias, TypeVar

from cqrskit._context import Context
from cqrskit._results import Result

__all__ = [
    "Behaviour",
    "BindableBehaviour",
    "BuildWatch",
    "CallNext",
    "Handler",
    "HandlerFactory",
    "Step",
    "StreamHandler",
]

M_contra = TypeVar("M_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

CallNext: TypeAlias = Callable[[Any, Context], Awaitable[Result[Any]]]
"""Runs the rest of a pipeline: ``await call_next(message, context)`` returns its `Result`."""

Step: TypeAlias = Callable[[Any, Context, CallNext], Awaitable[Result[Any]]]
"""A behaviour's work in one pipeline: ``await step(message, context, call_next)`` returns a `Result`."""


class Handler(Protocol[M_contra, R_co]):
    """What a handler satisfies: one ``handle`` coroutine for one message type.

    A handler is a plain class; annotate it with this protocol to have a type checker confirm it
    returns what its message promises::

        handler: Handler[CreateUser, UUID] = CreateUserHandler(users)

    `handle` returns the value, or a `Result` when it must report affected entities.
    """

    async def handle(self, message: M_contra, context: Context, /) -> R_co | Result[R_co]:
        """Handle `message` for the caller described by `context`."""
        ...


class StreamHandler(Protocol[M_contra, R_co]):
    """What a streaming query's handler satisfies: ``handle`` yields the items one by one.

    Write ``handle`` as an async generator; the bus runs it only as fast as its caller reads::

        class ExportUsersHandler:
            async def handle(self, query: ExportUsers, context: Context) -> AsyncIterator[UserDto]:
                async for row in rows:
                    yield UserDto(...)

        handler: StreamHandler[ExportUsers, UserDto] = ExportUsersHandler()
    """

    def handle(self, message: M_contra, context: Context, /) -> AsyncIterator[R_co]:
        """Yield the items `message` asks for, for the caller described by `context`."""
        ...


HandlerFactory: TypeAlias = Callable[[], Any]
"""A zero-argument callable that returns a handler, called on every dispatch (the ``.provider`` form)."""


class Behaviour(Protocol):
    """A cross-cutting step around a handler: ``await behaviour(message, context, call_next)``.

    It returns a `Result`, usually the one ``await call_next(message, context)`` gives. A plain
    ``async def behaviour(message, context, call_next)`` function is one too. An object may add a
    build-time hook, ``bind`` (see `BindableBehaviour`), a ``stage`` class attribute (a `Stage`) that
    the bus checks the order against, and ``describe(message_type) -> Mapping[str, object]``, its
    settings for that type, which the route inspector prints. The whole contract is on the docs page
    "Writing a behaviour".
    """

    def __call__(self, message: Any, context: Context, call_next: CallNext, /) -> Awaitable[Result[Any]]:
        """Run this step and the rest of the pipeline."""
        ...


class BindableBehaviour(Behaviour, Protocol):
    """A behaviour with the build-time hook: the bus asks it, once per message type, what to run.

    ``bind(message_type)`` returns None to leave that type's pipeline (a behaviour configured for three
    message types costs the others nothing), or the `Step` to run for it: the behaviour itself, or a
    callable specialised for the type, with every per-type lookup done now instead of per dispatch.
    A behaviour that cannot work with the type (one for commands, asked about a query) raises
    `ConfigurationError` here, so the bus is never built.
    """

    def bind(self, message_type: type, /) -> Step | None:
        """Return what to run in `message_type`'s pipeline, or None to stay out of it."""
        ...


class BuildWatch(Protocol):
    """Watches what a bus was built from, so that a change made after the build is refused, not missed.

    A bus given ``watch=`` calls `arm` once, when it is built, and runs the check it returns before
    every dispatch; the check raises `ConfigurationError` (a `StaleOverrideError`) when what the bus
    was built from has changed since. `cqrskit.testing.watch_overrides` gives a container's buses one
    that watches the providers they were built from.
    """

    def arm(self) -> Callable[[], None]:
        """Record the state the bus is built from; return the check to run before each dispatch."""
        ...
