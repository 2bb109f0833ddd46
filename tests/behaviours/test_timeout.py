"""Timeout (its deadline queue's unit tests are in test_deadlines.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from dependency_injector import containers, providers

from cqrskit import CommandBus, ConfigurationError, Context, OperationStatus, Result
from cqrskit.behaviours import Retry, RetryPolicy, Timeout
from tests.behaviours.policy_support import CONTEXT, CallNextStub, Ping, Sleep, ok

BOUND = 10  # seconds: a generous bound on anything the tests wait for
SHORT = 0.05  # a deadline that expires quickly


class SleepyHandler:
    """Sleeps for the command's seconds (forever when None) and records whether it was cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def handle(self, command: Sleep, context: Context) -> str:
        self.started.set()
        try:
            if command.seconds is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(command.seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "awake"


def handler_step(handler: SleepyHandler) -> CallNextStub:
    """A fake call_next that runs `handler` on a Sleep command."""

    async def action() -> Result[Any]:
        return Result.success(await handler.handle(Sleep(), CONTEXT))

    return CallNextStub(action)


async def bounded(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, timeout=BOUND)


class TestTimeout:
    """Timeout called directly with a fake call_next."""

    async def test_sleeping_forever_times_out(self) -> None:
        """A handler that never finishes gives TIMEOUT, and it saw the cancellation."""
        handler = SleepyHandler()
        result = await bounded(Timeout(SHORT)(Sleep(), CONTEXT, handler_step(handler)))
        assert result.status is OperationStatus.TIMEOUT
        assert "0.05 seconds" in result.errors["detail"]
        assert handler.cancelled
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0

    async def test_a_quick_dispatch_returns_its_result(self) -> None:
        """A dispatch within its deadline returns its own Result, uncancelled."""
        expected = ok("fast")
        result = await Timeout(BOUND)(Ping(), CONTEXT, CallNextStub(lambda: _return(expected)))
        assert result is expected

    async def test_the_handlers_own_timeout_error_is_not_timeout(self) -> None:
        """A TimeoutError the handler raises itself travels up as an exception, not as TIMEOUT."""

        async def raise_timeout() -> Result[Any]:
            raise TimeoutError("the payment service did not answer")

        with pytest.raises(TimeoutError, match="payment service"):
            await Timeout(BOUND)(Ping(), CONTEXT, CallNextStub(raise_timeout))

    async def test_an_outside_cancellation_propagates(self) -> None:
        """Cancelling the dispatch from outside propagates CancelledError, not TIMEOUT."""
        handler = SleepyHandler()
        task = asyncio.create_task(Timeout(BOUND)(Sleep(), CONTEXT, handler_step(handler)))
        await bounded(handler.started.wait())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bounded(task)
        assert task.cancelled()
        assert handler.cancelled

    async def test_outside_cancellation_after_the_deadline_still_propagates(self) -> None:
        """When the deadline fired and the dispatch is also cancelled from outside, cancellation wins."""
        swallowed = asyncio.Event()

        async def stubborn() -> Result[Any]:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                swallowed.set()  # the deadline's cancellation, swallowed
            await asyncio.Event().wait()  # now only an outside cancellation ends this
            return ok()

        task = asyncio.create_task(Timeout(SHORT)(Ping(), CONTEXT, CallNextStub(stubborn)))
        await bounded(swallowed.wait())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bounded(task)
        assert task.cancelled()

    async def test_a_handler_that_swallows_the_cancellation_keeps_its_result(self) -> None:
        """A handler that catches the deadline's cancellation and finishes returns its own Result."""

        async def finishes_anyway() -> Result[Any]:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
            return ok("finished")

        result = await bounded(Timeout(SHORT)(Ping(), CONTEXT, CallNextStub(finishes_anyway)))
        assert result.data == "finished"
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0

    async def test_a_cancellation_turned_into_another_error_travels_up(self) -> None:
        """A handler that turns the deadline's cancellation into another exception lets it propagate."""

        async def converts() -> Result[Any]:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise RuntimeError("cleanup failed") from None
            return ok()

        with pytest.raises(RuntimeError, match="cleanup failed"):
            await bounded(Timeout(SHORT)(Ping(), CONTEXT, CallNextStub(converts)))

    async def test_nested_inner_deadline(self) -> None:
        """An inner, shorter Timeout gives TIMEOUT to its caller, which carries on."""
        inner = Timeout(SHORT)
        handler = SleepyHandler()

        async def outer_work() -> Result[Any]:
            inner_result = await inner(Sleep(), CONTEXT, handler_step(handler))
            return ok(inner_result.status)

        result = await bounded(Timeout(BOUND)(Ping(), CONTEXT, CallNextStub(outer_work)))
        assert result.data is OperationStatus.TIMEOUT

    async def test_nested_outer_deadline(self) -> None:
        """An outer, shorter Timeout expiring inside an inner, longer one gives the outer TIMEOUT."""
        inner = Timeout(BOUND)
        handler = SleepyHandler()

        async def outer_work() -> Result[Any]:
            return await inner(Sleep(), CONTEXT, handler_step(handler))

        result = await bounded(Timeout(SHORT)(Ping(), CONTEXT, CallNextStub(outer_work)))
        assert result.status is OperationStatus.TIMEOUT
        assert handler.cancelled

    async def test_concurrent_dispatches_expire_independently(self) -> None:
        """Among many concurrent dispatches exactly those that overrun time out."""
        timeout = Timeout(0.2)

        async def work(seconds: float | None) -> Result[Any]:
            handler = SleepyHandler()

            async def action() -> Result[Any]:
                return Result.success(await handler.handle(Sleep(seconds), CONTEXT))

            return await timeout(Sleep(seconds), CONTEXT, CallNextStub(action))

        plan = [None if n % 3 == 0 else 0.0 for n in range(60)]
        results = await bounded(asyncio.gather(*(work(s) for s in plan)))
        expected = [OperationStatus.TIMEOUT if s is None else OperationStatus.SUCCESS for s in plan]
        assert [r.status for r in results] == expected

    async def test_outside_a_task_is_a_runtime_error(self) -> None:
        """Driven by hand from a loop callback, with no task to cancel, it refuses to run."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[BaseException] = loop.create_future()

        def drive_by_hand() -> None:
            coroutine = Timeout(BOUND)(Ping(), CONTEXT, CallNextStub())
            try:
                coroutine.send(None)
            except BaseException as exc:
                outcome.set_result(exc)
            finally:
                coroutine.close()

        loop.call_soon(drive_by_hand)
        error = await bounded(outcome)
        assert isinstance(error, RuntimeError)
        assert "inside an asyncio task" in str(error)

    def test_per_message_overrides_the_default(self) -> None:
        """A per-message value wins over the default; None there switches the deadline off."""
        timeout = Timeout(5, per_message={Sleep: 30, Ping: None})
        assert timeout.seconds_for(Sleep) == 30.0
        assert timeout.seconds_for(Ping) is None
        assert timeout.seconds_for(object) == 5.0
        assert timeout.describe(Sleep) == {"seconds": 30.0}

    def test_no_deadline_leaves_it_out(self) -> None:
        """bind leaves Timeout out (None) for a type with no deadline configured."""
        timeout = Timeout(per_message={Sleep: 1})
        assert timeout.bind(Sleep) is not None
        assert timeout.bind(Ping) is None
        assert Timeout().bind(Ping) is None

    async def test_called_for_a_type_without_deadline_passes_through(self) -> None:
        """Called anyway for a type with no deadline, it just runs the rest of the pipeline."""
        call_next = CallNextStub()
        assert (await Timeout()(Ping(), CONTEXT, call_next)).is_success
        assert call_next.calls == 1

    @pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan"), "5", True])
    def test_invalid_seconds(self, seconds: object) -> None:
        """Zero, negative, infinite or non-numeric seconds raise ConfigurationError."""
        with pytest.raises(ConfigurationError):
            Timeout(seconds)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            Timeout(per_message={Ping: seconds})  # type: ignore[dict-item]

    def test_invalid_key(self) -> None:
        """A per_message key that is not a type raises ConfigurationError."""
        with pytest.raises(ConfigurationError):
            Timeout(per_message={"Ping": 1})  # type: ignore[dict-item]

    def test_repr(self) -> None:
        """The repr shows the default and the overrides."""
        assert repr(Timeout(5, {Ping: 1})) == "Timeout(default=5.0, per_message={Ping: 1.0})"

    def test_works_on_successive_event_loops(self) -> None:
        """One Timeout serves one event loop after another (as a container singleton may)."""
        timeout = Timeout(SHORT)
        for _ in range(3):
            handler = SleepyHandler()
            result = asyncio.run(bounded(timeout(Sleep(), CONTEXT, handler_step(handler))))
            assert result.status is OperationStatus.TIMEOUT

    def test_works_on_loops_in_two_threads_at_once(self) -> None:
        """Two threads, each with its own loop, share one Timeout; each sees its own deadlines."""
        timeout = Timeout(0.1)
        statuses: list[OperationStatus] = []
        barrier = threading.Barrier(2)

        async def run_some() -> None:
            for n in range(4):
                handler = SleepyHandler()
                seconds = None if n % 2 else 0.0

                async def action(
                    handler: SleepyHandler = handler, seconds: float | None = seconds
                ) -> Result[Any]:
                    return Result.success(await handler.handle(Sleep(seconds), CONTEXT))

                statuses.append((await timeout(Sleep(seconds), CONTEXT, CallNextStub(action))).status)

        def thread_main() -> None:
            barrier.wait(timeout=BOUND)
            asyncio.run(asyncio.wait_for(run_some(), timeout=BOUND))

        threads = [threading.Thread(target=thread_main) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=BOUND * 2)
        assert sorted(statuses) == sorted([OperationStatus.SUCCESS, OperationStatus.TIMEOUT] * 4)


async def _return(result: Result[Any]) -> Result[Any]:
    return result


def make_container(handler: object, *behaviours: object) -> containers.DeclarativeContainer:
    class Container(containers.DeclarativeContainer):
        command_bus = providers.Singleton(
            CommandBus,
            handlers=providers.Dict({Sleep: providers.Object(handler), Ping: providers.Object(handler)}),
            behaviours=providers.List(*(providers.Object(b) for b in behaviours)),
        )

    return Container()


class TestTimeoutOnABus:
    """Timeout inside a bus built from a DeclarativeContainer."""

    async def test_sleeping_forever_gives_timeout(self) -> None:
        """A handler that never finishes gives a TIMEOUT Result with the operation id."""
        handler = SleepyHandler()
        bus = make_container(handler, Timeout(SHORT)).command_bus()
        result = await bounded(bus.execute(Sleep()))
        assert result.status is OperationStatus.TIMEOUT
        assert result.operation_id
        assert handler.cancelled

    async def test_handler_timeout_error_is_failed(self) -> None:
        """A TimeoutError raised by the handler becomes FAILED, not TIMEOUT."""

        class Raises:
            async def handle(self, command: Sleep, context: Context) -> str:
                raise TimeoutError

        bus = make_container(Raises(), Timeout(BOUND)).command_bus()
        assert (await bus.execute(Sleep())).status is OperationStatus.FAILED

    async def test_left_out_where_not_configured(self) -> None:
        """A type without a deadline has no Timeout in its pipeline."""
        bus = make_container(SleepyHandler(), Timeout(per_message={Sleep: 1})).command_bus()
        assert [type(b) for b in bus.behaviours_for(Sleep)] == [Timeout]
        assert bus.behaviours_for(Ping) == ()

    async def test_one_deadline_covers_every_retry(self) -> None:
        """Outside Retry, the deadline covers the attempts and the pauses: a long backoff times out."""
        calls = 0

        class AlwaysBusy:
            async def handle(self, command: Ping, context: Context) -> str:
                nonlocal calls
                calls += 1
                raise ConnectionResetError

        retry = Retry(RetryPolicy(max_attempts=5, delay=BOUND * 10, max_delay=BOUND * 10, jitter=False))
        bus = make_container(AlwaysBusy(), Timeout(SHORT), retry).command_bus()
        result = await bounded(bus.execute(Ping()))
        assert result.status is OperationStatus.TIMEOUT
        assert calls == 1

    async def test_outside_cancellation_of_execute_propagates(self) -> None:
        """Cancelling bus.execute from outside raises CancelledError in the caller."""
        handler = SleepyHandler()
        bus = make_container(handler, Timeout(BOUND)).command_bus()
        task = asyncio.create_task(bus.execute(Sleep()))
        await bounded(handler.started.wait())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bounded(task)
