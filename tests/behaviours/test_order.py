"""The canonical order of the behaviours (`Stage`), checked when a bus is built, and what it buys."""

from __future__ import annotations

from typing import Any

import pytest
from dependency_injector import containers, providers

from cqrskit import (
    CallNext,
    Command,
    CommandBus,
    ConfigurationError,
    Context,
    OperationStatus,
    Principal,
    Query,
    QueryBus,
    Result,
    Stage,
)
from cqrskit.behaviours import (
    Authorization,
    Logging,
    Public,
    RequirePermissions,
    Retry,
    RetryPolicy,
    Timeout,
    Validation,
)
from cqrskit.scope import TransactionScope, current_transaction
from tests.behaviours.policy_support import Ping, Register

VALID = Register("ada@example.org", "correct horse", 36)
INVALID = Register("nope", "short", -1)
MEMBER = Principal("1", {"user:register"})


class FakeTransaction:
    """A stand-in for the SQLAlchemy Transaction: commands only, at its stage, opens a scope.

    It records each begin, commit and rollback, and raises the errors in `commit_errors` at COMMIT,
    as a serialization failure would.
    """

    stage = Stage.TRANSACTION

    def bind(self, message_type: type) -> FakeTransaction:
        if not issubclass(message_type, Command):
            raise ConfigurationError("FakeTransaction works on Command buses only")
        return self

    def __init__(self, *commit_errors: Exception) -> None:
        self.journal: list[str] = []
        self.commit_errors = list(commit_errors)

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        parent = current_transaction()
        scope = TransactionScope(parent)
        self.journal.append("begin" if parent is None else "savepoint")
        with scope.entered():
            try:
                result = await call_next(message, context)
            except BaseException:
                self.journal.append("rollback")
                raise
        if result.is_failure:
            self.journal.append("rollback")
            return result
        if parent is None and self.commit_errors:
            self.journal.append("rollback")
            raise self.commit_errors.pop(0)
        self.journal.append("commit" if parent is None else "release")
        return result


class SerializationFailure(Exception):
    """Carries SQLSTATE 40001, as a driver's error would."""

    sqlstate = "40001"


