"""The HTTP layer's cost measured in one process, without uvicorn or a load generator.

Run: ``PYTHONPATH=src:. python -m benchmarks.http_inprocess [--rounds 7] [--gets 2000] [--posts 150]``.

`benchmarks/http.py` measures requests per second over loopback, where the load generator shares the
machine with the server. This script drives the same two apps in process, through httpx's
ASGITransport, one request at a time, so the ratio between them can be read on a busy machine:

- ``GET /users/{id}`` answered from the cache (Alice reading herself), and ``POST /users`` (an admin
  creating a user: validation, a scrypt hash at a low cost, the INSERT, the read model's update, the
  cache invalidation), each on
- ``bare``: `benchmarks/_bare_users.py`, the endpoints written by hand, and
- ``cqrskit``: the example service's endpoints as written.

Rounds are interleaved: within each round every (endpoint, app) pair takes its turn, so a burst of load
from another process hits both apps alike. Each figure is the median over rounds of the mean time per
request, as CPU time of this process (all its threads: the event loop, aiosqlite's, the scrypt pool's)
and as wall-clock time; the httpx client's own work is included, the same for both apps. On a busy
machine the CPU figures are the ones to read: the wall clock also counts the time other processes held
the cores. ``bare / cqrskit`` is the share of the bare endpoint's throughput the example reaches.

It also times the two parts of the example's cached read that the bare endpoint does differently: the
bus dispatch on its own, and `result_response` of its Result.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json as _json
import os
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from uuid import UUID


def _environment(directory: Path, name: str) -> None:
    os.environ["USERS_DATABASE_URL"] = f"sqlite+aiosqlite:///{directory / (name + '.db')}"
    os.environ["USERS_SCRYPT_N"] = "1024"
    os.environ["USERS_LOG_LEVEL"] = "warning"
    os.environ["USERS_DEMO"] = "1"  # the requests send the demo's bearer tokens and read its seeded users
    os.environ.pop("USERS_REDIS_URL", None)
    os.environ.pop("USERS_RABBITMQ_URL", None)
    os.environ.pop("USERS_BROKER_URL", None)


_numbers = itertools.count()


def _new_user() -> dict[str, str]:
    tag = f"b{os.getpid()}x{next(_numbers)}"
    return {
        "email": f"{tag}@example.com",
        "username": f"u{tag}",
        "password": "correct horse",
        "full_name": "B",
    }


class _DirectClient:
    """Calls the ASGI app itself with a hand-made request, so that no client's work is timed.

    With ``--direct`` it stands in for the httpx client: the figures are then the servers' work only,
    which is what the ratio is about, and the client's share no longer narrows it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def get(self, path: str, *, headers: dict[str, str]) -> Any:
        return await self._call("GET", path, headers, b"")

    async def post(self, path: str, *, headers: dict[str, str], json: object) -> Any:
        body = _json.dumps(json).encode()
        return await self._call("POST", path, {**headers, "content-type": "application/json"}, body)

    async def _call(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": raw, "client": ("127.0.0.1", 1), "server": ("bench", 80),
        }  # fmt: skip
        sent = False
        answer = types.SimpleNamespace(status_code=0, text="")

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:  # the app asks again only to learn of a disconnect, which never comes
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status_code = message["status"]
            elif message["type"] == "http.response.body":
                answer.text += message.get("body", b"").decode()

        await self.app(scope, receive, send)
        return answer


async def _get(client: Any, path: str, count: int) -> tuple[float, float]:
    headers = {"Authorization": "Bearer alice-token"}
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        response = await client.get(path, headers=headers)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text}")
    return cpu / count * 1e6, wall / count * 1e6


async def _post(client: Any, path: str, count: int) -> tuple[float, float]:
    headers = {"Authorization": "Bearer admin-token"}
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        response = await client.post(path, headers=headers, json=_new_user())
        if response.status_code != 201:
            raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text}")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / count * 1e6, wall / count * 1e6


