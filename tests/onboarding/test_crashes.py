"""SIGKILL of the onboarding worker in the middle of a step, then a restart: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from examples.onboarding import handlers
from examples.onboarding.container import Container, create_tables
from examples.onboarding.messages import ActivateUser, CreateUser

from cqrskit.processes import ProcessStatus
from tests.onboarding.outcome import ACTIVATED, USERS, assert_the_uncrashed_end

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Container]:
    container = Container()
    container.config.database_url.from_value(f"sqlite+aiosqlite:///{tmp_path / 'onboarding.db'}")
    container.config.activation_delay.from_value(dt.timedelta(seconds=0.3))
    await create_tables(container)
    yield container
    await container.database().dispose()


def start_worker(url: str, point: str, marker: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "tests.onboarding.crash_worker", url, point, str(marker)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )


async def all_ended(container: Container) -> bool:
    for user in USERS:
        instance = await container.onboarding().instance(user)
        if instance is None or instance.status is ProcessStatus.RUNNING:
            return False
    async with container.database().read_session() as session:
        left = await session.scalar(sa.text("SELECT count(*) FROM cqrskit_scheduled_commands"))
    return left == 0


class TestCrashes:
    @pytest.mark.parametrize("point", ["after_state", "after_commit"])
    async def test_a_killed_worker_restarts_into_the_same_end(
        self, app: Container, tmp_path: Path, point: str
    ) -> None:
        """Every process ends where it would have without the crash, and each command applied once."""
        bus = app.command_bus()
        for user in USERS:
            assert (await bus.execute(CreateUser(user, f"{user}@example.com"))).is_success
        for user in sorted(ACTIVATED):
            assert (await bus.execute(ActivateUser(user))).is_success
        url = str(app.database().engine.url)
        marker = tmp_path / "killed"
        first = start_worker(url, point, marker)
        assert await asyncio.to_thread(first.wait, 120) == -9  # it did die at the point
        assert marker.exists()
        second = start_worker(url, point, marker)
        try:
            deadline = time.monotonic() + 120
            while not await all_ended(app):
                assert time.monotonic() < deadline, "the processes did not end"
                assert second.poll() is None, "the restarted worker died"
                await asyncio.sleep(0.05)
        finally:
            second.kill()
            second.wait()
        async with app.database().read_session() as session:
            accounts = dict(
                (
                    await session.execute(sa.select(handlers.accounts.c.user_id, handlers.accounts.c.status))
                ).all()
            )
            tasks = dict(
                (await session.execute(sa.select(handlers.tasks.c.user_id, handlers.tasks.c.status))).all()
            )
            dead = await session.scalar(sa.text("SELECT count(*) FROM cqrskit_scheduled_commands"))
        assert dead == 0
        await assert_the_uncrashed_end(app.onboarding().instance, accounts, tasks)
        # Each sent command was applied once: one inbox row per scheduled message, none applied twice.
        async with app.database().read_session() as session:
            applied = (
                await session.execute(
                    sa.text("SELECT subscriber, count(*) FROM cqrskit_inbox GROUP BY subscriber")
                )
            ).all()
        assert dict(applied) == {
            "CreateWelcomeTask": len(USERS),
            "ActivationDeadline": len(USERS) - len(ACTIVATED),
            "DisableAccount": len(USERS) - len(ACTIVATED),
            "CancelWelcomeTask": len(USERS) - len(ACTIVATED),
        }