class RegisterHandler:
    """Counts its calls and returns the email."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, command: Register, context: Context) -> str:
        self.calls += 1
        return command.email


class NullSleep:
    async def __call__(self, seconds: float) -> None:
        return None


def canonical_container(transaction: FakeTransaction, handler: object) -> containers.DeclarativeContainer:
    class Container(containers.DeclarativeContainer):
        command_bus = providers.Singleton(
            CommandBus,
            handlers=providers.Dict({Register: providers.Object(handler)}),
            behaviours=providers.List(
                providers.Singleton(Timeout, default=10),
                providers.Singleton(Authorization, rules={Register: RequirePermissions("user:register")}),
                providers.Singleton(Validation),
                providers.Singleton(Retry, sleep=NullSleep()),
                providers.Object(transaction),
            ),
        )

    return Container()


class TestStageOrder:
    """Behaviours that declare a `Stage` must be listed in the order of their stages."""

    def test_transaction_before_retry_is_refused(self) -> None:
        """Listing the transaction stand-in before Retry raises one short sentence naming both classes."""
        with pytest.raises(ConfigurationError) as raised:
            CommandBus({Ping: RegisterHandler()}, [FakeTransaction(), Retry()])
        assert str(raised.value) == (
            "Retry must sit outside FakeTransaction: "
            "list Retry before FakeTransaction in this CommandBus's behaviours"
        )

    def test_the_message_names_classes_not_reprs(self) -> None:
        """The message shows class names only, whatever the behaviours' reprs hold."""
        with pytest.raises(ConfigurationError) as raised:
            QueryBus({}, [Validation(), Logging()])
        assert str(raised.value) == (
            "Logging must sit outside Validation: "
            "list Logging before Validation in this QueryBus's behaviours"
        )

    def test_equal_stages_may_sit_in_any_order(self) -> None:
        """Two behaviours of one stage are accepted either way round."""
        CommandBus({Register: RegisterHandler()}, [Logging(), Logging(log_fields=False)])

    def test_an_undeclared_behaviour_may_sit_anywhere(self) -> None:
        """A behaviour with no stage, object or function, is accepted before, between and after others."""

        async def anywhere(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
            return await call_next(message, context)

        class Anywhere:
            async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
                return await call_next(message, context)

        other = Anywhere()
        bus = CommandBus(
            {Register: RegisterHandler()},
            [anywhere, Timeout(1), other, Validation(), anywhere, Retry(), FakeTransaction(), other],
        )
        assert len(bus.behaviours_for(Register)) == 8

    def test_a_wrong_kind_behaviour_is_refused(self) -> None:
        """A behaviour for commands only refuses, from its hook, to sit on a query bus."""

        class Lookup(Query[str]):
            pass

        class LookupHandler:
            async def handle(self, query: Lookup, context: Context) -> str:
                return "x"

        with pytest.raises(ConfigurationError, match="Command buses only"):
            QueryBus({Lookup: LookupHandler()}, [FakeTransaction()])

    def test_transaction_before_retry_with_others_between_is_refused(self) -> None:
        """The check holds however far apart the two are listed."""
        with pytest.raises(ConfigurationError):
            CommandBus({Ping: RegisterHandler()}, [FakeTransaction(), Validation(), Timeout(1), Retry()])

    def test_transaction_after_retry_is_accepted(self) -> None:
        """Retry listed first, the transaction after it: the bus builds."""
        bus = CommandBus({Register: RegisterHandler()}, [Retry(), FakeTransaction()])
        assert [type(b) for b in bus.behaviours_for(Register)] == [Retry, FakeTransaction]

    def test_transaction_without_retry_is_accepted(self) -> None:
        """The order only constrains behaviours that are present."""
        bus = CommandBus({Register: RegisterHandler()}, [FakeTransaction()])
        assert [type(b) for b in bus.behaviours_for(Register)] == [FakeTransaction]

    def test_refused_when_built_from_a_container(self) -> None:
        """A container listing them the wrong way round fails when it builds the bus."""

        class Container(containers.DeclarativeContainer):
            command_bus = providers.Singleton(
                CommandBus,
                handlers=providers.Dict({Register: providers.Factory(RegisterHandler)}),
                behaviours=providers.List(providers.Singleton(FakeTransaction), providers.Singleton(Retry)),
            )

        with pytest.raises(ConfigurationError):
            Container().command_bus()


class TestCanonicalOrder:
    """The canonical order, Timeout, Authorization, Validation, Retry, Transaction, through a real bus."""

    def test_chain_order(self) -> None:
        """The bus keeps the order the container lists."""
        transaction = FakeTransaction()
        bus = canonical_container(transaction, RegisterHandler()).command_bus()
        assert [type(b) for b in bus.behaviours_for(Register)] == [
            Timeout,
            Authorization,
            Validation,
            Retry,
            FakeTransaction,
        ]

    async def test_anonymous_invalid_input_is_unauthenticated(self) -> None:
        """Authorization runs before Validation: an anonymous caller learns nothing about the fields."""
        transaction = FakeTransaction()
        result = await canonical_container(transaction, RegisterHandler()).command_bus().execute(INVALID)
        assert result.status is OperationStatus.UNAUTHENTICATED
        assert "email" not in result.errors
        assert transaction.journal == []

    async def test_invalid_input_opens_no_transaction(self) -> None:
        """Validation runs before Retry and Transaction: no transaction, no retry, for bad input."""
        transaction, handler = FakeTransaction(), RegisterHandler()
        bus = canonical_container(transaction, handler).command_bus()
        result = await bus.execute(INVALID, Context(principal=MEMBER))
        assert result.status is OperationStatus.VALIDATION_ERROR
        assert set(result.errors) == {"email", "password", "age"}
        assert transaction.journal == []
        assert handler.calls == 0

    async def test_a_failure_at_commit_reruns_the_whole_transaction(self) -> None:
        """A serialization failure raised at COMMIT makes Retry run a fresh transaction, which commits."""
        transaction, handler = FakeTransaction(SerializationFailure()), RegisterHandler()
        bus = canonical_container(transaction, handler).command_bus()
        result = await bus.execute(VALID, Context(principal=MEMBER))
        assert result.status is OperationStatus.SUCCESS
        assert transaction.journal == ["begin", "rollback", "begin", "commit"]
        assert handler.calls == 2

    async def test_a_nested_command_does_not_retry_on_its_own(self) -> None:
        """A command dispatched inside another's transaction gets one attempt from its own Retry."""
        inner_calls = 0
        transaction = FakeTransaction()

        class Flaky:
            async def handle(self, command: Ping, context: Context) -> str:
                nonlocal inner_calls
                inner_calls += 1
                raise SerializationFailure

        inner_bus = CommandBus(
            {Ping: Flaky()},
            [
                Authorization({Ping: Public()}),
                Retry(RetryPolicy(max_attempts=5), sleep=NullSleep()),
                transaction,
            ],
        )

        class Outer:
            async def handle(self, command: Register, context: Context) -> str:
                inner = await inner_bus.execute(Ping(), context.child())
                return str(inner.status)

        bus = canonical_container(transaction, Outer()).command_bus()
        result = await bus.execute(VALID, Context(principal=MEMBER))
        assert result.data == "failed"
        assert inner_calls == 1
        assert transaction.journal == ["begin", "savepoint", "rollback", "commit"]
