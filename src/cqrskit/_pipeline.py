"""Composing one message type's pipeline, once, when a bus is built.

A pipeline is a function ``(message, context) -> awaitable Result``. The handler call is wrapped in a
terminal step that turns its return value into a `Result`; each behaviour, innermost first, is then
wrapped around it in a link that hands it the next step. Links are plain functions made here, so a
dispatch allocates no closures and looks nothing up.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import FunctionType
from typing import Any, TypeAlias

from cqrskit._context import Context
from cqrskit._errors import ConfigurationError
from cqrskit._names import qualified_name as _name
from cqrskit._outcome import mark_logged
from cqrskit._results import _NO_ERRORS, WRAPPED_TYPES, Page, Result
from cqrskit._status import OperationStatus

__all__ = [
    "Pipeline",
    "as_result",
    "call_target",
    "check_behaviours",
    "compose",
    "direct_handle",
    "handler_step",
    "selected_behaviours",
]

Pipeline: TypeAlias = Callable[[Any, Context], Awaitable[Result[Any]]]

_SUCCESS = OperationStatus.SUCCESS


def as_result(value: Any, operation_id: str | None) -> Result[Any]:
    """Turn a handler's Result or Page into the dispatch's Result (the uncommon path)."""
    if isinstance(value, Result):
        return value if value.operation_id is operation_id else value.evolve(operation_id=operation_id)
    page: Page[Any] = value
    return Result(_SUCCESS, page, _NO_ERRORS, (), page.pagination, None, operation_id)


def _is_handler(value: object) -> bool:
    return not isinstance(value, type) and inspect.iscoroutinefunction(getattr(value, "handle", None))


def direct_handle(value: object) -> Callable[[Any, Context], Awaitable[Any]] | None:
    """Return `value.handle` when `value` is a handler object (the bus may call it itself), else None."""
    return value.handle if _is_handler(value) else None  # type: ignore[attr-defined]


def handler_step(message_type: type, value: object) -> Pipeline:
    """Return the innermost step for `value`: a handler object, or a zero-argument handler factory."""
    handle = direct_handle(value)
    if handle is not None:

        async def call_handler(message: Any, context: Context) -> Result[Any]:
            data = await handle(message, context)
            if type(data) in WRAPPED_TYPES:
                return as_result(data, context._operation_id)
            return Result(_SUCCESS, data, _NO_ERRORS, (), None, None, context._operation_id)

        return call_handler

    if not callable(value):
        raise ConfigurationError(
            f"the handler for {_name(message_type)} is {value!r}: give an object with an "
            "'async def handle(self, message, context)' method, or a zero-argument callable returning one"
        )
    _require_no_arguments(message_type, value)
    factory: Callable[[], Any] = value
    # Handler classes a factory has returned and that were found to have an async `handle`: the check
    # is made once per class, not once per dispatch.
    checked: set[type] = set()

    async def call_new_handler(message: Any, context: Context) -> Result[Any]:
        handler = factory()
        if type(handler) not in checked:
            if not _is_handler(handler):
                raise ConfigurationError(
                    f"the handler factory for {_name(message_type)} returned {handler!r}, which has no "
                    "'async def handle(self, message, context)' method"
                )
            checked.add(type(handler))
        data = await handler.handle(message, context)
        if type(data) in WRAPPED_TYPES:
            return as_result(data, context._operation_id)
        return Result(_SUCCESS, data, _NO_ERRORS, (), None, None, context._operation_id)

    return call_new_handler


def _require_no_arguments(message_type: type, factory: Callable[..., Any]) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # a provider or a builtin: nothing to check before the first dispatch
    try:
        signature.bind()
    except TypeError:
        raise ConfigurationError(
            f"the handler factory for {_name(message_type)}, {_name(factory)}, cannot be called "
            "without arguments; give a handler object or a zero-argument factory"
        ) from None


def call_target(behaviour: Any) -> Callable[..., Awaitable[Result[Any]]]:
    """Return what a link calls for `behaviour`: its bound ``__call__`` when that is a Python method.

    Calling the object itself would look ``__call__`` up on every dispatch. Work it out once per bus.
    """
    if isinstance(getattr(type(behaviour), "__call__", None), FunctionType):  # noqa: B004
        return behaviour.__call__  # type: ignore[no-any-return]
    return behaviour  # type: ignore[no-any-return]


def _link(call: Callable[..., Awaitable[Result[Any]]], call_next: Pipeline) -> Pipeline:
    def step(message: Any, context: Context) -> Awaitable[Result[Any]]:
        return call(message, context, call_next)

    return step


def _marking(call_next: Pipeline) -> Pipeline:
    async def mark_errors(message: Any, context: Context) -> Result[Any]:
        try:
            return await call_next(message, context)
        except Exception as exc:
            mark_logged(exc, context._operation_id)
            raise

    return mark_errors


def check_behaviours(behaviours: Sequence[object], kind: type) -> None:
    """Refuse behaviours that cannot work: not callable, on the wrong bus, or in the wrong order."""
    for behaviour in behaviours:
        _check_callable(behaviour)
        kinds: tuple[type, ...] | None = getattr(behaviour, "message_kinds", None)
        if kinds is not None and not any(issubclass(kind, k) for k in kinds):
            allowed = ", ".join(k.__name__ for k in kinds)
            raise ConfigurationError(
                f"{behaviour!r} works on {allowed} buses only, not on a {kind.__name__} bus"
            )
    for position, behaviour in enumerate(behaviours):
        for outer_type in getattr(behaviour, "inside_of", ()):
            for inner in behaviours[position + 1 :]:
                if isinstance(inner, outer_type):
                    raise ConfigurationError(
                        f"{inner!r} must sit outside {behaviour!r}: list it before it in the behaviours"
                    )


def _check_callable(behaviour: Any) -> None:  # Any: mypy would not narrow a callable to a function
    if isinstance(behaviour, type):
        raise ConfigurationError(
            f"{_name(behaviour)} is a class; list an instance of it: {behaviour.__qualname__}(...)"
        )
    if not callable(behaviour):
        raise ConfigurationError(
            f"{behaviour!r} is not a behaviour: give an object with "
            "'async def __call__(self, message, context, call_next)' or an async function"
        )
    target: Any = behaviour if inspect.isfunction(behaviour) else getattr(behaviour, "__call__", None)  # noqa: B004
    if inspect.isfunction(behaviour) and not inspect.iscoroutinefunction(behaviour):
        raise ConfigurationError(
            f"{_name(behaviour)} is a plain function; a behaviour must be 'async def' and return a Result"
        )
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(None, None, None)
    except TypeError:
        raise ConfigurationError(
            f"{behaviour!r} cannot be called as behaviour(message, context, call_next)"
        ) from None


def selected_behaviours(behaviours: Iterable[object], message_type: type) -> tuple[object, ...]:
    """Return the behaviours, outermost first, that take part in `message_type`'s pipeline."""
    selected = []
    for behaviour in behaviours:
        applies_to = getattr(behaviour, "applies_to", None)
        if applies_to is None or applies_to(message_type):
            selected.append(behaviour)
    return tuple(selected)


