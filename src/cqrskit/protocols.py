"""The contracts cqrskit's parts meet at, each defined once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from cqrskit.context import Context
from cqrskit.results import Result

if TYPE_CHECKING:
    from cqrskit.behaviours.audit import AuditRecord

__all__ = ["AuditSink", "Behaviour", "CacheBackend", "CallNext", "Handler", "HandlerFactory"]

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


class Describable(Protocol):
    """A behaviour that can say what it does for a message type."""

    def describe(self, message_type: type, /) -> Mapping[str, object]:
        """Return this behaviour's settings for `message_type`."""
        ...


class AuditSink(Protocol):
    """Where the `Audit` behaviour sends its records: ``await sink.write(record)``.

    Write the `AuditRecord` wherever your audit trail lives (a table, a log, a queue). An exception
    you raise is logged by `Audit` and never fails the dispatch. `StructlogAuditSink` is one to start
    with::

        class TableAuditSink:
            async def write(self, record: AuditRecord) -> None:
                await audit_table.insert(record.to_dict())
    """

    async def write(self, record: AuditRecord, /) -> None:
        """Store `record`."""


class CacheBackend(Protocol):
    """The cache port `QueryCache` and `CacheInvalidation` talk to; `cqrskit.caching` implements it.

    Values are JSON-compatible data (what cattrs unstructures to); a backend shared by several
    processes stores them as JSON. A missing key reads as None. Pass an aiocache cache instead and it
    is wrapped in `cqrskit.caching.AiocacheBackend` for you. A backend over a network bounds each
    call with a timeout of its own and raises when it runs out: the behaviours fail open on an
    exception, but wait as long as a call takes.
    """

    async def get(self, key: str, /) -> Any:
        """Return the value stored under `key`, or None."""
        ...

    async def multi_get(self, keys: Sequence[str], /) -> Sequence[Any]:
        """Return the values of `keys`, in order, None for each missing one, in one round trip."""
        ...

    async def set(self, key: str, value: Any, ttl: float | None, /) -> None:
        """Store `value` under `key` for `ttl` seconds (forever when None)."""
        ...

    async def add(self, key: str, value: Any, ttl: float | None, /) -> bool:
        """Store `value` only when `key` is missing; return whether it was stored."""
        ...

    async def delete(self, key: str, /) -> None:
        """Remove `key`; a missing key is not an error."""
        ...

    async def increment(self, key: str, delta: int, ttl: float | None, /) -> int:
        """Add `delta` to the integer under `key` and return the new value.

        A missing key counts as 0; the key's time to live is reset to `ttl` seconds. On a shared
        backend the increment is atomic across processes.
        """
        ...

    async def close(self) -> None:
        """Release connections; the application calls it once, at shutdown."""
        ...
