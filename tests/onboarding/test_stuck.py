"""``python -m cqrskit processes stuck`` as a subprocess, and `stuck_instances`, on SQLite and PostgreSQL.

Stuck: running, a deadline due more than ``--older-than`` seconds ago, no step since it fell due.
The deadlines here are never run (no runner, or a forwarder whose commands nobody consumes), so the
instances whose deadline has passed are stuck; those that ended, or whose deadline is still ahead,
are not.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from examples.onboarding.container import Container, create_tables
from examples.onboarding.messages import UserActivated, UserCreated

from cqrskit import Context
from cqrskit.events import ScheduleForwarder
from cqrskit.events._schedule_table import schedule_table
from cqrskit.processes import ProcessManager, ProcessStatus, stuck_instances
from tests.onboarding import broker_app

ROOT = Path(__file__).resolve().parents[2]


@attrs.define
class Backend:
    """Two managers of one database: deadlines due at once (`due_now`), and an hour ahead (`later`)."""

    spec: str
    env: dict[str, str]
    due_now: ProcessManager[Any, Any]
    later: ProcessManager[Any, Any]
    schema: str | None
    forward: Callable[[], Any] | None = None

    def run(self, *options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "cqrskit", "processes", "stuck", self.spec, *options],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Backend]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'onboarding.db'}"
    made = []
    for delay in (dt.timedelta(0), dt.timedelta(hours=1)):
        container = Container()
        container.config.database_url.from_value(url)
        container.config.activation_delay.from_value(delay)
        made.append(container)
    await create_tables(made[0])
    runner = made[0].runner()

    async def run_due() -> None:
        while await runner.run_once():
            pass

    yield Backend(
        "tests.onboarding.cli_containers:embedded",
        {"ONB_DATABASE_URL": url},
        made[0].onboarding(),
        made[1].onboarding(),
        None,
        run_due,
    )
    for container in made:
        await container.database().dispose()


@pytest.fixture
async def postgres(postgres_url: str, unique_name: str) -> AsyncIterator[Backend]:
    made = []
    for delay in (dt.timedelta(0), dt.timedelta(hours=1)):
        container = broker_app.configured(postgres_url, unique_name, "amqp://unused", unique_name)
        container.config.activation_delay.from_value(delay)
        made.append(container)
    await broker_app.create_tables(made[0])
    forwarder = ScheduleForwarder(made[0].scheduler())

    async def forward() -> None:
        while await forwarder.run_once():
            pass

    try:
        yield Backend(
            "tests.onboarding.cli_containers:broker",
            {
                "ONB_DATABASE_URL": postgres_url,
                "ONB_SCHEMA": unique_name,
                "ONB_RABBITMQ_URL": "amqp://unused",
            },
            made[0].onboarding(),
            made[1].onboarding(),
            unique_name,
            forward,
        )
    finally:
        async with made[0].database().engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE'))
        for container in made:
            await container.database().dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


class TestStuck:
    async def test_the_command_lists_the_instance_a_deadline_did_not_reach(self, backend: Backend) -> None:
        """One line for the instance past its deadline; none for the ended ones or the one not yet due."""
        due_now, later = backend.due_now, backend.later
        # u1: its deadline runs (embedded) and the process compensates: ended, not stuck.
        if backend.schema is None:
            await due_now.handle(UserCreated("u1"), Context())
            assert backend.forward is not None
            await backend.forward()
            assert (await due_now.instance("u1")).status is ProcessStatus.COMPENSATED  # type: ignore[union-attr]
        await due_now.handle(UserCreated("u2"), Context())  # due at once, never run: stuck
        await due_now.handle(UserCreated("u3"), Context())
        await due_now.handle(UserActivated("u3"), Context())  # completed: its deadline was cancelled
        await later.handle(UserCreated("u4"), Context())  # due in an hour: not stuck yet
        if backend.schema is not None:
            # Forwarded to the outbox, and nobody consumes it: gone from the schedule, still stuck.
            assert backend.forward is not None
            await backend.forward()
            async with due_now.database.read_session() as session:
                schedule = schedule_table(backend.schema)
                due = await session.scalar(sa.select(sa.func.count()).where(schedule.c.due_at <= time.time()))
            assert due == 0  # u4's deadline, an hour ahead, is the one row left

        listed = lines(backend.run())
        assert [(e["process"], e["key"], e["status"], e["deadline"]) for e in listed] == [
            ("onboarding", "u2", "running", "ActivationDeadline")
        ]
        entry = listed[0]
        assert entry["last_step_at"] <= entry["due_at"]  # ISO 8601 UTC: compared as text
        assert entry["due_at"].endswith("+00:00")
        assert entry["overdue_seconds"] >= 0

        assert lines(backend.run("--older-than", "3600")) == []
        assert [e["key"] for e in lines(backend.run("--process", "onboarding"))] == ["u2"]
        missing = backend.run("--process", "nothing")
        assert missing.returncode == 2
        assert "no process manager named 'nothing'" in missing.stderr

    async def test_the_query_takes_a_time_to_judge_at(self, backend: Backend) -> None:
        """Two hours from now u4's deadline has passed too; its last step is before its due time."""
        await backend.due_now.handle(UserCreated("u2"), Context())
        await backend.later.handle(UserCreated("u4"), Context())
        database, schema = backend.due_now.database, backend.schema
        assert [s.key for s in await stuck_instances(database, schema=schema)] == ["u2"]
        later = await stuck_instances(database, schema=schema, now=time.time() + 7200)
        assert [(s.process, s.key, s.status, s.deadline) for s in later] == [
            ("onboarding", "u2", ProcessStatus.RUNNING, "ActivationDeadline"),
            ("onboarding", "u4", ProcessStatus.RUNNING, "ActivationDeadline"),
        ]
        assert all(s.last_step_at <= s.due_at for s in later)
        assert await stuck_instances(database, schema=schema, process="other", now=time.time() + 7200) == []
        # Once it moves on (activated, it completes) it is not listed any more.
        await backend.due_now.handle(UserActivated("u2"), Context())
        assert await stuck_instances(database, schema=schema) == []
