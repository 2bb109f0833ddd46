"""SIGKILL of the onboarding worker on PostgreSQL and RabbitMQ, then a restart: nothing lost, nothing twice.

The worker (`tests.onboarding.broker_worker`) takes every process step from a queue: the events from
the events queue, the deadline from the commands queue. The test arms it twice, once while the users'
processes start and once while their deadlines expire; each time the worker kills itself at the
point under test, and a supervisor starts a new one. The deadlines are set an hour ahead and made due
by the test once every activation has been taken, so the end state does not depend on how long a
restart takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import sqlalchemy as sa
from examples.onboarding import handlers
from examples.onboarding.messages import ActivateUser, CreateUser

from cqrskit.events import RabbitMQTransport
from cqrskit.events._schedule_table import schedule_table
from cqrskit.events._tables import event_tables
from cqrskit.processes import ProcessStatus
from tests.onboarding.broker_app import BrokerContainer, configured, create_tables, queue_names
from tests.onboarding.outcome import ACTIVATED, USERS, assert_the_uncrashed_end

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

ROOT = Path(__file__).resolve().parents[2]
WITHIN = 120.0  # seconds: generous, the shared machine is slow at times


async def eventually(check: object, what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not reached within {WITHIN}s: {what}"
        await asyncio.sleep(0.05)


@attrs.define
class Stage:
    container: BrokerContainer
    url: str
    name: str
    rabbitmq_url: str
    tmp_path: Path

    @property
    def arm(self) -> Path:
        return self.tmp_path / "armed"


@pytest.fixture
async def stage(
    postgres_url: str, rabbitmq_url: str, unique_name: str, tmp_path: Path
) -> AsyncIterator[Stage]:
    """The schema, the example's tables, an exchange and its queues: all removed after."""
    container = configured(postgres_url, unique_name, rabbitmq_url, unique_name)
    database = container.database()
    transport = RabbitMQTransport(rabbitmq_url, exchange=unique_name)

    async def drop_schema() -> None:
        async with database.engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE'))

    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(database.dispose)
        cleanup.push_async_callback(drop_schema)
        cleanup.push_async_callback(transport.close)
        cleanup.push_async_callback(lambda: transport.delete(*queue_names(unique_name), exchanges=True))
        await create_tables(container)
        yield Stage(container, postgres_url, unique_name, rabbitmq_url, tmp_path)


class Supervisor:
    """Starts the worker, and a new one each time it is SIGKILLed; counts the kills."""

    def __init__(self, stage: Stage, point: str) -> None:
        self.stage, self.point = stage, point
        self.kills = 0
        self.worker = self._start()
        self._task = asyncio.create_task(self._watch())

    def _start(self) -> subprocess.Popen[bytes]:
        stage = self.stage
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        log = (stage.tmp_path / f"worker-{self.kills}.log").open("wb")
        with log:
            return subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [
                    sys.executable,
                    "-m",
                    "tests.onboarding.broker_worker",
                    stage.url,
                    stage.name,
                    stage.rabbitmq_url,
                    stage.name,
                    self.point,
                    str(stage.arm),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def _watch(self) -> None:
        while True:
            code = self.worker.poll()
            if code is not None:
                assert code == -9, f"the worker exited with {code}: {self.log()}"
                self.kills += 1
                self.worker = self._start()
            await asyncio.sleep(0.05)

    def log(self) -> str:
        return (self.stage.tmp_path / f"worker-{self.kills}.log").read_text(errors="replace")

    async def killed(self, times: int) -> bool:
        assert not self._task.done() or self._task.result()
        return self.kills >= times

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.worker.kill()
        self.worker.wait()


async def statuses(container: BrokerContainer) -> dict[str, ProcessStatus | None]:
    found = {}
    for user in USERS:
        instance = await container.onboarding().instance(user)
        found[user] = None if instance is None else instance.status
    return found


async def table(container: BrokerContainer, which: sa.Table) -> dict[str, str]:
    async with container.database().read_session() as session:
        return dict((await session.execute(sa.select(which.c.user_id, which.c.status))).all())


async def inbox_counts(stage: Stage) -> dict[str, int]:
    inbox = event_tables(stage.name).inbox
    async with stage.container.database().read_session() as session:
        query = sa.select(inbox.c.subscriber, sa.func.count()).group_by(inbox.c.subscriber)
        return {row[0]: row[1] for row in await session.execute(query)}


EXPECTED_INBOX = {
    "onboarding": len(USERS) + len(ACTIVATED),  # UserCreated, UserActivated: the process's subscriber
    "CreateWelcomeTask": len(USERS),
    "ActivationDeadline": len(USERS) - len(ACTIVATED),
    "DisableAccount": len(USERS) - len(ACTIVATED),
    "CancelWelcomeTask": len(USERS) - len(ACTIVATED),
}


class TestBrokerCrashes:
    @pytest.mark.parametrize("point", ["after_state", "before_ack", "after_publish"])
    async def test_a_killed_worker_restarts_into_the_same_end(self, stage: Stage, point: str) -> None:
        """Killed once as processes start and once as deadlines run: every process ends as without it."""
        container = stage.container
        stage.arm.touch()
        supervisor = Supervisor(stage, point)
        try:
            bus = container.command_bus()
            for user in USERS:
                assert (await bus.execute(CreateUser(user, f"{user}@example.com"))).is_success
            for user in sorted(ACTIVATED):
                assert (await bus.execute(ActivateUser(user))).is_success

            async def started() -> bool:
                found = await statuses(container)
                tasks = await table(container, handlers.tasks)
                return len(tasks) == len(USERS) and all(
                    found[u] is (ProcessStatus.COMPLETED if u in ACTIVATED else ProcessStatus.RUNNING)
                    for u in USERS
                )

            await eventually(started, "every process started, the activated ones completed")
            await eventually(lambda: supervisor.killed(1), "the first kill")
            assert not stage.arm.exists()

            # The deadlines of the users not activated fall due now; the others' were cancelled.
            stage.arm.touch()
            schedule = schedule_table(stage.name)
            async with container.database().transaction() as session:
                moved = await session.execute(
                    sa.update(schedule)
                    .where(schedule.c.name == "ActivationDeadline")
                    .values(due_at=time.time(), run_at=time.time())
                )
            assert getattr(moved, "rowcount", None) == len(USERS) - len(ACTIVATED)

            async def ended() -> bool:
                found = await statuses(container)
                counts = await inbox_counts(stage)
                running = [u for u, s in found.items() if s is ProcessStatus.RUNNING]
                return not running and counts == EXPECTED_INBOX

            await eventually(ended, "every process ended, every command applied")
            await eventually(lambda: supervisor.killed(2), "the second kill")
            assert not stage.arm.exists()
        finally:
            await supervisor.stop()

        accounts = await table(container, handlers.accounts)
        tasks = await table(container, handlers.tasks)
        await assert_the_uncrashed_end(container.onboarding().instance, accounts, tasks)
        # Each command (and each event) taken once: one inbox row per message, none sent twice.
        assert await inbox_counts(stage) == EXPECTED_INBOX
        async with container.database().read_session() as session:
            left = await session.scalar(sa.select(sa.func.count()).select_from(schedule_table(stage.name)))
        assert left == 0
        transport = RabbitMQTransport(stage.rabbitmq_url, exchange=stage.name)
        try:
            for queue in queue_names(stage.name):
                assert await transport.dead_letters(queue) == []
        finally:
            await transport.close()
