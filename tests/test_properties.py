"""Properties of dispatch that hold for any message class and any exception a handler raises."""

from __future__ import annotations

import asyncio
import keyword
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from cqrskit import (
    Command,
    CommandBus,
    ConfigurationError,
    ConflictError,
    Context,
    DomainError,
    HandlerNotFoundError,
    NotFoundError,
    OperationStatus,
    PermissionDeniedError,
    Query,
    QueryBus,
    Result,
    ResultError,
    ValidationFailedError,
)

FIELD_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name)
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda children: st.lists(children, max_size=3).map(tuple) | st.frozensets(st.integers(), max_size=3),
    max_leaves=5,
)


@st.composite
def messages(draw: st.DrawFn) -> tuple[Any, type[Any]]:
    """A frozen attrs message class made on the fly, and one instance of it."""
    kind = draw(st.sampled_from([Command, Query]))
    names = draw(st.lists(FIELD_NAMES, unique=True, max_size=5))
    cls = attrs.make_class(
        "Generated" + kind.__name__, {name: attrs.field() for name in names}, bases=(kind,), frozen=True
    )
    values = {name: draw(VALUES) for name in names}
    return cls(**values), kind


class Returning:
    def __init__(self, value: object) -> None:
        self.value = value

    async def handle(self, message: Any, context: Context) -> object:
        return self.value


class Raising:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def handle(self, message: Any, context: Context) -> object:
        raise self.exc


def bus_for(kind: type, message_type: type, handler: object) -> CommandBus | QueryBus:
    return CommandBus({message_type: handler}) if kind is Command else QueryBus({message_type: handler})


class Dummy(Command[None]):
    pass


# Bases an exception type is generated from, each with a way to build an instance.
BECOMES_A_RESULT: list[tuple[type[Exception], Callable[[type[Any]], Exception]]] = [
    (Exception, lambda cls: cls("boom")),
    (ValueError, lambda cls: cls("bad value")),
    (KeyError, lambda cls: cls("key")),
    (RuntimeError, lambda cls: cls()),
    (TypeError, lambda cls: cls("type")),
    (OSError, lambda cls: cls(5, "io")),
    (ConnectionError, lambda cls: cls("lost")),
    (TimeoutError, lambda cls: cls()),
    (ZeroDivisionError, lambda cls: cls()),
    (LookupError, lambda cls: cls()),
    (DomainError, lambda cls: cls("domain")),
    (NotFoundError, lambda cls: cls("missing")),
    (ConflictError, lambda cls: cls()),
    (PermissionDeniedError, lambda cls: cls("no")),
    (ValidationFailedError, lambda cls: cls({"field": "bad"})),
    (ResultError, lambda cls: cls(Result.failure(OperationStatus.TIMEOUT))),
    (ResultError, lambda cls: cls(Result.success(1))),
]
PROPAGATES: list[tuple[type[BaseException], Callable[[type[Any]], BaseException]]] = [
    (HandlerNotFoundError, lambda cls: cls(Dummy)),
    (ConfigurationError, lambda cls: cls("wiring")),
    (asyncio.CancelledError, lambda cls: cls()),
]


def exception_types(
    bases: Sequence[tuple[type[Any], Callable[[type[Any]], BaseException]]],
) -> st.SearchStrategy[BaseException]:
    """An instance of a generated subclass (or of the base itself) of one of `bases`."""

    @st.composite
    def build(draw: st.DrawFn) -> BaseException:
        base, make = draw(st.sampled_from(bases))
        if draw(st.booleans()):
            name = draw(st.from_regex(r"[A-Z][A-Za-z]{0,10}Error", fullmatch=True))
            base = type(name, (base,), {})
        exc: BaseException = make(base)
        return exc

    return build()


class TestDispatchProperties:
    @settings(max_examples=150, deadline=None)
    @given(message_and_kind=messages(), value=VALUES)
    async def test_success_carries_the_value_unchanged(
        self, message_and_kind: tuple[Any, type[Any]], value: object
    ) -> None:
        """For any generated frozen message class and value, the Result is SUCCESS with that very value."""
        message, kind = message_and_kind
        result = await bus_for(kind, type(message), Returning(value)).execute(message)
        assert result.status is OperationStatus.SUCCESS
        assert result.data is value
        assert dict(result.errors) == {}
        assert result.operation_id

    @settings(max_examples=150, deadline=None)
    @given(message_and_kind=messages(), exc=exception_types(BECOMES_A_RESULT))
    async def test_any_exception_becomes_a_result(
        self, message_and_kind: tuple[Any, type[Any]], exc: Exception
    ) -> None:
        """Any exception a handler raises, domain or not, comes back as a failed Result."""
        message, kind = message_and_kind
        with structlog.testing.capture_logs():
            result = await bus_for(kind, type(message), Raising(exc)).execute(message)
        assert isinstance(result, Result)
        assert result.is_failure
        assert result.operation_id
        if isinstance(exc, DomainError):
            assert result.status is exc.status
        elif isinstance(exc, ResultError) and exc.result.is_failure:
            assert result.status is exc.result.status
        elif isinstance(exc, ConnectionError):
            assert result.status is OperationStatus.UNAVAILABLE  # a dependency out of reach, not a bug
        else:
            assert result.status is OperationStatus.FAILED

    @settings(max_examples=60, deadline=None)
    @given(message_and_kind=messages(), exc=exception_types(PROPAGATES))
    async def test_wiring_errors_and_cancellation_propagate(
        self, message_and_kind: tuple[Any, type[Any]], exc: BaseException
    ) -> None:
        """HandlerNotFoundError, ConfigurationError and cancellation (and their subclasses) propagate."""
        message, kind = message_and_kind
        with pytest.raises(type(exc)):
            await bus_for(kind, type(message), Raising(exc)).execute(message)
