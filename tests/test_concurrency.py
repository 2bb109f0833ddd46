"""Concurrent dispatches never see each other's ids."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import structlog

from cqrskit import CallNext, Command, CommandBus, Context, Principal, Result

DISPATCHES = 1_000


@attrs.frozen
class Work(Command[str]):
    number: int


class LoggingHandler:
    """Logs twice through structlog with the dispatch's ids bound, yielding to the loop in between."""

    async def handle(self, command: Work, context: Context) -> str:
        with structlog.contextvars.bound_contextvars(
            operation_id=context.operation_id, correlation_id=context.correlation_id
        ):
            logger = structlog.get_logger("test")
            logger.info("work_started", number=command.number)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            logger.info(
                "work_done", number=command.number, principal=context.principal and context.principal.id
            )
        return f"done-{command.number} for {context.correlation_id}"


async def yielding(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
    await asyncio.sleep(0)
    return await call_next(message, context)


class TestConcurrentDispatches:
    async def test_each_result_and_log_line_carries_its_own_ids(self) -> None:
        """1,000 gathered dispatches: each Result and log line has its own operation and correlation id."""
        bus = CommandBus({Work: LoggingHandler()}, [yielding])
        contexts = [
            Context(principal=Principal(f"u{n}"), correlation_id=f"corr-{n}") for n in range(DISPATCHES)
        ]
        with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            results = await asyncio.gather(*(bus.execute(Work(n), contexts[n]) for n in range(DISPATCHES)))

        assert [r.data for r in results] == [f"done-{n} for corr-{n}" for n in range(DISPATCHES)]
        operation_ids = [r.operation_id for r in results]
        assert len(set(operation_ids)) == DISPATCHES
        assert None not in operation_ids

        assert len(logs) == 2 * DISPATCHES
        by_number: dict[int, list[Any]] = {}
        for entry in logs:
            by_number.setdefault(entry["number"], []).append(entry)
        for number, entries in by_number.items():
            assert [e["event"] for e in entries] == ["work_started", "work_done"]
            for entry in entries:
                assert entry["operation_id"] == operation_ids[number]
                assert entry["correlation_id"] == f"corr-{number}"
            assert entries[1]["principal"] == f"u{number}"
        # The lines really interleaved: the first thousand are not one dispatch's two lines in a row.
        assert [e["event"] for e in logs[:2]] == ["work_started", "work_started"]
        assert structlog.contextvars.get_contextvars() == {}

    async def test_without_contexts_each_dispatch_correlates_to_itself(self) -> None:
        """Dispatched with no context, each Result's operation id is also the handler's correlation id."""
        seen: dict[str, str | None] = {}

        class Recording:
            async def handle(self, command: Work, context: Context) -> str:
                await asyncio.sleep(0)
                assert context.operation_id is not None
                seen[context.operation_id] = context.correlation_id
                return str(command.number)

        bus = CommandBus({Work: Recording()})
        results = await asyncio.gather(*(bus.execute(Work(n)) for n in range(DISPATCHES)))
        assert len(seen) == DISPATCHES
        for result in results:
            assert result.operation_id is not None
            assert seen[result.operation_id] == result.operation_id
