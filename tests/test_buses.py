from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import attrs
import pytest
import structlog

from cqrskit import (
    CallNext,
    Command,
    CommandBus,
    ConfigurationError,
    ConflictError,
    Context,
    HandlerNotFoundError,
    NotFoundError,
    OperationStatus,
    Page,
    PermissionDeniedError,
    Principal,
    Query,
    QueryBus,
    Result,
    ResultError,
    Stage,
    ValidationFailedError,
)
from cqrskit.behaviours import Logging
from cqrskit.testing import Recorded, RecordingBehaviour


@attrs.frozen
class CreateUser(Command[UUID]):
    email: str


@attrs.frozen
class DeleteUser(Command[None]):
    user_id: UUID


@attrs.frozen
class GetUser(Query[str]):
    user_id: UUID


@attrs.frozen
class ListUsers(Query[Page[str]]):
    page: int


NEW_ID = UUID(int=7)


class CreateUserHandler:
    def __init__(self) -> None:
        self.contexts: list[Context] = []

    async def handle(self, command: CreateUser, context: Context) -> UUID:
        self.contexts.append(context)
        return NEW_ID


class DeleteUserHandler:
    async def handle(self, command: DeleteUser, context: Context) -> None:
        return None


class GetUserHandler:
    async def handle(self, query: GetUser, context: Context) -> str:
        return "ada"


class ListUsersHandler:
    async def handle(self, query: ListUsers, context: Context) -> Page[str]:
        return Page(items=["ada"], total_count=3, page=query.page, page_size=1)


class Raising:
    """A handler that raises what it was given."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def handle(self, message: Any, context: Context) -> Any:
        raise self.exc


def phases(journal: list[Recorded]) -> list[tuple[str, str]]:
    return [(r.behaviour, r.phase) for r in journal]


class OnlyFor:
    """A pass-through behaviour that applies to the listed types only."""

    def __init__(self, journal: list[str], *types: type) -> None:
        self.journal = journal
        self.types = types

    def bind(self, message_type: type) -> OnlyFor | None:
        return self if message_type in self.types else None

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        self.journal.append(type(message).__name__)
        return await call_next(message, context)


class TestPipelineOrder:
    async def test_outermost_first_with_nesting(self) -> None:
        """Behaviours run outermost first on the way in and innermost first on the way out."""
        journal: list[Recorded] = []
        names = ["a", "b", "c"]
        bus = CommandBus(
            {CreateUser: CreateUserHandler()}, [RecordingBehaviour(name, journal) for name in names]
        )
        result = await bus.execute(CreateUser("x@example.com"))
        assert result.is_success
        assert phases(journal) == [
            ("a", "before"),
            ("b", "before"),
            ("c", "before"),
            ("c", "after"),
            ("b", "after"),
            ("a", "after"),
        ]

    async def test_behaviours_see_the_dispatch_context_and_result(self) -> None:
        """Every behaviour sees the context carrying the operation id and the Result that came back."""
        journal: list[Recorded] = []
        handler = CreateUserHandler()
        bus = CommandBus({CreateUser: handler}, [RecordingBehaviour("a", journal)])
        result = await bus.execute(CreateUser("x@example.com"))
        before, after = journal
        assert before.context.operation_id == result.operation_id
        assert handler.contexts == [before.context]
        assert after.result == result

    async def test_a_function_behaviour(self) -> None:
        """A plain async function works as a behaviour."""
        seen: list[str] = []

        async def behaviour(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
            seen.append("in")
            return await call_next(message, context)

        result = await CommandBus({CreateUser: CreateUserHandler()}, [behaviour]).execute(CreateUser("x"))
        assert result.data == NEW_ID
        assert seen == ["in"]

    async def test_an_exception_passes_up_through_the_behaviours(self) -> None:
        """A handler's exception reaches every behaviour on the way out before it becomes a Result."""
        journal: list[Recorded] = []
        error = NotFoundError("gone")
        bus = CommandBus(
            {CreateUser: Raising(error)}, [RecordingBehaviour("a", journal), RecordingBehaviour("b", journal)]
        )
        result = await bus.execute(CreateUser("x"))
        assert result.status is OperationStatus.NOT_FOUND
        assert [(r.behaviour, r.error) for r in journal if r.phase == "after"] == [("b", error), ("a", error)]


