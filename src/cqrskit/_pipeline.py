"""Composing one message type's pipeline, once, when a bus is built.

A pipeline is a function ``(message, context) -> awaitable Result``. The handler call is the innermost
step; each behaviour's `Step` for the message type (what its ``bind`` hook returned, or the behaviour
itself) is then wrapped around it, innermost first, as Starlette folds its middleware stack. Links are
plain functions made here, so a dispatch allocates no closures and looks nothing up.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from types import FunctionType
from typing import Any, TypeAlias

from cqrskit._context import Context
from cqrskit._contracts import Step
from cqrskit._errors import ConfigurationError
from cqrskit._names import qualified_name
from cqrskit._results import Result, handler_result
from cqrskit._stages import Stage

__all__ = [
    "BehaviourOrderError",
    "BoundBehaviours",
    "Pipeline",
    "Prepared",
    "bind_behaviours",
    "bind_stream_behaviours",
    "check_behaviours",
    "compose",
    "direct_handle",
    "handler_step",
    "prepare_behaviours",
    "require_kind",
]

Pipeline: TypeAlias = Callable[[Any, Context], Awaitable[Result[Any]]]

BoundBehaviours: TypeAlias = tuple[tuple[object, Step], ...]
"""The behaviours in one message type's pipeline, outermost first, each with the step it runs there."""


def _name(obj: object) -> str:
    # A class or function by its qualified name; an instance by its class's name, never its repr (a
    # repr can hold settings such as a temporary database path).
    if isinstance(obj, type) or inspect.isfunction(obj):
        return qualified_name(obj)
    return type(obj).__name__


def require_kind(behaviour: object, message_type: type, kind: type) -> None:
    """Raise `ConfigurationError` unless `message_type` is a `kind` (for a ``bind`` hook to call)."""
    if not issubclass(message_type, kind):
        name = type(behaviour).__name__
        raise ConfigurationError(
            f"{name} works on {kind.__name__} buses only, and {message_type.__qualname__} is not a "
            f"{kind.__name__}: remove {name} from this bus's behaviours"
        )


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
            return handler_result(await handle(message, context), context.operation_id)

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
        return handler_result(await handler.handle(message, context), context.operation_id)

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


def _stage(behaviour: object) -> Stage | None:
    stage = getattr(behaviour, "stage", None)
    return stage if isinstance(stage, Stage) else None


class BehaviourOrderError(ConfigurationError):
    """Two behaviours listed against the canonical order: `inner` must be listed before `outer`."""

    def __init__(self, inner: str, outer: str, bus: str) -> None:
        self.inner = inner
        self.outer = outer
        super().__init__(self.sentence(bus))

    def sentence(self, bus: str) -> str:
        """Say what is wrong and the fix, naming the bus as `bus` (its provider's name, say)."""
        inner, outer = self.inner, self.outer
        return f"{inner} must sit outside {outer}: list {inner} before {outer} in {bus}'s behaviours"


def check_behaviours(behaviours: Sequence[object], bus_name: str) -> None:
    """Refuse behaviours that cannot work: not callable, or listed against the order of `Stage`."""
    for behaviour in behaviours:
        _check_callable(behaviour)
    outermost: object = None  # the behaviour with the latest stage so far
    for behaviour in behaviours:
        stage = _stage(behaviour)
        if stage is None:
            continue
        outer_stage = _stage(outermost)
        if outer_stage is not None and stage < outer_stage:
            raise BehaviourOrderError(type(behaviour).__name__, type(outermost).__name__, f"this {bus_name}")
        outermost = behaviour


def _check_callable(behaviour: Any) -> None:  # Any: mypy would not narrow a callable to a function
    if isinstance(behaviour, type):
        raise ConfigurationError(
            f"{_name(behaviour)} is a class; list an instance of it: {behaviour.__qualname__}(...)"
        )
    if not callable(behaviour):
        raise ConfigurationError(
            f"a {type(behaviour).__name__} is not a behaviour: give an object with "
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
            f"{_name(behaviour)} cannot be called as behaviour(message, context, call_next)"
        ) from None


