"""Requests per second through the example app under uvicorn, against the same work done by hand.

Run: ``PYTHONPATH=src:. python -m benchmarks.http [--seconds 3] [--rounds 5] [--concurrency 16]``.

Two servers, each one uvicorn worker on loopback with its own SQLite file and in-memory cache:

- ``cqrskit``: the example service (examples/users), every request through a bus with Logging, Audit,
  Timeout, Authorization, Validation, QueryCache or CacheInvalidation, Retry and Transaction;
- ``bare``: benchmarks/_bare_users.py, the same two endpoints written by hand with the same auth check,
  validation, logging, cache, hashing and database writes.

For each endpoint, ``GET /users/{id}`` (answered from the cache) and ``POST /users`` (validation, a
scrypt hash at a low cost, an INSERT, cache invalidation), a load generator in another process keeps
16 keep-alive connections busy for a few seconds; rounds alternate between the servers. The table shows
the median requests per second over the rounds and their spread (min-max). Nothing is asserted: the
numbers depend on the machine, and the load generator shares it with the server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from examples.users.tour import ALICE_ID, _wait_until_up, free_port

APPS = {
    "cqrskit": "examples.users.app:create_app",
    "bare": "benchmarks._bare_users:create_app",
}
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def serve(target: str, directory: Path) -> Iterator[int]:
    """Run `target` (an app factory) under one uvicorn worker; yield its port."""
    port = free_port()
    env = {
        **os.environ,
        "USERS_DATABASE_URL": f"sqlite+aiosqlite:///{directory / (target.split('.', maxsplit=1)[0] + '.db')}",
        "USERS_SCRYPT_N": "1024",
        "USERS_LOG_LEVEL": "warning",
        "USERS_DEMO": "1",  # the load sends the demo's bearer tokens and reads its seeded users
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    env.pop("USERS_REDIS_URL", None)
    command = [
        sys.executable, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env, cwd=ROOT)  # noqa: S603 - our interpreter
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", server)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=15)


def load(port: int, method: str, path: str, *, seconds: float, concurrency: int, body: str | None) -> float:
    """Run the load generator in its own process; return requests per second (2xx only)."""
    command = [
        sys.executable, "-m", "benchmarks._load", "127.0.0.1", str(port), method, path, str(seconds),
        str(concurrency), *([body] if body else []),
    ]  # fmt: skip
    output = subprocess.run(  # noqa: S603 - our interpreter
        command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    outcome = json.loads(output)
    statuses = {int(code): count for code, count in outcome["statuses"].items()}
    failures = {code: count for code, count in statuses.items() if code >= 300}
    if failures:
        raise RuntimeError(f"{method} {path}: unexpected statuses {failures}")
    return float(outcome["requests"]) / float(outcome["elapsed"])


def body_template(app: str, round_number: int) -> str:
    """A CreateUser body whose email and username no other request of the benchmark uses."""
    tag = f"{app}{round_number}x{{n}}"
    return json.dumps(
        {
            "email": f"{tag}@example.com",
            "username": f"u{tag}",
            "password": "correct horse",
            "full_name": "Bench",
        }
    )


def measure(seconds: float, rounds: int, concurrency: int) -> dict[tuple[str, str], list[float]]:
    """Return requests per second per (endpoint, app), one value per round."""
    endpoints = {"GET /users/{id} (cached)": ("GET", f"/users/{ALICE_ID}"), "POST /users": ("POST", "/users")}
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as directory, ExitStack() as stack:
        ports = {app: stack.enter_context(serve(target, Path(directory))) for app, target in APPS.items()}
        for app, port in ports.items():  # warm up: imports, connection pools, the cache entry
            load(port, "GET", f"/users/{ALICE_ID}", seconds=1.0, concurrency=concurrency, body=None)
            load(port, "POST", "/users", seconds=1.0, concurrency=concurrency, body=body_template(app, -1))
        for round_number in range(rounds):
            for name, (method, path) in endpoints.items():
                for app, port in ports.items():
                    body = body_template(app, round_number) if method == "POST" else None
                    rate = load(port, method, path, seconds=seconds, concurrency=concurrency, body=body)
                    results.setdefault((name, app), []).append(rate)
    return results


def table(results: dict[tuple[str, str], list[float]], seconds: float, rounds: int, concurrency: int) -> str:
    """Format the results as a Markdown table."""
    lines = [
        f"{rounds} rounds of {seconds:g} s, {concurrency} connections, one uvicorn worker each, loopback",
        "",
        "| endpoint | cqrskit req/s (min-max) | bare req/s (min-max) | cqrskit / bare |",
        "|---|---|---|---|",
    ]
    for name in dict.fromkeys(endpoint for endpoint, _ in results):
        framework, bare = results[(name, "cqrskit")], results[(name, "bare")]
        ratio = statistics.median(framework) / statistics.median(bare)
        lines.append(
            f"| {name} | {statistics.median(framework):,.0f} ({min(framework):,.0f}-{max(framework):,.0f}) "
            f"| {statistics.median(bare):,.0f} ({min(bare):,.0f}-{max(bare):,.0f}) | {ratio:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per endpoint and server")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    arguments = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    results = measure(arguments.seconds, arguments.rounds, arguments.concurrency)
    print(table(results, arguments.seconds, arguments.rounds, arguments.concurrency))


if __name__ == "__main__":
    main()