class TestBindHook:
    async def test_a_behaviour_is_left_out_for_other_types(self) -> None:
        """A behaviour whose bind returns None is not in that type's pipeline and never runs for it."""
        journal: list[str] = []
        only = OnlyFor(journal, CreateUser)
        bus = CommandBus({CreateUser: CreateUserHandler(), DeleteUser: DeleteUserHandler()}, [only])
        await bus.execute(DeleteUser(NEW_ID))
        await bus.execute(CreateUser("x"))
        assert journal == ["CreateUser"]
        assert bus.behaviours_for(CreateUser) == (only,)
        assert bus.behaviours_for(DeleteUser) == ()
        assert bus.behaviours == (only,)

    async def test_bind_is_asked_once_per_type_and_can_specialise(self) -> None:
        """A behaviour's bind is asked once per type at build; dispatches call what it returned."""
        asked: list[str] = []
        ran: list[str] = []

        class PerType:
            async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
                raise AssertionError("the bus must call the specialised form")

            def bind(self, message_type: type) -> Any:
                asked.append(message_type.__name__)

                async def specialised(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
                    ran.append(message_type.__name__)
                    return await call_next(message, context)

                return specialised

        bus = CommandBus({CreateUser: CreateUserHandler(), DeleteUser: DeleteUserHandler()}, [PerType()])
        assert sorted(asked) == ["CreateUser", "DeleteUser"]
        for _ in range(3):
            assert (await bus.execute(CreateUser("x"))).is_success
        assert (await bus.execute(DeleteUser(NEW_ID))).is_success
        assert ran == ["CreateUser", "CreateUser", "CreateUser", "DeleteUser"]
        assert sorted(asked) == ["CreateUser", "DeleteUser"]

    def test_a_bind_that_returns_no_callable_is_refused(self) -> None:
        """bind must return a callable step, the behaviour itself, or None."""

        class Broken(Outer):
            def bind(self, message_type: type) -> Any:
                return 42

        with pytest.raises(ConfigurationError, match=r"Broken.bind\(CreateUser\) returned a int"):
            CommandBus({CreateUser: CreateUserHandler()}, [Broken()])

    def test_behaviours_for_an_unrouted_type(self) -> None:
        """behaviours_for a type with no route raises HandlerNotFoundError."""
        with pytest.raises(HandlerNotFoundError):
            CommandBus({}).behaviours_for(CreateUser)


class TestShortCircuit:
    async def test_a_behaviour_returns_its_own_result(self) -> None:
        """A behaviour that returns a Result without calling next stops the pipeline; the bus sets its id."""
        handler = CreateUserHandler()
        journal: list[Recorded] = []

        async def refuse(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
            return Result.failure(OperationStatus.UNAUTHORIZED, {"detail": "no"})

        bus = CommandBus({CreateUser: handler}, [RecordingBehaviour("outer", journal), refuse])
        result = await bus.execute(CreateUser("x"))
        assert result.status is OperationStatus.UNAUTHORIZED
        assert dict(result.errors) == {"detail": "no"}
        assert result.operation_id is not None
        assert result.operation_id == journal[0].context.operation_id
        assert handler.contexts == []
        assert phases(journal) == [("outer", "before"), ("outer", "after")]


class TestImmutableMaps:
    def test_routes_cannot_be_mutated(self) -> None:
        """bus.routes is read-only."""
        bus = CommandBus({CreateUser: CreateUserHandler()})
        with pytest.raises(TypeError):
            bus.routes[DeleteUser] = DeleteUserHandler()  # type: ignore[index]

    def test_behaviours_cannot_be_mutated(self) -> None:
        """bus.behaviours is a tuple."""
        bus = CommandBus({CreateUser: CreateUserHandler()}, [RecordingBehaviour()])
        assert isinstance(bus.behaviours, tuple)

    async def test_the_bus_copied_its_maps(self) -> None:
        """Changing the dict and list given to the bus afterwards changes nothing in it."""
        handlers: dict[type, object] = {CreateUser: CreateUserHandler()}
        journal: list[Recorded] = []
        behaviours: list[object] = [RecordingBehaviour("a", journal)]
        bus = CommandBus(handlers, behaviours)
        handlers[DeleteUser] = DeleteUserHandler()
        handlers[CreateUser] = Raising(RuntimeError("not me"))
        behaviours.append(RecordingBehaviour("b", journal))
        assert DeleteUser not in bus.routes
        with pytest.raises(HandlerNotFoundError):
            await bus.execute(DeleteUser(NEW_ID))
        assert (await bus.execute(CreateUser("x"))).data == NEW_ID
        assert {r.behaviour for r in journal} == {"a"}
        assert len(bus.behaviours) == 1

    def test_no_new_attributes(self) -> None:
        """A bus is slotted: no attribute can be added or replaced from outside."""
        bus = QueryBus({GetUser: GetUserHandler()})
        with pytest.raises(AttributeError):
            bus.extra = 1  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            bus.routes = {}  # type: ignore[misc]


class NotAHandler:
    pass


class SyncHandler:
    def handle(self, message: Any, context: Context) -> int:
        return 1


class NeedsArgument:
    async def __call__(self, message: Any, context: Context) -> Result[Any]:  # one argument short
        raise AssertionError


class QueryOnly:
    def bind(self, message_type: type) -> QueryOnly:
        if not issubclass(message_type, Query):
            raise ConfigurationError("QueryOnly works on Query buses only")
        return self

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        return await call_next(message, context)


class Outer:
    stage = Stage.LOGGING

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        return await call_next(message, context)


class Inner:
    stage = Stage.RETRY

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        return await call_next(message, context)


def sync_behaviour(message: Any, context: Context, call_next: CallNext) -> Any:
    return call_next(message, context)


class TestWiringChecks:
    def test_a_query_key_on_the_command_bus(self) -> None:
        """A Query subclass as a key of the command bus is refused."""
        with pytest.raises(ConfigurationError, match="Command subclasses only"):
            CommandBus({GetUser: GetUserHandler()})

    def test_a_command_key_on_the_query_bus(self) -> None:
        """A Command subclass as a key of the query bus is refused."""
        with pytest.raises(ConfigurationError, match="Query subclasses only"):
            QueryBus({CreateUser: CreateUserHandler()})

    @pytest.mark.parametrize("key", ["CreateUser", CreateUser("x"), int, None])
    def test_a_non_message_class_key(self, key: object) -> None:
        """A key that is not a message class at all is refused on either bus."""
        with pytest.raises(ConfigurationError):
            CommandBus({key: CreateUserHandler()})  # type: ignore[dict-item]
        with pytest.raises(ConfigurationError):
            QueryBus({key: GetUserHandler()})  # type: ignore[dict-item]

    def test_handlers_not_a_mapping(self) -> None:
        """Handlers given as something other than a mapping are refused."""
        with pytest.raises(ConfigurationError, match="mapping"):
            CommandBus([(CreateUser, CreateUserHandler())])  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", [NotAHandler(), 42, "handler"])
    def test_a_value_without_handle(self, value: object) -> None:
        """A handler value with no handle method that is not a factory either is refused."""
        with pytest.raises(ConfigurationError, match="async def handle"):
            CommandBus({CreateUser: value})

    def test_a_sync_handle(self) -> None:
        """A handler whose handle is not a coroutine function is refused."""
        with pytest.raises(ConfigurationError):
            CommandBus({CreateUser: SyncHandler()})

    def test_a_factory_that_needs_arguments(self) -> None:
        """A handler factory that cannot be called without arguments is refused."""

        def factory(users: object) -> CreateUserHandler:
            return CreateUserHandler()

        with pytest.raises(ConfigurationError, match="without arguments"):
            CommandBus({CreateUser: factory})

    @pytest.mark.parametrize("behaviour", [42, "logging", None])
    def test_a_non_callable_behaviour(self, behaviour: object) -> None:
        """A behaviour that cannot be called is refused."""
        with pytest.raises(ConfigurationError, match="not a behaviour"):
            CommandBus({CreateUser: CreateUserHandler()}, [behaviour])

    def test_a_behaviour_class_instead_of_an_instance(self) -> None:
        """Listing a behaviour class where an instance belongs says to instantiate it."""
        with pytest.raises(ConfigurationError, match=r"is a class; list an instance of it: Outer\(\.\.\.\)"):
            CommandBus({CreateUser: CreateUserHandler()}, [Outer])

    def test_a_sync_function_behaviour(self) -> None:
        """A plain (non-async) function as a behaviour is refused."""
        with pytest.raises(ConfigurationError, match="async def"):
            CommandBus({CreateUser: CreateUserHandler()}, [sync_behaviour])

    def test_a_behaviour_with_the_wrong_arity(self) -> None:
        """A behaviour that cannot take (message, context, call_next) is refused."""
        with pytest.raises(ConfigurationError, match="cannot be called"):
            CommandBus({CreateUser: CreateUserHandler()}, [NeedsArgument()])

    def test_a_function_behaviour_with_the_wrong_arity(self) -> None:
        """An async function behaviour with two parameters is refused."""

        async def two(message: Any, context: Context) -> Result[Any]:
            raise AssertionError

        with pytest.raises(ConfigurationError, match="cannot be called"):
            QueryBus({GetUser: GetUserHandler()}, [two])

    def test_a_bind_that_refuses_the_bus_kind(self) -> None:
        """A behaviour for queries only on the command bus is refused; on the query bus it is fine."""
        with pytest.raises(ConfigurationError, match="Query buses only"):
            CommandBus({CreateUser: CreateUserHandler()}, [QueryOnly()])
        QueryBus({GetUser: GetUserHandler()}, [QueryOnly()])

    def test_stage_order_violation(self) -> None:
        """Behaviours listed against the order of their stages are refused; the right order is accepted."""
        with pytest.raises(
            ConfigurationError, match="list Outer before Inner in this CommandBus's behaviours"
        ):
            CommandBus({CreateUser: CreateUserHandler()}, [Inner(), Outer()])
        CommandBus({CreateUser: CreateUserHandler()}, [Outer(), Inner()])
        CommandBus({CreateUser: CreateUserHandler()}, [Inner()])

    def test_checks_run_with_no_routes(self) -> None:
        """Behaviours are checked even on a bus with no routes yet."""
        with pytest.raises(ConfigurationError):
            CommandBus({}, [42])


class TestHandlerNotFound:
    async def test_an_unrouted_type_raises(self) -> None:
        """Dispatching a type with no route raises HandlerNotFoundError carrying that type."""
        bus = CommandBus({CreateUser: CreateUserHandler()})
        with pytest.raises(HandlerNotFoundError) as caught:
            await bus.execute(DeleteUser(NEW_ID))
        assert caught.value.message_type is DeleteUser

    async def test_a_subclass_is_not_routed_by_its_base(self) -> None:
        """Routing is by exact type: a subclass of a routed message has no route."""

        @attrs.frozen
        class SpecialCreate(CreateUser):
            pass

        with pytest.raises(HandlerNotFoundError):
            await CommandBus({CreateUser: CreateUserHandler()}).execute(SpecialCreate("x"))

    async def test_raised_inside_a_handler_it_propagates(self) -> None:
        """HandlerNotFoundError raised by a nested dispatch inside a handler is not turned into a Result."""
        inner = CommandBus({})

        class Nesting:
            async def handle(self, command: CreateUser, context: Context) -> UUID:
                await inner.execute(DeleteUser(NEW_ID), context.child())
                return NEW_ID

        with pytest.raises(HandlerNotFoundError):
            await CommandBus({CreateUser: Nesting()}).execute(CreateUser("x"))

    async def test_configuration_error_inside_a_handler_propagates(self) -> None:
        """ConfigurationError raised during a dispatch propagates."""
        with pytest.raises(ConfigurationError):
            await CommandBus({CreateUser: Raising(ConfigurationError("bad"))}).execute(CreateUser("x"))


class TestDispatchContext:
    async def test_operation_id_and_default_correlation(self) -> None:
        """With no context the handler sees a fresh operation id that is also the correlation id."""
        handler = CreateUserHandler()
        result = await CommandBus({CreateUser: handler}).execute(CreateUser("x"))
        (seen,) = handler.contexts
        assert seen.operation_id == result.operation_id
        assert seen.correlation_id == result.operation_id
        assert seen.principal is None

    async def test_the_callers_context_is_kept_and_not_changed(self) -> None:
        """The handler sees the caller's fields plus an operation id; the caller's context is untouched."""
        handler = CreateUserHandler()
        principal = Principal("u1")
        given = Context(principal, "corr", "cause", "key")
        result = await CommandBus({CreateUser: handler}).execute(CreateUser("x"), given)
        (seen,) = handler.contexts
        assert (seen.principal, seen.correlation_id, seen.causation_id, seen.idempotency_key) == (
            principal,
            "corr",
            "cause",
            "key",
        )
        assert seen.operation_id == result.operation_id
        assert given.operation_id is None

    async def test_each_dispatch_gets_a_new_operation_id(self) -> None:
        """Two dispatches of the same message get different operation ids."""
        bus = QueryBus({GetUser: GetUserHandler()})
        first = await bus.execute(GetUser(NEW_ID))
        second = await bus.execute(GetUser(NEW_ID))
        assert first.operation_id != second.operation_id


class TestHandlerReturns:
    async def test_a_value(self) -> None:
        """A handler's plain value becomes the data of a SUCCESS result."""
        result = await QueryBus({GetUser: GetUserHandler()}).execute(GetUser(NEW_ID))
        assert result.status is OperationStatus.SUCCESS
        assert result.data == "ada"

    async def test_none(self) -> None:
        """A handler returning None gives a SUCCESS result with no data."""
        result = await CommandBus({DeleteUser: DeleteUserHandler()}).execute(DeleteUser(NEW_ID))
        assert result.is_success
        assert result.data is None

    async def test_a_result(self) -> None:
        """A handler's own Result is returned with the operation id filled in."""
        from cqrskit import AffectedEntity

        entity = AffectedEntity("user", "7", "created")

        class Reporting:
            async def handle(self, command: CreateUser, context: Context) -> Result[UUID]:
                return Result.success(NEW_ID, affected_entities=[entity])

        result = await CommandBus({CreateUser: Reporting()}).execute(CreateUser("x"))
        assert result.data == NEW_ID
        assert result.affected_entities == (entity,)
        assert result.operation_id is not None

    async def test_a_failure_result(self) -> None:
        """A handler may return a failure Result; the bus passes it on with its operation id."""

        class Failing:
            async def handle(self, command: CreateUser, context: Context) -> Result[UUID]:
                return Result.failure(OperationStatus.CONFLICT, {"email": "taken"})

        result = await CommandBus({CreateUser: Failing()}).execute(CreateUser("x"))
        assert result.status is OperationStatus.CONFLICT
        assert dict(result.errors) == {"email": "taken"}
        assert result.operation_id is not None

    async def test_a_page(self) -> None:
        """A handler's Page becomes the data and fills in the pagination."""
        result = await QueryBus({ListUsers: ListUsersHandler()}).execute(ListUsers(2))
        assert isinstance(result.data, Page)
        assert result.pagination is not None
        assert (result.pagination.total_pages, result.pagination.has_next) == (3, True)

    async def test_subclasses_of_result_and_page(self) -> None:
        """A handler's subclass of Page or Result is treated as a Page or a Result, behaviours or not."""

        @attrs.frozen
        class UserPage(Page[str]):
            pass

        class TaggedResult(Result[str]):
            pass

        class PageHandler:
            async def handle(self, query: ListUsers, context: Context) -> Page[str]:
                return UserPage(items=("a",), total_count=4, page=1, page_size=1)

        class ResultHandler:
            async def handle(self, query: GetUser, context: Context) -> Result[str]:
                return TaggedResult(OperationStatus.CONFLICT, None)  # type: ignore[arg-type]

        for behaviours in ([], [Outer()]):
            bus = QueryBus({ListUsers: PageHandler(), GetUser: ResultHandler()}, behaviours)
            paged = await bus.execute(ListUsers(1))
            assert paged.pagination is not None
            assert paged.pagination.total_pages == 4
            failed = await bus.execute(GetUser(NEW_ID))
            assert failed.status is OperationStatus.CONFLICT
            assert failed.operation_id is not None


class TestExceptionsBecomeResults:
    @pytest.mark.parametrize(
        ("error", "status", "errors"),
        [
            (NotFoundError("no user 7"), OperationStatus.NOT_FOUND, {"detail": "no user 7"}),
            (ConflictError("taken"), OperationStatus.CONFLICT, {"detail": "taken"}),
            (PermissionDeniedError("no"), OperationStatus.UNAUTHORIZED, {"detail": "no"}),
            (ValidationFailedError({"email": "bad"}), OperationStatus.VALIDATION_ERROR, {"email": "bad"}),
        ],
    )
    async def test_domain_errors(
        self, error: Exception, status: OperationStatus, errors: dict[str, str]
    ) -> None:
        """Each domain error a handler raises becomes its status and caller-facing errors, unlogged."""
        with structlog.testing.capture_logs() as logs:
            result = await CommandBus({CreateUser: Raising(error)}).execute(CreateUser("x"))
        assert result.status is status
        assert dict(result.errors) == errors
        assert result.operation_id is not None
        assert logs == []

    async def test_unwrap_chains_the_exception_behind_a_failed_result(self) -> None:
        """unwrap() of a FAILED Result chains the handler's exception; repr and == do not show it."""
        error = RuntimeError("secret internals")
        bus = CommandBus({CreateUser: Raising(error)})
        with structlog.testing.capture_logs():
            result = await bus.execute(CreateUser("x"))
        with pytest.raises(ResultError) as raised:
            result.unwrap()
        assert raised.value.__cause__ is error
        assert "secret internals" not in repr(result)
        assert result == Result(
            OperationStatus.FAILED, None, result.errors, (), None, None, result.operation_id
        )

    async def test_result_error_keeps_the_inner_status(self) -> None:
        """ResultError raised in a handler (a nested unwrap) keeps the inner status and errors."""
        inner = QueryBus({GetUser: Raising(NotFoundError("no user"))})

        class Nesting:
            async def handle(self, command: CreateUser, context: Context) -> UUID:
                (await inner.execute(GetUser(NEW_ID), context.child())).unwrap()
                return NEW_ID

        result = await CommandBus({CreateUser: Nesting()}).execute(CreateUser("x"))
        assert result.status is OperationStatus.NOT_FOUND
        assert dict(result.errors) == {"detail": "no user"}

    async def test_an_unexpected_exception(self) -> None:
        """An unexpected exception becomes FAILED without its text, logged once with traceback and id."""
        leaked_text = "SELECT password FROM users"
        with structlog.testing.capture_logs() as logs:
            result = await CommandBus({CreateUser: Raising(RuntimeError(leaked_text))}).execute(
                CreateUser("x")
            )
        assert result.status is OperationStatus.FAILED
        assert leaked_text not in repr(dict(result.errors))
        assert "RuntimeError" not in repr(dict(result.errors))
        assert "operation id" in result.errors["detail"]
        assert len(logs) == 1
        (entry,) = logs
        assert entry["log_level"] == "error"
        assert entry["operation_id"] == result.operation_id
        assert entry["message_type"] == "CreateUser"
        assert entry["error_type"] == "RuntimeError"
        assert isinstance(entry["exc_info"], RuntimeError)
        assert entry["exc_info"].__traceback__ is not None

    async def test_logged_once_by_logging_when_it_is_present(self) -> None:
        """An exception that passed through Logging is logged there, with its traceback, and not again."""
        bus = CommandBus({CreateUser: Raising(RuntimeError("x"))}, [Logging()])
        with structlog.testing.capture_logs() as logs:
            result = await bus.execute(CreateUser("x"))
        assert result.status is OperationStatus.FAILED
        tracebacks = [entry for entry in logs if "exc_info" in entry]
        assert [(entry["event"], entry["operation_id"]) for entry in tracebacks] == [
            ("dispatch_completed", result.operation_id)
        ]

    async def test_logged_once_by_the_bus_when_raised_outside_logging(self) -> None:
        """An exception raised by a behaviour listed before Logging skips Logging, so the bus logs it."""

        async def broken(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
            raise RuntimeError("outside")

        bus = CommandBus({CreateUser: CreateUserHandler()}, [broken, Logging()])
        with structlog.testing.capture_logs() as logs:
            result = await bus.execute(CreateUser("x"))
        assert result.status is OperationStatus.FAILED
        assert [(entry["event"], entry["operation_id"]) for entry in logs] == [
            ("dispatch_failed", result.operation_id)
        ]

    async def test_the_same_exception_raised_again_is_logged_again(self) -> None:
        """The mark names its dispatch: an exception object raised by a later dispatch is logged afresh."""
        error = RuntimeError("again")
        bus = CommandBus({CreateUser: Raising(error)}, [Logging()])
        with structlog.testing.capture_logs() as logs:
            first = await bus.execute(CreateUser("x"))
            second = await bus.execute(CreateUser("x"))
        tracebacks = [entry["operation_id"] for entry in logs if "exc_info" in entry]
        assert tracebacks == [first.operation_id, second.operation_id]

    async def test_a_behaviour_that_raises(self) -> None:
        """An exception raised by a behaviour becomes a Result too."""

        async def broken(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
            raise ConflictError("from behaviour")

        result = await CommandBus({CreateUser: CreateUserHandler()}, [broken]).execute(CreateUser("x"))
        assert result.status is OperationStatus.CONFLICT


class TestCancellation:
    async def test_a_cancelled_dispatch_propagates(self) -> None:
        """A dispatch task cancelled while its handler awaits raises CancelledError, not a Result."""
        started = asyncio.Event()

        class Slow:
            async def handle(self, command: CreateUser, context: Context) -> UUID:
                started.set()
                await asyncio.Event().wait()
                raise AssertionError

        journal: list[Recorded] = []
        bus = CommandBus({CreateUser: Slow()}, [RecordingBehaviour("a", journal)])
        task = asyncio.create_task(bus.execute(CreateUser("x")))
        await asyncio.wait_for(started.wait(), timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert isinstance(journal[-1].error, asyncio.CancelledError)

    async def test_a_raised_cancelled_error_propagates(self) -> None:
        """CancelledError raised by a handler is not turned into a Result."""
        with pytest.raises(asyncio.CancelledError):
            await CommandBus({CreateUser: Raising(asyncio.CancelledError())}).execute(CreateUser("x"))


class TestRepr:
    def test_counts(self) -> None:
        """A bus's repr gives its kind and how many routes and behaviours it has."""
        bus = CommandBus({CreateUser: CreateUserHandler()}, [Outer(), Outer()])
        assert repr(bus) == "CommandBus(1 routes, 2 behaviours)"
