"""Retry, RetryPolicy and the default transient-error classifier."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from typing import Any

import pytest
from dependency_injector import containers, providers
from structlog.testing import capture_logs

from cqrskit import (
    CommandBus,
    ConfigurationError,
    ConflictError,
    Context,
    NotFoundError,
    OperationStatus,
    PermissionDeniedError,
    Result,
    ResultError,
    Stage,
)
from cqrskit.behaviours import Retry, RetryPolicy, is_transient
from cqrskit.scope import TransactionScope
from cqrskit.sqlalchemy import CommitOutcomeUnknownError
from tests.behaviours.policy_support import CONTEXT, CallNextStub, FlakyHandler, Ping, ok


class FakeDriverError(Exception):
    """Stands in for a driver exception carrying SQLSTATE in some attribute."""

    def __init__(self, message: str = "driver error", **attributes: Any) -> None:
        super().__init__(message)
        for name, value in attributes.items():
            setattr(self, name, value)


class FakeWrapperError(Exception):
    """Stands in for SQLAlchemy's DBAPIError: the driver error in `orig`."""

    def __init__(self, orig: BaseException | None = None, *, connection_invalidated: bool = False) -> None:
        super().__init__("wrapped")
        self.orig = orig
        self.connection_invalidated = connection_invalidated
        self.code = "e3q8"  # SQLAlchemy's own error code, which is not an SQLSTATE


class ConnectionDoesNotExistError(Exception):
    """Named like asyncpg's error for a connection that went away."""


def serialization_failure() -> Exception:
    return FakeDriverError("could not serialize access", sqlstate="40001")


