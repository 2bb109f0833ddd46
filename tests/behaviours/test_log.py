from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars, merge_contextvars
from structlog.testing import LogCapture, capture_logs

from cqrskit import (
    Context,
    NotFoundError,
    OperationStatus,
    Principal,
    QueryBus,
    Result,
    Stage,
    ValidationFailedError,
)
from cqrskit.behaviours import Logging
from tests.behaviours.observed_app import (
    Connect,
    Credentials,
    FindUser,
    ObservedContainer,
    Register,
    events_named,
)

IDS = ("operation_id", "correlation_id", "causation_id", "message_type", "principal_id")
CONTEXT = Context(
    principal=Principal("alice"), correlation_id="corr-1", causation_id="cause-1", operation_id="op-1"
)


@pytest.fixture(autouse=True)
def _clean_contextvars() -> Any:
    clear_contextvars()
    yield
    clear_contextvars()


async def succeed(message: Any, context: Context) -> Result[Any]:
    return Result.success("done")


def filtering_logger(capture: LogCapture, level: int) -> Any:
    """A concrete (not lazy) filtering bound logger that hands its events to `capture`."""
    cls = structlog.make_filtering_bound_logger(level)
    return cls(structlog.PrintLogger(io.StringIO()), [capture], {})


class TestLoggingDirect:
    """Logging called with a fake call_next."""

    async def test_binds_the_ids_for_the_rest_of_the_pipeline(self) -> None:
        """Inside the dispatch the five ids are bound; afterwards the contextvars are as before."""
        seen: dict[str, Any] = {}

        async def call_next(message: Any, context: Context) -> Result[Any]:
            seen.update(get_contextvars())
            return Result.success(None)

        with capture_logs():
            await Logging()(Register("a@example.com", "pw"), CONTEXT, call_next)
        assert seen == {
            "operation_id": "op-1",
            "correlation_id": "corr-1",
            "causation_id": "cause-1",
            "message_type": "Register",
            "principal_id": "alice",
        }
        assert get_contextvars() == {}

    async def test_logs_one_info_event_on_success(self) -> None:
        """A success gives one info event with status, duration and the redacted fields."""
        with capture_logs() as logs:
            result = await Logging()(Register("a@example.com", "hunter2"), CONTEXT, succeed)
        assert result.data == "done"
        (event,) = logs
        assert event["event"] == "dispatch_completed"
        assert event["log_level"] == "info"
        assert event["status"] == "success"
        assert event["duration_ms"] >= 0
        assert event["operation_id"] == "op-1"
        assert event["fields"] == {"email": "a@example.com", "password": "***", "display_name": "someone"}
        assert "exc_info" not in event

    async def test_logs_an_expected_failure_result_as_a_warning(self) -> None:
        """A VALIDATION_ERROR result is a warning naming the bad fields, not their messages."""

        async def invalid(message: Any, context: Context) -> Result[Any]:
            return Result.failure(OperationStatus.VALIDATION_ERROR, {"email": "hunter2 is not an email"})

        with capture_logs() as logs:
            result = await Logging()(Register("hunter2", "hunter2"), CONTEXT, invalid)
        assert result.status is OperationStatus.VALIDATION_ERROR
        (event,) = logs
        assert event["log_level"] == "warning"
        assert event["status"] == "validation_error"
        assert event["error_fields"] == ["email"]
        assert "hunter2" not in repr(event["error_fields"])

    async def test_logs_a_raised_domain_error_as_a_warning_and_reraises_it(self) -> None:
        """A NotFoundError goes on up to the bus; Logging logs it as a warning without traceback."""

        async def missing(message: Any, context: Context) -> Result[Any]:
            raise NotFoundError("no such user")

        with capture_logs() as logs, pytest.raises(NotFoundError):
            await Logging()(FindUser("a@example.com"), CONTEXT, missing)
        (event,) = logs
        assert event["log_level"] == "warning"
        assert event["status"] == "not_found"
        assert event["error_type"] == "NotFoundError"
        assert "exc_info" not in event

    async def test_logs_an_unexpected_exception_with_its_traceback_and_reraises_it(self) -> None:
        """An unexpected exception is logged at error with exc_info, then propagates unchanged."""
        boom = RuntimeError("boom")

        async def broken(message: Any, context: Context) -> Result[Any]:
            raise boom

        with capture_logs() as logs, pytest.raises(RuntimeError) as raised:
            await Logging()(FindUser("a@example.com"), CONTEXT, broken)
        assert raised.value is boom
        (event,) = logs
        assert event["log_level"] == "error"
        assert event["status"] == "failed"
        assert event["error_type"] == "RuntimeError"
        assert event["exc_info"] is boom
        assert get_contextvars() == {}

    async def test_cancellation_restores_the_contextvars_and_propagates(self) -> None:
        """A cancelled dispatch is logged as cancelled, leaves no ids behind and stays cancelled."""

        async def cancelled(message: Any, context: Context) -> Result[Any]:
            raise asyncio.CancelledError

        with capture_logs() as logs, pytest.raises(asyncio.CancelledError):
            await Logging()(FindUser("a@example.com"), CONTEXT, cancelled)
        assert get_contextvars() == {}
        (event,) = logs
        assert (event["status"], event["log_level"]) == ("cancelled", "warning")

    async def test_restores_ids_an_outer_dispatch_had_bound(self) -> None:
        """A nested dispatch rebinds the ids and puts the outer ones back when it ends."""
        bind_contextvars(operation_id="outer", principal_id="bob", request_path="/users")
        inner = Context(operation_id="inner")  # anonymous: principal_id must not stay "bob"
        seen: dict[str, Any] = {}

        async def call_next(message: Any, context: Context) -> Result[Any]:
            seen.update(get_contextvars())
            return Result.success(None)

        with capture_logs():
            await Logging()(FindUser("x"), inner, call_next)
        assert seen["operation_id"] == "inner"
        assert seen["principal_id"] is None
        assert get_contextvars() == {"operation_id": "outer", "principal_id": "bob", "request_path": "/users"}

    async def test_redacts_sensitive_fields_whatever_their_repr_and_nesting(self) -> None:
        """A sensitive field nested in a value object is redacted too."""
        with capture_logs() as logs:
            await Logging()(Connect(Credentials("alice", "s3cret-token")), CONTEXT, succeed)
        (event,) = logs
        assert event["fields"] == {"credentials": {"username": "alice", "secret": "***"}}
        assert "s3cret-token" not in repr(logs)

    async def test_leaves_fields_out_when_asked(self) -> None:
        """With log_fields=False the event carries no message fields."""
        with capture_logs() as logs:
            await Logging(log_fields=False)(Register("a@example.com", "pw"), CONTEXT, succeed)
        assert "fields" not in logs[0]

    @pytest.mark.parametrize("lazy", [True, False], ids=["lazy proxy", "bound logger"])
    async def test_a_logger_filtered_at_warning_logs_failures_only(self, lazy: bool) -> None:
        """With the logger filtered at warning a success logs nothing, a failure still logs."""
        capture = LogCapture()
        if lazy:
            logger = structlog.wrap_logger(
                structlog.PrintLogger(io.StringIO()),
                processors=[capture],
                wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            )
        else:
            logger = filtering_logger(capture, logging.WARNING)

        async def missing(message: Any, context: Context) -> Result[Any]:
            raise ValidationFailedError({"email": "bad"})

        behaviour = Logging(logger)
        await behaviour(FindUser("x"), CONTEXT, succeed)
        assert capture.entries == []
        with pytest.raises(ValidationFailedError):
            await behaviour(FindUser("x"), CONTEXT, missing)
        assert [e["status"] for e in capture.entries] == ["validation_error"]

    async def test_the_default_logger_follows_a_later_change_of_level(self) -> None:
        """Logging() keeps structlog's lazy logger and honours a level configured after it was built."""
        behaviour = Logging()
        saved = structlog.get_config()
        made: list[object] = []

        def counting_factory(*_args: object) -> Any:
            made.append(None)
            return structlog.PrintLogger(io.StringIO())

        try:
            structlog.configure(
                wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                logger_factory=counting_factory,
            )
            with capture_logs() as quiet:
                for _ in range(3):
                    await behaviour(FindUser("x"), CONTEXT, succeed)
            # Successes with info off resolve the lazy logger once, not once per dispatch.
            assert len(made) == 1
            structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
            with capture_logs() as loud:
                await behaviour(FindUser("x"), CONTEXT, succeed)
        finally:
            structlog.configure(**saved)
        assert quiet == []
        assert [(e["event"], e["log_level"]) for e in loud] == [("dispatch_completed", "info")]

    def test_describe_names_the_redacted_fields(self) -> None:
        """describe() shows, per message type, which fields never reach the logs."""
        behaviour = Logging(log_fields=True)
        assert behaviour.describe(Register)["redacted_fields"] == ("password",)
        assert behaviour.describe(FindUser)["redacted_fields"] == ()

    def test_repr_and_stage(self) -> None:
        """The repr shows the settings; Logging declares its stage and stays in every pipeline."""
        assert (
            repr(Logging(log_fields=False))
            == "Logging(logger=structlog.get_logger('cqrskit'), log_fields=False)"
        )
        assert Logging.stage is Stage.LOGGING
        behaviour = Logging()
        assert behaviour.bind(Register) is behaviour