def compose(
    terminal: Pipeline,
    behaviours: Sequence[object],
    targets: Mapping[int, Callable[..., Awaitable[Result[Any]]]] | None = None,
    message_type: type | None = None,
) -> Pipeline:
    """Fold `behaviours` (outermost first) around `terminal`, innermost first.

    `targets` maps ``id(behaviour)`` to its `call_target`, when the caller has worked them out already.
    When `message_type` is given, a behaviour that defines ``for_message_type(message_type)`` is
    called through what that returns: its work for this one type, with every per-type lookup done
    now rather than per dispatch. Inside a behaviour that says `logs_errors` a step marks the
    exceptions that pass up through it, so the bus logs only those it did not see; one that marks them
    itself (`Logging`, with ``marks_logged_errors``) needs no such step.
    """
    pipeline = terminal
    for behaviour in reversed(behaviours):
        specialise = getattr(behaviour, "for_message_type", None) if message_type is not None else None
        if specialise is not None:
            call = specialise(message_type)
        else:
            call = targets[id(behaviour)] if targets is not None else call_target(behaviour)
        if getattr(behaviour, "logs_errors", False) and not getattr(behaviour, "marks_logged_errors", False):
            pipeline = _marking(pipeline)
        pipeline = _link(call, pipeline)
    return pipeline
