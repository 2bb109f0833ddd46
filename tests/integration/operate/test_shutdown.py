"""On SIGTERM, the process commands close what they opened: here, a Redis cache's connections."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from cqrskit.events import OutboxPublisher
from cqrskit.sqlalchemy import Database
from tests import services
from tests.integration.operate.cached_app import Seen
from tests.integration.operate.conftest import ROOT, Process, eventually

pytestmark = pytest.mark.redis

APP = "tests.integration.operate.cached_app:Container"


@pytest.fixture
async def server(redis_url: str, unique_name: str) -> AsyncIterator[redis.Redis]:
    """A client of the test's Redis; the test's keys are deleted afterwards."""
    client = redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
        await services.drop_redis_keys(redis_url, unique_name)


async def named_connections(client: redis.Redis, name: str) -> int:
    """How many connections Redis has open that call themselves `name`."""
    return sum(1 for entry in await client.client_list() if entry.get("name") == name)


def start_consume(tmp_path: Path, **env: str) -> Process:
    """Start ``python -m cqrskit consume APP --create-tables`` with `env`, its log in `tmp_path`."""
    ready = tmp_path / "ready"
    log = tmp_path / "consume.log"
    command = [sys.executable, "-m", "cqrskit", "consume", APP, "--create-tables", "--ready-file", str(ready)]
    path = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    with log.open("wb") as out:
        popen = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command,
            env={**os.environ, "PYTHONPATH": path, **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Process(popen, log, ready)


class TestShutdown:
    """What ``python -m cqrskit consume`` closes when it is stopped."""

    async def test_sigterm_closes_the_cache_connections_before_the_process_exits(
        self, server: redis.Redis, redis_url: str, unique_name: str, tmp_path: Path
    ) -> None:
        """The cache the subscriber used holds connections while the process runs; none after SIGTERM.

        The container's gate resource keeps the process alive after its shutdown has closed the
        singletons, so the connections are seen gone while it still runs (at exit the system would
        close them anyway); the gate opening shows the container's resources were shut down too.
        """
        url = f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
        gate = tmp_path / "gate"
        process = start_consume(
            tmp_path,
            CACHED_DATABASE_URL=url,
            CACHED_REDIS_URL=redis_url,
            CACHED_PREFIX=unique_name,
            CACHED_GATE=str(gate),
        )
        popen = process.popen
        try:
            await process.ready()
            database = Database(url)
            try:
                async with database.transaction():
                    await OutboxPublisher(database).publish(Seen("one"))
            finally:
                await database.dispose()

            async def seen() -> bool:
                return bool(await server.keys(f"{unique_name}*seen:one"))

            await eventually(seen, "the subscriber wrote to the cache")
            assert await named_connections(server, unique_name) >= 1

            popen.send_signal(signal.SIGTERM)

            async def closed_while_alive() -> bool:
                assert popen.poll() is None, f"exited before the gate opened:\n{process.output()}"
                return await named_connections(server, unique_name) == 0

            await eventually(closed_while_alive, "the cache's connections closed")
            gate.touch()
            assert await process.terminate() == 0, process.output()
            output = process.output()
            assert '"event": "process_stopped"' in output, output
            assert "close_failed" not in output, output
        finally:
            gate.touch()
            if popen.poll() is None:
                popen.kill()
                popen.wait()
