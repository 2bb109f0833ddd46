"""The core's contracts: what a handler and a behaviour are, and how a behaviour calls the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias, TypeVar

from cqrskit._context import Context
from cqrskit._results import Result

__all__ = ["Behaviour", "CallNext", "Handler", "HandlerFactory"]

M_contra = TypeVar("M_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

CallNext: TypeAlias = Callable[[Any, Context], Awaitable[Result[Any]]]
"""Runs the rest of a pipeline: ``await call_next(message, context)`` returns its `Result`."""


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


HandlerFactory: TypeAlias = Callable[[], Any]
"""A zero-argument callable that returns a handler, called on every dispatch (the ``.provider`` form)."""


class Behaviour(Protocol):
    """A cross-cutting step around a handler: ``await behaviour(message, context, call_next)``.

    It returns a `Result`, usually the one ``await call_next(message, context)`` gives. Besides
    ``__call__`` a behaviour object may define, all optional:

    - ``applies_to(message_type) -> bool``: when False the bus leaves it out of that type's pipeline.
    - ``describe(message_type) -> Mapping[str, object]``: its settings for that type, for the route
      inspector.
    - ``message_kinds: tuple[type, ...]``: the message bases (`Command`, `Query`) it works with; on a
      bus of another kind it is a `ConfigurationError`.
    - ``inside_of: tuple[type, ...]``: behaviour types that, when present, must sit outside it.
    - ``logs_errors: bool``: True when it logs unexpected exceptions with their traceback itself, so
      the bus does not log a second time those that passed up through it (it still logs one raised
      outside it, by a behaviour listed before it).
    - ``for_message_type(message_type)``: the behaviour's work for that one type, an ``async (message,
      context, call_next)`` callable; the bus asks once per type when it is built and calls that
      instead of the object, so per-type lookups happen at build time, not per dispatch.

    A plain ``async def behaviour(message, context, call_next)`` function works too.
    """

    def __call__(self, message: Any, context: Context, call_next: CallNext, /) -> Awaitable[Result[Any]]:
        """Run this step and the rest of the pipeline."""
        ...