class TestLoggingThroughTheBus:
    """Logging in a CommandBus and a QueryBus built from a DeclarativeContainer."""

    async def test_every_log_line_of_the_dispatch_carries_the_ids(self) -> None:
        """The handler's own log line and the completion event both carry the dispatch's ids."""
        bus = ObservedContainer().command_bus()
        context = Context(principal=Principal("alice"), correlation_id="req-7")
        with capture_logs(processors=[merge_contextvars]) as logs:
            result = await bus.execute(Register("a@example.com", "pw"), context)
        assert result.is_success
        handler_event = events_named(logs, "registering")[0]
        (completed,) = events_named(logs, "dispatch_completed")
        for event in (handler_event, completed):
            assert event["operation_id"] == result.operation_id
            assert event["correlation_id"] == "req-7"
            assert event["principal_id"] == "alice"
            assert event["message_type"] == "Register"
        assert get_contextvars() == {}

    async def test_a_thousand_concurrent_dispatches_keep_their_own_ids(self) -> None:
        """1,000 interleaved dispatches: every line the handler logs carries its own dispatch's ids."""

        class Chatty:
            async def handle(self, query: FindUser, context: Context) -> str:
                structlog.get_logger("test").info("looking", email=query.email)
                await asyncio.sleep(0)
                structlog.get_logger("test").info("found", email=query.email)
                return query.email

        bus = QueryBus({FindUser: Chatty()}, [Logging()])
        count = 1_000
        with capture_logs(processors=[merge_contextvars]) as logs:
            results = await asyncio.gather(
                *(bus.execute(FindUser(f"{n}"), Context(correlation_id=f"req-{n}")) for n in range(count))
            )
        operation_ids = {result.data: result.operation_id for result in results}
        assert len(set(operation_ids.values())) == count
        handler_lines = [e for e in logs if e["event"] in {"looking", "found"}]
        assert len(handler_lines) == 2 * count
        assert [e["event"] for e in handler_lines[:2]] == ["looking", "looking"]  # they interleaved
        for entry in handler_lines:
            assert entry["operation_id"] == operation_ids[entry["email"]]
            assert entry["correlation_id"] == f"req-{entry['email']}"
        assert len(events_named(logs, "dispatch_completed")) == count
        assert get_contextvars() == {}

    async def test_a_query_is_logged_with_its_status(self) -> None:
        """A query that finds nothing is logged as a not_found warning, and the caller gets NOT_FOUND."""
        bus = ObservedContainer().query_bus()
        with capture_logs(processors=[merge_contextvars]) as logs:
            result = await bus.execute(FindUser("nobody@example.com"))
        assert result.status is OperationStatus.NOT_FOUND
        (completed,) = events_named(logs, "dispatch_completed")
        assert (completed["status"], completed["log_level"]) == ("not_found", "warning")
        assert completed["operation_id"] == result.operation_id

    async def test_contextvars_are_empty_after_a_failed_dispatch(self) -> None:
        """An unexpected error becomes FAILED and leaves no ids bound."""
        bus = ObservedContainer().command_bus()
        with capture_logs():
            result = await bus.execute(Register("boom@example.com", "pw"))
        assert result.status is OperationStatus.FAILED
        assert get_contextvars() == {}

    async def test_contextvars_are_empty_after_a_cancelled_dispatch(self) -> None:
        """Cancelling the task running a dispatch leaves no ids bound in that task."""
        container = ObservedContainer()
        bus = container.command_bus()
        hang = container.hang()
        after: dict[str, Any] = {"seen": None}

        async def run() -> None:
            try:
                await bus.execute(Register("hang@example.com", "pw"))
            except asyncio.CancelledError:
                after["seen"] = get_contextvars()
                raise

        with capture_logs() as logs:
            task = asyncio.create_task(run())
            await asyncio.wait_for(hang.entered.wait(), timeout=5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert after["seen"] == {}
        assert hang.cancelled
        assert events_named(logs, "dispatch_completed")[0]["status"] == "cancelled"

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(password=st.text(min_size=8, max_size=40))
    async def test_a_password_never_appears_in_any_captured_text(self, password: str) -> None:
        """Whatever the password, no captured event, success or failure, contains it."""
        # Strings made only of id or number characters could occur in ids and durations by chance.
        assume(not set(password) <= set("0123456789abcdef-.:e+ "))
        assume(password.strip())
        bus = ObservedContainer().command_bus()
        with capture_logs(processors=[merge_contextvars]) as logs:
            for email in ("ok@example.com", "taken@example.com", "boom@example.com"):
                await bus.execute(Register(email, password), Context(principal=Principal("alice")))
        # Text no password can have put there (keys, levels, statuses, type names, the other fields):
        # a generated password that happens to be part of it proves nothing either way.
        fixed_keys = ("event", "log_level", "status", "error_type", "message_type", "email", "exc_info")
        known = " ".join(
            [repr(key) for event in logs for key in event]
            + [repr(event.get(key)) for event in logs for key in fixed_keys]
            + ["Register someone alice '***'"]
        )
        assume(password not in known)
        assert len(events_named(logs, "dispatch_completed")) == 3
        for event in logs:
            assert password not in repr(event)
            assert password not in str(event)
        assert get_contextvars() == {}