async def _measure(rounds: int, gets: int, posts: int, *, direct: bool) -> dict[str, dict[str, float]]:
    # httpx's ASGI transport tries to import sniffio on every request; without it installed, that
    # failed import costs the client more than some of what is measured. Mark it absent once.
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]
    import httpx
    from examples.users.tour import ALICE_ID

    directory = Path(tempfile.mkdtemp(prefix="cqrskit-http-inprocess-"))

    def bare() -> Any:
        from benchmarks._bare_users import create_app

        _environment(directory, "bare")
        return create_app()

    def example() -> Any:
        from examples.users.app import create_app

        _environment(directory, "example")
        return create_app()

    factories: dict[str, Callable[[], Any]] = {"bare": bare, "cqrskit": example}
    endpoints: dict[str, tuple[Callable[[Any, str, int], Any], str, int]] = {
        "GET /users/{id} (cached)": (_get, f"/users/{ALICE_ID}", gets),
        "POST /users": (_post, "/users", posts),
    }
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    parts: dict[str, float] = {}
    async with AsyncExitStack() as stack:
        clients, apps = {}, {}
        for name, factory in factories.items():
            app = apps[name] = factory()
            await stack.enter_async_context(app.router.lifespan_context(app))
            if direct:
                clients[name] = _DirectClient(app)
            else:
                clients[name] = await stack.enter_async_context(
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
                )
        for run, path, count in endpoints.values():  # warm up: imports, pools, the cache
            for name in factories:
                await run(clients[name], path, max(count // 10, 10))
        for _ in range(rounds):
            for endpoint, (run, path, count) in endpoints.items():
                for name in factories:
                    samples.setdefault((endpoint, name), []).append(await run(clients[name], path, count))
        parts = await _parts(apps["cqrskit"], UUID(str(ALICE_ID)), rounds, gets)
    table: dict[str, dict[str, float]] = {}
    for endpoint in endpoints:
        table[endpoint] = {}
        for name in factories:
            cpus, walls = zip(*samples[(endpoint, name)], strict=True)
            table[endpoint][name] = statistics.median(cpus)
            table[endpoint][f"{name} wall"] = statistics.median(walls)

    table["parts"] = parts
    return table


async def _parts(app: Any, user_id: UUID, rounds: int, count: int) -> dict[str, float]:
    """Time the example's bus dispatch of a cached GetUser, and `result_response` of its Result."""
    from examples.users.messages import GetUser

    from cqrskit import Context, Principal
    from cqrskit.fastapi import result_response

    bus = app.state.container.query_bus()
    context = Context(principal=Principal(str(user_id), permissions={"user:read"}))
    query = GetUser(user_id, include_inactive=False)
    result = await bus.execute(query, context)
    dispatch, render = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            result = await bus.execute(query, context)
        dispatch.append((time.perf_counter() - started) / count * 1e6)
        started = time.perf_counter()
        for _ in range(count):
            result_response(result)
        render.append((time.perf_counter() - started) / count * 1e6)
    if result.cache_info is None or not result.cache_info.hit:
        raise RuntimeError(f"expected a cache hit, got {result!r}")
    return {
        "bus dispatch of the cached GetUser": statistics.median(dispatch),
        "result_response of its Result": statistics.median(render),
    }


def main() -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.http_inprocess", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--gets", type=int, default=2000, help="cached GETs per app and round")
    parser.add_argument("--posts", type=int, default=150, help="POSTs per app and round")
    parser.add_argument("--direct", action="store_true", help="call the ASGI apps without httpx")
    arguments = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    table = asyncio.run(_measure(arguments.rounds, arguments.gets, arguments.posts, direct=arguments.direct))
    parts = table.pop("parts")
    print(
        f"in process ({'the ASGI apps called directly' if arguments.direct else 'httpx ASGITransport'}), "
        f"one request at a time; median of {arguments.rounds} interleaved "
        f"rounds ({arguments.gets} GETs, {arguments.posts} POSTs per app and round); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print()
    print(
        "| endpoint | CPU us: bare | CPU us: cqrskit | bare / cqrskit "
        "| wall us: bare | wall us: cqrskit | bare / cqrskit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for endpoint, values in table.items():
        bare, framework = values["bare"], values["cqrskit"]
        bare_wall, framework_wall = values["bare wall"], values["cqrskit wall"]
        print(
            f"| {endpoint} | {bare:,.0f} | {framework:,.0f} | {bare / framework:.0%} "
            f"| {bare_wall:,.0f} | {framework_wall:,.0f} | {bare_wall / framework_wall:.0%} |"
        )
    print()
    print("| part of the example's cached read | us |")
    print("|---|---:|")
    for name, value in parts.items():
        print(f"| {name} | {value:.1f} |")


if __name__ == "__main__":
    main()