class RecordingSleep:
    """An injected sleep that records its arguments and returns at once."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


def failing_then(result: Result[Any] | None, *errors: Exception) -> CallNextStub:
    """A call_next raising `errors` in turn, then returning `result`."""
    pending = list(errors)

    async def action() -> Result[Any]:
        if pending:
            raise pending.pop(0)
        assert result is not None
        return result

    return CallNextStub(action)


class TestRetryPolicy:
    """RetryPolicy validates its values and computes the backoff ceiling."""

    def test_defaults(self) -> None:
        """The defaults are those the design states."""
        policy = RetryPolicy()
        assert (policy.max_attempts, policy.delay, policy.backoff, policy.max_delay) == (3, 0.05, 2.0, 2.0)
        assert policy.jitter is True
        assert policy.retry_on == ()

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"max_attempts": 0},
            {"max_attempts": 1.5},
            {"max_attempts": True},
            {"delay": -0.1},
            {"delay": float("nan")},
            {"delay": "1"},
            {"backoff": 0.5},
            {"max_delay": float("inf")},
            {"retry_on": (asyncio.CancelledError,)},
            {"retry_on": (KeyboardInterrupt,)},
            {"retry_on": ("ValueError",)},
        ],
    )
    def test_invalid_values_raise_configuration_error(self, kwargs: dict[str, Any]) -> None:
        """Each invalid setting is refused at construction with ConfigurationError."""
        with pytest.raises(ConfigurationError):
            RetryPolicy(**kwargs)

    def test_ceiling_grows_and_is_capped(self) -> None:
        """The ceiling is delay * backoff**n, capped at max_delay, and never overflows."""
        policy = RetryPolicy(delay=0.1, backoff=3, max_delay=1.0)
        assert [policy.ceiling(n) for n in range(4)] == pytest.approx([0.1, 0.3, 0.9, 1.0])
        assert policy.ceiling(100_000) == 1.0

    def test_retry_on_becomes_a_tuple(self) -> None:
        """retry_on accepts any iterable of exception types and stores a tuple."""
        assert RetryPolicy(retry_on=[TimeoutError]).retry_on == (TimeoutError,)


class TestIsTransient:
    """is_transient recognises transient database and connection errors by duck typing."""

    @pytest.mark.parametrize(
        "exc",
        [
            FakeDriverError(sqlstate="40001"),
            FakeDriverError(sqlstate="40P01"),
            FakeDriverError(pgcode="40001"),
            FakeDriverError(code="40P01"),
            FakeDriverError(sqlstate="08006"),
            FakeDriverError(sqlstate="57P01"),
            FakeWrapperError(orig=FakeDriverError(pgcode="40P01")),
            FakeWrapperError(connection_invalidated=True),
            sqlite3.OperationalError("database is locked"),
            sqlite3.OperationalError("database table is locked"),
            FakeDriverError(sqlite_errorcode=5),
            FakeDriverError(sqlite_errorcode=6),
            FakeDriverError(sqlite_errorcode=517),  # SQLITE_BUSY_SNAPSHOT, an extended busy code
            ConnectionResetError(),
            ConnectionRefusedError(),
            BrokenPipeError(),
            OSError(errno.ECONNREFUSED, "connection refused"),
            ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ],
        ids=repr,
    )
    def test_transient(self, exc: BaseException) -> None:
        """Each of these is transient on its own."""
        assert is_transient(exc)

    @pytest.mark.parametrize(
        "exc",
        [
            ValueError("bad"),
            FakeDriverError(sqlstate="23505"),  # unique violation
            FakeDriverError(sqlstate="40003"),  # statement completion unknown
            FakeDriverError(code=40001),  # an int code is not an SQLSTATE
            FakeWrapperError(orig=FakeDriverError(sqlstate="42P01")),
            FakeWrapperError(connection_invalidated=False),
            sqlite3.OperationalError("no such table: users"),
            sqlite3.IntegrityError("UNIQUE constraint failed"),
            FakeDriverError(sqlite_errorcode=19),
            FileNotFoundError(errno.ENOENT, "missing"),
            TimeoutError(),
            PermissionDeniedError("no"),
            NotFoundError("gone"),
            asyncio.CancelledError(),
        ],
        ids=repr,
    )
    def test_not_transient(self, exc: BaseException) -> None:
        """Each of these is not transient."""
        assert not is_transient(exc)

    def test_found_along_the_cause_chain(self) -> None:
        """A transient error two causes down makes the outer one transient."""
        try:
            try:
                raise serialization_failure()
            except Exception as inner:
                raise FakeWrapperError from inner
        except Exception as middle:
            outer = RuntimeError("handler failed")
            outer.__cause__ = middle
        assert is_transient(outer)

    def test_found_along_the_context_chain(self) -> None:
        """A transient error being handled when another was raised counts too."""
        try:
            try:
                raise sqlite3.OperationalError("database is locked")
            except sqlite3.OperationalError:
                raise RuntimeError("while handling") from None
        except RuntimeError as exc:
            caught = exc
        # `from None` suppresses display, not the link
        assert caught.__context__ is not None
        assert is_transient(caught)

    def test_commit_outcome_unknown_is_never_transient(self) -> None:
        """A connection lost during COMMIT is not transient, whatever its cause."""
        exc = CommitOutcomeUnknownError("lost during commit")
        exc.__cause__ = FakeWrapperError(orig=ConnectionResetError(), connection_invalidated=True)
        assert not is_transient(exc)
        outer = RuntimeError("wrapping it")
        outer.__cause__ = exc
        assert not is_transient(outer)

    def test_expected_outcomes_are_not_transient_whatever_their_cause(self) -> None:
        """A DomainError, or a ResultError of an expected outcome, is not transient whatever its cause."""
        for outcome in (
            ConflictError("version changed"),
            ResultError(Result.failure(OperationStatus.CONFLICT)),
            ResultError(Result.failure(OperationStatus.NOT_FOUND)),
        ):
            outcome.__cause__ = serialization_failure()
            assert not is_transient(outcome)

    def test_an_unwrapped_nested_failure_is_transient_when_its_cause_is(self) -> None:
        """A ResultError of a FAILED Result is transient exactly when the error behind it is."""
        transient = ResultError(Result.failure(OperationStatus.FAILED))
        transient.__cause__ = serialization_failure()
        assert is_transient(transient)
        plain = ResultError(Result.failure(OperationStatus.FAILED))
        plain.__cause__ = KeyError("a bug")
        assert not is_transient(plain)
        assert not is_transient(ResultError(Result.failure(OperationStatus.FAILED)))

    def test_cycles_and_long_chains_end(self) -> None:
        """A cyclic or very long chain is walked a bounded number of steps."""
        first, second = ValueError("a"), ValueError("b")
        first.__context__, second.__context__ = second, first
        assert not is_transient(first)
        head: BaseException = ValueError("0")
        current = head
        for n in range(1000):
            nxt = ValueError(str(n))
            current.__cause__ = nxt
            current = nxt
        current.__cause__ = serialization_failure()
        assert not is_transient(head)  # too deep to be seen: not retried rather than walked forever


class TestRetry:
    """Retry called directly with a fake call_next."""

    @pytest.mark.parametrize("failures", [1, 2, 4])
    async def test_transient_failures_then_success(self, failures: int) -> None:
        """k transient errors then success take k + 1 attempts and return SUCCESS."""
        call_next = failing_then(ok("done"), *(serialization_failure() for _ in range(failures)))
        retry = Retry(RetryPolicy(max_attempts=5), sleep=RecordingSleep())
        result = await retry(Ping(), CONTEXT, call_next)
        assert result.status is OperationStatus.SUCCESS
        assert result.data == "done"
        assert call_next.calls == failures + 1

    async def test_non_transient_error_runs_once(self) -> None:
        """An error the classifier does not call transient propagates after one attempt."""
        error = ValueError("bug")
        call_next = failing_then(ok(), error)
        sleep = RecordingSleep()
        with pytest.raises(ValueError, match="bug") as caught:
            await Retry(sleep=sleep)(Ping(), CONTEXT, call_next)
        assert caught.value is error
        assert call_next.calls == 1
        assert sleep.pauses == []

    async def test_exhausted_raises_the_last_exception(self) -> None:
        """When every attempt fails, the last attempt's exception propagates, free of the earlier ones."""
        errors = [serialization_failure() for _ in range(3)]
        call_next = failing_then(ok(), *errors)
        with pytest.raises(FakeDriverError) as caught:
            await Retry(RetryPolicy(max_attempts=3), sleep=RecordingSleep())(Ping(), CONTEXT, call_next)
        assert caught.value is errors[-1]
        assert caught.value.__context__ is None
        assert call_next.calls == 3

    async def test_sleeps_within_full_jitter_bounds(self) -> None:
        """Each pause is random() times min(max_delay, delay * backoff**n)."""
        draws = iter([0.5, 0.25, 0.999, 0.0])
        sleep = RecordingSleep()
        retry = Retry(
            RetryPolicy(max_attempts=5, delay=0.1, backoff=2.0, max_delay=0.3),
            sleep=sleep,
            random=lambda: next(draws),
        )
        call_next = failing_then(ok(), *(serialization_failure() for _ in range(4)))
        await retry(Ping(), CONTEXT, call_next)
        assert sleep.pauses == pytest.approx([0.05, 0.05, 0.2997, 0.0])

    async def test_real_random_source_stays_within_bounds(self) -> None:
        """With the default random source every pause lies in [0, ceiling)."""
        sleep = RecordingSleep()
        policy = RetryPolicy(max_attempts=8, delay=0.01, backoff=3.0, max_delay=0.5)
        call_next = failing_then(ok(), *(serialization_failure() for _ in range(7)))
        await Retry(policy, sleep=sleep)(Ping(), CONTEXT, call_next)
        assert len(sleep.pauses) == 7
        for n, pause in enumerate(sleep.pauses):
            assert 0 <= pause < policy.ceiling(n)

    async def test_without_jitter_sleeps_the_ceiling(self) -> None:
        """With jitter off each pause is exactly the ceiling."""
        sleep = RecordingSleep()
        policy = RetryPolicy(max_attempts=4, delay=0.1, backoff=2.0, max_delay=0.3, jitter=False)
        await Retry(policy, sleep=sleep)(Ping(), CONTEXT, failing_then(ok(), *(ConnectionResetError(),) * 3))
        assert sleep.pauses == pytest.approx([0.1, 0.2, 0.3])

    async def test_a_failure_result_is_never_retried(self) -> None:
        """A failure Result (validation, authorization, not found) is returned as is, after one attempt."""
        failure = Result.failure(OperationStatus.UNAUTHORIZED, {"detail": "no"})
        call_next = failing_then(failure)
        result = await Retry(sleep=RecordingSleep())(Ping(), CONTEXT, call_next)
        assert result is failure
        assert call_next.calls == 1

    async def test_retry_on_adds_types(self) -> None:
        """A type named in retry_on is retried although the classifier does not know it."""
        call_next = failing_then(ok(), TimeoutError(), TimeoutError())
        retry = Retry(RetryPolicy(retry_on=(TimeoutError,)), sleep=RecordingSleep())
        assert (await retry(Ping(), CONTEXT, call_next)).is_success
        assert call_next.calls == 3

    async def test_retry_on_can_name_an_expected_outcome(self) -> None:
        """A DomainError named in retry_on is retried (optimistic concurrency, say)."""
        call_next = failing_then(ok(), ConflictError("version changed"))
        retry = Retry(RetryPolicy(retry_on=(ConflictError,)), sleep=RecordingSleep())
        assert (await retry(Ping(), CONTEXT, call_next)).is_success
        assert call_next.calls == 2

    async def test_commit_outcome_unknown_is_not_retried_even_if_named(self) -> None:
        """A commit with an unknown outcome is never retried, even when retry_on names its type."""
        exc = CommitOutcomeUnknownError("lost during commit")
        exc.__cause__ = ConnectionResetError()
        call_next = failing_then(ok(), exc)
        retry = Retry(RetryPolicy(retry_on=(Exception,)), sleep=RecordingSleep())
        with pytest.raises(CommitOutcomeUnknownError):
            await retry(Ping(), CONTEXT, call_next)
        assert call_next.calls == 1

    async def test_custom_classifier(self) -> None:
        """A classifier given replaces is_transient."""
        call_next = failing_then(ok(), KeyError("x"))
        retry = Retry(classifier=lambda exc: isinstance(exc, KeyError), sleep=RecordingSleep())
        assert (await retry(Ping(), CONTEXT, call_next)).is_success
        assert call_next.calls == 2
        with pytest.raises(FakeDriverError):
            await retry(Ping(), CONTEXT, failing_then(ok(), serialization_failure()))

    async def test_cancellation_from_call_next_is_not_retried(self) -> None:
        """A CancelledError raised by the rest of the pipeline propagates after one attempt."""

        async def cancelled() -> Result[Any]:
            raise asyncio.CancelledError

        call_next = CallNextStub(cancelled)
        with pytest.raises(asyncio.CancelledError):
            await Retry(classifier=lambda exc: True, sleep=RecordingSleep())(Ping(), CONTEXT, call_next)
        assert call_next.calls == 1

    async def test_cancellation_during_backoff_propagates(self) -> None:
        """Cancelling the dispatch while it sleeps between attempts propagates CancelledError."""
        sleeping = asyncio.Event()

        async def sleep_forever(seconds: float) -> None:
            sleeping.set()
            await asyncio.Event().wait()

        call_next = failing_then(ok(), serialization_failure())
        task = asyncio.create_task(Retry(sleep=sleep_forever)(Ping(), CONTEXT, call_next))
        await asyncio.wait_for(sleeping.wait(), timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
        assert call_next.calls == 1

    async def test_passes_through_inside_a_joined_transaction(self) -> None:
        """Inside an open transaction scope (a nested command) it makes one attempt only."""
        call_next = failing_then(ok(), serialization_failure())
        with TransactionScope().entered(), pytest.raises(FakeDriverError):
            await Retry(sleep=RecordingSleep())(Ping(), CONTEXT, call_next)
        assert call_next.calls == 1

    async def test_per_message_policy_overrides_default(self) -> None:
        """A per-message policy replaces the default for that type only."""
        retry = Retry(RetryPolicy(max_attempts=2), per_message={Ping: RetryPolicy(max_attempts=4)})
        assert retry.policy_for(Ping).max_attempts == 4
        assert retry.policy_for(object).max_attempts == 2

    def test_binds_only_when_it_can_retry(self) -> None:
        """A policy of one attempt leaves Retry out of the pipeline."""
        retry = Retry(per_message={Ping: RetryPolicy(max_attempts=1)})
        assert retry.bind(Ping) is None
        assert retry.bind(object) is not None

    def test_describe_gives_the_policy(self) -> None:
        """describe() gives the policy's values and the classifier."""
        described = Retry(per_message={Ping: RetryPolicy(max_attempts=7, retry_on=(TimeoutError,))}).describe(
            Ping
        )
        assert described["max_attempts"] == 7
        assert described["retry_on"] == ["builtins.TimeoutError"]
        assert described["classifier"] == "is_transient"

    @pytest.mark.parametrize(
        ("args", "kwargs"),
        [
            (({"max_attempts": 2},), {}),
            ((), {"per_message": {Ping: 3}}),
            ((), {"per_message": {"Ping": RetryPolicy()}}),
            ((), {"classifier": "is_transient"}),
        ],
    )
    def test_bad_configuration(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Settings of the wrong kind raise ConfigurationError at construction."""
        with pytest.raises(ConfigurationError):
            Retry(*args, **kwargs)

    async def test_each_retry_logs_a_warning(self) -> None:
        """Every retry logs a warning with the message type, the attempt and the error type."""
        call_next = failing_then(ok(), serialization_failure(), ConnectionResetError())
        with capture_logs() as logs:
            await Retry(sleep=RecordingSleep())(Ping(), CONTEXT, call_next)
        assert [(e["log_level"], e["attempt"], e["error_type"]) for e in logs] == [
            ("warning", 1, "FakeDriverError"),
            ("warning", 2, "ConnectionResetError"),
        ]
        assert all(e["message_type"] == "Ping" and e["operation_id"] == "op-test" for e in logs)

    def test_repr(self) -> None:
        """The repr shows the default and the per-message policies."""
        text = repr(Retry(per_message={Ping: RetryPolicy(max_attempts=1)}))
        assert "Ping: RetryPolicy(max_attempts=1" in text


class InsideRetry:
    """A stand-in for Transaction: it declares the transaction's stage, inside Retry."""

    stage = Stage.TRANSACTION

    async def __call__(self, message: Any, context: Context, call_next: Any) -> Result[Any]:
        return await call_next(message, context)


def make_container(handler: object, *behaviours: object) -> containers.DeclarativeContainer:
    class Container(containers.DeclarativeContainer):
        command_bus = providers.Singleton(
            CommandBus,
            handlers=providers.Dict({Ping: providers.Object(handler)}),
            behaviours=providers.List(*(providers.Object(b) for b in behaviours)),
        )

    return Container()


class TestRetryOnABus:
    """Retry inside a bus built from a DeclarativeContainer."""

    async def test_transient_then_success(self) -> None:
        """A handler failing twice transiently succeeds on the third attempt."""
        handler = FlakyHandler(serialization_failure(), sqlite3.OperationalError("database is locked"))
        container = make_container(handler, Retry(sleep=RecordingSleep()))
        result = await container.command_bus().execute(Ping())
        assert result.status is OperationStatus.SUCCESS
        assert handler.calls == 3

    async def test_exhausted_becomes_failed(self) -> None:
        """When the attempts run out the bus turns the last exception into FAILED."""
        handler = FlakyHandler(*(serialization_failure() for _ in range(5)))
        container = make_container(handler, Retry(RetryPolicy(max_attempts=2), sleep=RecordingSleep()))
        result = await container.command_bus().execute(Ping())
        assert result.status is OperationStatus.FAILED
        assert handler.calls == 2

    async def test_bus_with_real_sleep(self) -> None:
        """With the real asyncio.sleep and tiny delays the retries still happen."""
        handler = FlakyHandler(ConnectionResetError())
        container = make_container(handler, Retry(RetryPolicy(delay=0.001)))
        assert (await container.command_bus().execute(Ping())).is_success
        assert handler.calls == 2

    def test_a_behaviour_at_a_later_stage_must_follow_retry(self) -> None:
        """A behaviour at Stage.TRANSACTION listed before Retry is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="list Retry before InsideRetry"):
            make_container(FlakyHandler(), InsideRetry(), Retry()).command_bus()

    async def test_a_behaviour_at_a_later_stage_after_retry_is_accepted(self) -> None:
        """The same behaviour listed after Retry builds, and every attempt goes through it."""
        handler = FlakyHandler(serialization_failure())
        container = make_container(handler, Retry(sleep=RecordingSleep()), InsideRetry())
        bus = container.command_bus()
        assert [type(b) for b in bus.behaviours_for(Ping)] == [Retry, InsideRetry]
        assert (await bus.execute(Ping())).is_success
        assert handler.calls == 2
