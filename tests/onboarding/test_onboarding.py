"""The onboarding example end to end on the embedded default: a welcome task, a deadline, a compensation."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import sqlalchemy as sa
from examples.onboarding import handlers
from examples.onboarding.container import Container, create_tables
from examples.onboarding.messages import ActivateUser, CreateUser, UserActivated, UserCreated
from examples.onboarding.process import OnboardingState

from cqrskit import Context
from cqrskit.processes import ProcessStatus


@pytest.fixture
async def app() -> AsyncIterator[Container]:
    container = Container()
    container.config.activation_delay.from_value(dt.timedelta(seconds=0.3))
    container.config.poll_interval.from_value(0.02)
    await create_tables(container)
    runner = container.runner()
    task = asyncio.create_task(runner.run())
    yield container
    runner.stop()
    await task
    await container.database().dispose()


async def row(container: Container, table: sa.Table, key: str) -> str | None:
    column = table.c.user_id if table is handlers.accounts else table.c.task_id
    async with container.database().read_session() as session:
        return await session.scalar(sa.select(table.c.status).where(column == key))


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


async def ended(container: Container, key: str, status: ProcessStatus) -> bool:
    instance = await container.onboarding().instance(key)
    return instance is not None and instance.status is status


class TestOnboarding:
    async def test_an_activated_user_keeps_the_welcome_task(self, app: Container) -> None:
        """Created, then activated in time: the task stays open, the process completes, no deadline fires."""
        bus = app.command_bus()
        assert (await bus.execute(CreateUser("u1", "ada@example.com"))).is_success

        async def task_open() -> bool:
            return await row(app, handlers.tasks, "welcome-u1") == "open"

        await eventually(task_open)
        assert (await bus.execute(ActivateUser("u1"))).is_success
        instance = await app.onboarding().instance("u1")
        assert instance is not None
        assert instance.status is ProcessStatus.COMPLETED
        assert instance.state == OnboardingState("u1", "welcome-u1", activated=True)
        assert [entry.message for entry in instance.history] == ["UserCreated", "UserActivated"]
        await asyncio.sleep(0.5)  # past the deadline: it was cancelled, so nothing changes
        assert await row(app, handlers.accounts, "u1") == "active"
        assert await row(app, handlers.tasks, "welcome-u1") == "open"
        assert [e.message for e in (await app.onboarding().instance("u1")).history] == [  # type: ignore[union-attr]
            "UserCreated",
            "UserActivated",
        ]

    async def test_without_activation_the_deadline_compensates(self, app: Container) -> None:
        """Not activated in time: the account is disabled and the welcome task cancelled."""
        assert (await app.command_bus().execute(CreateUser("u2", "bob@example.com"))).is_success
        await eventually(lambda: ended(app, "u2", ProcessStatus.COMPENSATED))

        async def cancelled() -> bool:
            return await row(app, handlers.tasks, "welcome-u2") == "cancelled"

        await eventually(cancelled)
        assert await row(app, handlers.accounts, "u2") == "disabled"
        instance = await app.onboarding().instance("u2")
        assert instance is not None
        assert instance.history[-1].message == "ActivationDeadline"
        assert instance.history[-1].sent == ("DisableAccount", "compensation CancelWelcomeTask")
        # Activating now does nothing to the ended process (the account is no longer new).
        assert (await app.command_bus().execute(ActivateUser("u2"))).is_failure

    async def test_a_redelivered_event_does_not_advance_it_twice(self, app: Container) -> None:
        """The same start or step delivered again, or a step for an ended process, changes nothing."""
        manager = app.onboarding()
        await manager.handle(UserCreated("u3"), Context())
        await manager.handle(UserCreated("u3"), Context())
        await manager.handle(UserActivated("u3"), Context())
        await manager.handle(UserActivated("u3"), Context())
        instance = await manager.instance("u3")
        assert instance is not None
        assert instance.version == 2
        assert instance.status is ProcessStatus.COMPLETED
        assert await manager.instance("nobody") is None

    def test_the_route_inspector_lists_the_process(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`python -m cqrskit routes` shows what the process starts on, reacts to, sends and its deadline."""
        from cqrskit.__main__ import main

        assert main(["routes", "examples.onboarding.container:Container"]) == 0
        out = capsys.readouterr().out
        assert "onboarding (ProcessManager 'onboarding')" in out
        assert "starts on: examples.onboarding.messages.UserCreated" in out
        assert "reacts to: examples.onboarding.messages.UserActivated" in out
        assert "deadlines: examples.onboarding.messages.ActivationDeadline" in out
        assert (
            "may send: examples.onboarding.messages.CancelWelcomeTask, "
            "examples.onboarding.messages.CreateWelcomeTask, examples.onboarding.messages.DisableAccount"
        ) in out
