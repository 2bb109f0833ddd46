from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from dependency_injector import containers, providers
from structlog.testing import capture_logs

from cqrskit import CallNext, CommandBus, Context, OperationStatus, Principal, QueryBus, Result
from cqrskit.behaviours import Logging
from cqrskit.testing import Recorded, RecordingBehaviour
from tests.behaviours.observed_app import FindUser, FindUserHandler, Hang, Register, RegisterHandler

AUDIT_TRAIL: list[tuple[str, str | None, str]] = []
DISPATCHES: Counter[tuple[str, str]] = Counter()
DURATIONS: list[float] = []


async def audit_trail(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
    """The seed guide's audit middleware as a plain function: who did what, and how it ended."""
    principal = context.principal
    try:
        result = await call_next(message, context)
    except Exception:
        AUDIT_TRAIL.append((type(message).__name__, principal and principal.id, "raised"))
        raise
    AUDIT_TRAIL.append((type(message).__name__, principal and principal.id, str(result.status)))
    return result


async def count_dispatches(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
    """The seed guide's metrics middleware as a plain function: a count per status and a duration."""
    started = time.perf_counter()
    try:
        result = await call_next(message, context)
    except Exception:
        DISPATCHES[(type(message).__name__, "raised")] += 1
        raise
    finally:
        DURATIONS.append(time.perf_counter() - started)
    DISPATCHES[(type(message).__name__, str(result.status))] += 1
    return result


@pytest.fixture(autouse=True)
def _reset() -> None:
    AUDIT_TRAIL.clear()
    DISPATCHES.clear()
    DURATIONS.clear()


class FunctionContainer(containers.DeclarativeContainer):
    """Functions and objects mixed in one behaviour list, as a user would declare them."""

    users = providers.Singleton(dict)
    journal = providers.Singleton(list)
    outer = providers.Singleton(RecordingBehaviour, "outer", journal)
    inner = providers.Singleton(RecordingBehaviour, "inner", journal)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {Register: providers.Factory(RegisterHandler, users=users, hang=providers.Factory(Hang))}
        ),
        behaviours=providers.List(
            outer,
            providers.Object(audit_trail),
            providers.Singleton(Logging),
            providers.Object(count_dispatches),
            inner,
        ),
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict({FindUser: providers.Factory(FindUserHandler, users=users)}),
        behaviours=providers.List(providers.Object(count_dispatches), providers.Object(audit_trail)),
    )


class TestFunctionBehaviours:
    """An async function behaviour works in a bus wherever a behaviour object does."""

    async def test_functions_and_objects_nest_in_the_order_listed(self) -> None:
        """Functions sit between objects exactly where they are listed, and see the same Result."""
        container = FunctionContainer()
        with capture_logs():
            result = await container.command_bus().execute(
                Register("a@example.com", "pw"), Context(principal=Principal("alice"))
            )
        assert result.is_success
        journal: list[Recorded] = container.journal()
        assert [(r.behaviour, r.phase) for r in journal] == [
            ("outer", "before"),
            ("inner", "before"),
            ("inner", "after"),
            ("outer", "after"),
        ]
        assert AUDIT_TRAIL == [("Register", "alice", "success")]
        assert Counter({("Register", "success"): 1}) == DISPATCHES
        assert len(DURATIONS) == 1

    async def test_a_function_on_the_query_bus_sees_failures(self) -> None:
        """On the query bus the functions see a NOT_FOUND raised by the handler travel through them."""
        container = FunctionContainer()
        result = await container.query_bus().execute(FindUser("nobody@example.com"))
        assert result.status is OperationStatus.NOT_FOUND
        assert AUDIT_TRAIL == [("FindUser", None, "raised")]
        assert Counter({("FindUser", "raised"): 1}) == DISPATCHES

    async def test_an_unexpected_error_travels_through_functions_to_the_bus(self) -> None:
        """An exception passes up through function behaviours and becomes FAILED at the bus."""
        container = FunctionContainer()
        with capture_logs() as logs:
            result = await container.command_bus().execute(Register("boom@example.com", "pw"))
        assert result.status is OperationStatus.FAILED
        assert AUDIT_TRAIL == [("Register", None, "raised")]
        assert sum(1 for event in logs if "exc_info" in event) == 1

    def test_a_function_is_part_of_the_chain_for_every_type(self) -> None:
        """behaviours_for lists the function behaviours with the objects, outermost first."""
        container = FunctionContainer()
        chain = container.command_bus().behaviours_for(Register)
        assert chain[1] is audit_trail
        assert chain[3] is count_dispatches
