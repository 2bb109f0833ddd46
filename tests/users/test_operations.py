"""The example's probes and metrics: /healthz, /readyz (with a Redis of the test's own) and /metrics."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from dependency_injector import providers

from tests.asgi import asgi_client
from tests.users.conftest import ADMIN, CHEAP_SCRYPT_N, new_user

WITHIN = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A ``redis-server`` this test starts, kills and restarts on one port (never the shared one)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        assert executable is not None
        self.process = subprocess.Popen(  # noqa: S603
            [
                executable,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WITHIN
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the test's redis-server did not start")
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = OwnRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


@pytest.fixture
async def client(own_redis: OwnRedis, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The example on SQLite and the test's own Redis."""
    from examples.users.app import create_app
    from examples.users.container import Container
    from examples.users.passwords import ScryptCost
    from examples.users.settings import Settings

    container = Container()
    settings = Settings(
        demo=True,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
        redis_url=own_redis.url,
        scrypt_cost=ScryptCost(n=CHEAP_SCRYPT_N),
        configure_logging=False,
    )
    container.settings.override(providers.Object(settings))
    async with asgi_client(create_app(container), base_url="http://users.test") as client:
        yield client


async def status_becomes(client: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    deadline = time.monotonic() + WITHIN
    while True:
        response = await client.get(path)
        if response.status_code == status:
            return response
        if time.monotonic() > deadline:
            pytest.fail(
                f"{path} did not answer {status} within {WITHIN}s: {response.status_code} {response.text}"
            )
        await asyncio.sleep(0.1)


async def test_readyz_goes_503_naming_the_cache_and_back(
    client: httpx.AsyncClient, own_redis: OwnRedis
) -> None:
    """Redis killed: /readyz says the cache is down (and nothing else); restarted: ready again."""
    assert (await client.get("/readyz")).json() == {"status": "ok"}
    own_redis.kill()
    down = await status_becomes(client, "/readyz", 503)
    assert down.json() == {"status": "unavailable", "down": ["cache"]}  # no internal text
    assert (await client.get("/healthz")).status_code == 200  # alive all the same
    own_redis.start()
    await status_becomes(client, "/readyz", 200)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_move_as_commands_run(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    created = sample(before, "cqrskit_dispatches_total", message_type="CreateUser", status="success")
    response = await client.post("/users", json=new_user("mia"), headers=ADMIN)
    assert response.status_code == 201, response.text
    after = await client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    count = sample(after.text, "cqrskit_dispatches_total", message_type="CreateUser", status="success")
    assert count == created + 1
