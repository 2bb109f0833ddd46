"""The process tests' stage: a schema, an exchange, a queue, and the commands run as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import Context, Principal
from cqrskit.events import OutboxPublisher, RabbitMQTransport, create_event_tables
from cqrskit.sqlalchemy import Database
from tests.integration.operate.app import Happened, tables

ROOT = Path(__file__).resolve().parents[3]
APP = "tests.integration.operate.app:Container"
WITHIN = 60.0  # seconds: generous, a busy shared machine is slow


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = WITHIN) -> None:
    """Poll `check` until it is true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {within}s: {what}")
        await asyncio.sleep(0.05)


@attrs.define
class Process:
    """A ``python -m cqrskit`` subprocess and its log."""

    popen: subprocess.Popen[bytes]
    log: Path
    ready_file: Path | None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def ready(self) -> None:
        async def is_ready() -> bool:
            assert self.popen.poll() is None, f"exited with {self.popen.returncode}:\n{self.output()}"
            return self.ready_file is not None and self.ready_file.exists()

        await eventually(is_ready, "the process is ready")

    async def terminate(self) -> int:
        """SIGTERM it and wait for its exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WITHIN
        while self.popen.poll() is None:
            if time.monotonic() > deadline:
                self.popen.kill()
                pytest.fail(f"did not stop within {WITHIN}s of SIGTERM:\n{self.output()}")
            await asyncio.sleep(0.05)
        return self.popen.returncode


@attrs.define
class Stage:
    """One test's schema, exchange and queue, the env the commands see, and what they started."""

    url: str
    rabbitmq_url: str
    name: str
    tmp_path: Path
    database: Database
    transport: RabbitMQTransport
    processes: list[Process] = attrs.Factory(list)

    @property
    def queue(self) -> str:
        return f"{self.name}.q"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
            "OP_DATABASE_URL": self.url,
            "OP_SCHEMA": self.name,
            "OP_RABBITMQ_URL": self.rabbitmq_url,
            "OP_EXCHANGE": self.name,
            "OP_QUEUE": self.queue,
            **extra,
        }

    def run(self, *arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m cqrskit <arguments>`` to its end."""
        return subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "cqrskit", *arguments],
            env=self.env(**env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WITHIN,
            check=False,
        )

    def start(self, command: str, *options: str, **env: str) -> Process:
        """Start ``python -m cqrskit <command> APP --ready-file ...`` in the background."""
        index = len(self.processes)
        ready = self.tmp_path / f"{command}-{index}.ready"
        log = self.tmp_path / f"{command}-{index}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "cqrskit", command, APP, "--ready-file", str(ready), *options],
                env=self.env(**env),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        process = Process(popen, log, ready)
        self.processes.append(process)
        return process

    async def record(self, *events: Happened, context: Context | None = None) -> None:
        """Write `events` to the outbox in one transaction, as a command would."""
        publisher = OutboxPublisher(self.database, schema=self.name)
        async with self.database.transaction():
            for event in events:
                await publisher.publish(event, context)

    async def effects(self) -> list[Any]:
        effects, _ = tables(self.name)
        async with self.database.engine.connect() as connection:
            return list(await connection.execute(sa.select(effects).order_by(effects.c.seq)))

    async def poison(self, *event_ids: str, cured: bool = False) -> None:
        _, poison = tables(self.name)
        async with self.database.transaction() as session:
            if cured:
                await session.execute(sa.delete(poison).where(poison.c.event_id.in_(event_ids)))
            else:
                await session.execute(sa.insert(poison), [{"event_id": e} for e in event_ids])


CONTEXT = Context(
    principal=Principal("ops-user", {"stats:write"}, {"operator"}),
    correlation_id="corr-42",
    operation_id="op-7",
)


@pytest.fixture
async def stage(
    postgres_url: str, rabbitmq_url: str, unique_name: str, tmp_path: Path
) -> AsyncIterator[Stage]:
    """A schema with the event tables, effects and poison; an exchange; all removed after."""
    database = Database(postgres_url)
    transport = RabbitMQTransport(rabbitmq_url, exchange=unique_name)
    stage = Stage(postgres_url, rabbitmq_url, unique_name, tmp_path, database, transport)
    effects, _ = tables(unique_name)

    async def drop_schema() -> None:
        async with database.engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE'))

    async def stop_processes() -> None:
        for process in stage.processes:
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait()

    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(database.dispose)
        cleanup.push_async_callback(drop_schema)
        cleanup.push_async_callback(transport.close)
        cleanup.push_async_callback(lambda: transport.delete(stage.queue, exchanges=True))
        cleanup.push_async_callback(stop_processes)
        await create_event_tables(database, unique_name)
        async with database.engine.begin() as connection:
            await connection.run_sync(effects.metadata.create_all)
        yield stage
