"""`CommandBus` and `QueryBus`: immutable maps from message type to a pipeline built once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import structlog

from cqrskit._context import Context
from cqrskit._errors import ConfigurationError, HandlerNotFoundError
from cqrskit._messages import Command, Message, Query
from cqrskit._names import qualified_name
from cqrskit._operation_ids import state as _ids
from cqrskit._outcome import result_from_exception, was_logged
from cqrskit._pipeline import (
    Pipeline,
    as_result,
    call_target,
    check_behaviours,
    compose,
    direct_handle,
    handler_step,
    selected_behaviours,
)
from cqrskit._results import _NO_ERRORS, Result
from cqrskit._results import WRAPPED_TYPES as _WRAPPED_TYPES
from cqrskit._status import OperationStatus

__all__ = ["CommandBus", "QueryBus"]

R = TypeVar("R")

_SUCCESS = OperationStatus.SUCCESS


class _Bus:
    """What both buses share: validated routes, one pipeline per message type, one dispatch path."""

    _kind: ClassVar[type[Message[Any]]]
    __slots__ = ("_behaviours", "_chains", "_logger", "_pipelines", "_routes")

    def __init__(
        self,
        handlers: Mapping[type[Any], object],
        behaviours: Iterable[object] = (),
        *,
        logger: Any = None,
    ) -> None:
        if not isinstance(handlers, Mapping):
            raise ConfigurationError(
                f"handlers must be a mapping of message type to handler, got {type(handlers).__name__}"
            )
        behaviour_list = tuple(behaviours)
        check_behaviours(behaviour_list, self._kind)
        pipelines: dict[type, tuple[Pipeline, Callable[[Any, Context], Awaitable[Any]] | None]] = {}
        chains: dict[type, tuple[object, ...]] = {}
        targets = {id(b): call_target(b) for b in behaviour_list}
        for message_type, value in handlers.items():
            self._check_key(message_type)
            chain = selected_behaviours(behaviour_list, message_type)
            pipeline = compose(handler_step(message_type, value), chain, targets, message_type)
            # With no behaviour in the way the bus calls the handler object itself: one coroutine less.
            pipelines[message_type] = (pipeline, None if chain else direct_handle(value))
            chains[message_type] = chain
        self._routes: Mapping[type, object] = MappingProxyType(dict(handlers))
        self._pipelines = pipelines
        self._chains: Mapping[type, tuple[object, ...]] = MappingProxyType(chains)
        self._behaviours = behaviour_list
        self._logger = logger if logger is not None else structlog.get_logger("cqrskit")

    def _check_key(self, message_type: object) -> None:
        kind = self._kind
        if not (isinstance(message_type, type) and issubclass(message_type, kind)):
            raise ConfigurationError(
                f"{type(self).__name__} routes {kind.__name__} subclasses only; "
                f"{qualified_name(message_type)} is not one"
            )

    @property
    def routes(self) -> Mapping[type, object]:
        """A read-only view of the handler mapping the bus was built from."""
        return self._routes

    @property
    def behaviours(self) -> tuple[object, ...]:
        """Every behaviour the bus was built with, outermost first."""
        return self._behaviours

    def behaviours_for(self, message_type: type) -> tuple[object, ...]:
        """Return the behaviours in `message_type`'s pipeline, outermost first (those that apply to it)."""
        try:
            return self._chains[message_type]
        except KeyError:
            raise HandlerNotFoundError(message_type) from None

    async def _dispatch(self, message: Any, context: Context | None = None) -> Result[Any]:
        """Run `message` through its pipeline and return the `Result`.

        Expected failures come back as a failed Result; so does any unexpected exception, as FAILED,
        after it was logged once with its traceback. A message type with no route raises
        `HandlerNotFoundError`, a broken wiring `ConfigurationError`; cancellation propagates.
        """
        # The hot path: everything below is inlined (the operation id, the dispatch context, and for a
        # handler with no behaviours the handler call) because each Python call costs tens of ns.
        try:
            pipeline, handle = self._pipelines[type(message)]
        except KeyError:
            raise HandlerNotFoundError(type(message)) from None
        operation_id = f"{_ids.prefix}{next(_ids.counter)}"
        if context is None:
            context = Context(None, operation_id, None, None, operation_id)
        else:
            context = Context(
                context._principal,
                context._correlation_id or operation_id,
                context._causation_id,
                context._idempotency_key,
                operation_id,
            )
        try:
            if handle is not None:
                data = await handle(message, context)
                if type(data) in _WRAPPED_TYPES:
                    return as_result(data, operation_id)
                return Result(_SUCCESS, data, _NO_ERRORS, (), None, None, operation_id)
            result = await pipeline(message, context)
        except (HandlerNotFoundError, ConfigurationError):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place exceptions become Results
            return result_from_exception(
                exc,
                message,
                context,
                log=not was_logged(exc, operation_id),
                logger=self._logger,
            )
        if result._operation_id is None:  # a behaviour's own Result: the bus fills the id in
            result = result.evolve(operation_id=operation_id)
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._routes)} routes, {len(self._behaviours)} behaviours)"


class CommandBus(_Bus):
    """Dispatches commands: one handler per command type, wrapped in the behaviours given.

    `handlers` maps each `Command` subclass to a handler object (``async def handle(self, command,
    context)``) or to a zero-argument callable returning one, called per dispatch. `behaviours` are
    listed outermost first. Everything is checked and every pipeline composed here, once; the bus
    keeps read-only copies of what it was given.
    """

    __slots__ = ()
    _kind = Command

    if TYPE_CHECKING:

        async def execute(self, message: Command[R], context: Context | None = None) -> Result[R]:
            """Dispatch `message`; see `_Bus._dispatch`."""
            ...

    else:
        execute = _Bus._dispatch


class QueryBus(_Bus):
    """Dispatches queries: one handler per query type, wrapped in the behaviours given.

    Built like `CommandBus`, from a mapping of `Query` subclasses to handlers and a list of behaviours.
    """

    __slots__ = ()
    _kind = Query

    if TYPE_CHECKING:

        async def execute(self, message: Query[R], context: Context | None = None) -> Result[R]:
            """Dispatch `message`; see `_Bus._dispatch`."""
            ...

    else:
        execute = _Bus._dispatch