def _call_target(step: Any) -> Step:
    """Return what a link calls for `step`: its bound ``__call__`` when that is a Python method.

    Calling an object looks ``__call__`` up on its type on every call; the bound method, taken once
    here, saves that lookup per behaviour per dispatch.
    """
    if isinstance(getattr(type(step), "__call__", None), FunctionType):  # noqa: B004
        return step.__call__  # type: ignore[no-any-return]
    return step  # type: ignore[no-any-return]


Prepared: TypeAlias = tuple[tuple[object, Any, Step], ...]
"""Each behaviour of a bus with its ``bind`` hook (or None) and its call target, worked out once."""


def prepare_behaviours(behaviours: Sequence[object]) -> Prepared:
    """Look up each behaviour's hook and call target once per bus, not once per message type."""
    return tuple((b, getattr(b, "bind", None), _call_target(b)) for b in behaviours)


def bind_behaviours(prepared: Prepared, message_type: type) -> BoundBehaviours:
    """Ask each behaviour's ``bind`` hook, once, what it runs for `message_type` (outermost first).

    A behaviour without the hook runs as itself; one whose hook returns None stays out.
    """
    bound: list[tuple[object, Step]] = []
    for behaviour, hook, target in prepared:
        if hook is None:
            bound.append((behaviour, target))
            continue
        step = _checked_step(behaviour, "bind", hook(message_type), message_type, target)
        if step is not None:
            bound.append((behaviour, step))
    return tuple(bound)


def bind_stream_behaviours(prepared: Prepared, message_type: type) -> BoundBehaviours:
    """Ask each behaviour what it runs in a streaming query's pipeline (outermost first).

    A behaviour that defines ``bind_stream(message_type)`` answers there, as ``bind`` answers for
    other types (None to stay out, itself, or a step that wraps the `Stream` it gets). One without it
    is asked as for any message: it then runs around the opening of the stream (the wait for the
    first item) and sees a Result whose data is the `Stream`, before any item was read.
    """
    bound: list[tuple[object, Step]] = []
    for behaviour, hook, target in prepared:
        stream_hook = getattr(behaviour, "bind_stream", None)
        if stream_hook is not None:
            step = _checked_step(behaviour, "bind_stream", stream_hook(message_type), message_type, target)
        elif hook is not None:
            step = _checked_step(behaviour, "bind", hook(message_type), message_type, target)
        else:
            step = target
        if step is not None:
            bound.append((behaviour, step))
    return tuple(bound)


def _checked_step(
    behaviour: object, hook_name: str, step: Any, message_type: type, target: Step
) -> Step | None:
    if step is None:
        return None
    if step is behaviour:
        return target
    if callable(step):
        return _call_target(step)
    raise ConfigurationError(
        f"{type(behaviour).__name__}.{hook_name}({message_type.__qualname__}) returned a "
        f"{type(step).__name__}; return a callable step, the behaviour itself, or None"
    )


def _link(call: Step, call_next: Pipeline) -> Pipeline:
    def step(message: Any, context: Context) -> Awaitable[Result[Any]]:
        return call(message, context, call_next)

    return step


def compose(terminal: Pipeline, bound: BoundBehaviours) -> Pipeline:
    """Fold the `bound` steps (outermost first) around `terminal`, innermost first."""
    pipeline = terminal
    for _, call in reversed(bound):
        pipeline = _link(call, pipeline)
    return pipeline


def guard(check: Callable[[], None], pipeline: Pipeline) -> Pipeline:
    """Return `pipeline` behind `check`, run before each dispatch (a watched bus, see `BuildWatch`)."""

    async def guarded(message: Any, context: Context) -> Result[Any]:
        check()
        return await pipeline(message, context)

    return guarded
