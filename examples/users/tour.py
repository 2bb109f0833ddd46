"""A scripted tour of the user service over real HTTP: ``python -m examples.users.tour`` (``nox -s demo``).

It starts the service under uvicorn on a free local port (SQLite in a temporary directory and an
in-memory cache, unless ``USERS_DATABASE_URL`` / ``USERS_REDIS_URL`` say otherwise), walks through the
API printing each request and response briefly, and stops the server. With ``USERS_BROKER_URL`` set
too, it also starts the events worker (``python -m examples.users.worker``), and the tour's read-model
step shows the worker catching ``user_stats`` up.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from cqrskit.fastapi import OPERATION_ID_HEADER

ADMIN = {"Authorization": "Bearer admin-token"}
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
ALICE_ID = "00000000-0000-4000-8000-00000000a11c"
BOB_ID = "00000000-0000-4000-8000-000000000b0b"


def free_port() -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_service(
    environ: Mapping[str, str] | None = None,
    *,
    workers: int = 1,
    quiet: bool = True,
    log: Path | None = None,
) -> Iterator[str]:
    """Start the service under uvicorn on a free port, yield its base URL, stop it on exit.

    With `log`, everything the processes write (their logs) goes to that file.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        env = {  # the demo's defaults, then the USERS_* variables you set, then `environ`
            "USERS_DATABASE_URL": f"sqlite+aiosqlite:///{Path(directory) / 'users.db'}",
            "USERS_SCRYPT_N": "1024",
            "USERS_DEMO": "1",  # the demo tokens and the users they stand for
            "USERS_LOG_LEVEL": "warning",
            **os.environ,
            **(environ or {}),
        }
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path.cwd()), "src", env.get("PYTHONPATH")]))
        command = [
            sys.executable, "-m", "uvicorn", "examples.users.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--no-access-log",
        ]  # fmt: skip
        output: Any = subprocess.DEVNULL if quiet else None
        processes: list[subprocess.Popen[bytes]] = []
        log_file = None if log is None else log.open("ab")
        output = output if log_file is None else log_file
        try:
            if env.get("USERS_BROKER_URL"):
                worker = [sys.executable, "-m", "examples.users.worker"]
                processes.append(subprocess.Popen(worker, env=env, stdout=output, stderr=output))  # noqa: S603 - our interpreter
            server = subprocess.Popen(command, env=env, stdout=output, stderr=output)  # noqa: S603 - our interpreter
            processes.append(server)
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_up(base_url, server)
            yield base_url
        finally:
            for process in reversed(processes):
                _stop(process)
            if log_file is not None:
                log_file.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_up(base_url: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the service exited with status {server.returncode} before it was up")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the service did not answer on {base_url} within {timeout} seconds")


def _masked(body: Any) -> Any:
    """`body` with every password text shown as ``***``: the tour prints what it sends, but not those."""
    if isinstance(body, dict):
        return {
            key: "***" if key == "password" and isinstance(value, str) else _masked(value)
            for key, value in body.items()
        }
    if isinstance(body, list):
        return [_masked(item) for item in body]
    return body


def _short(body: Any, limit: int = 160) -> str:
    text = json.dumps(body, separators=(", ", ": ")) if body is not None else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Tour:
    """Sends requests and prints each one with its response, briefly."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.step = 0

    def say(self, text: str) -> None:
        """Print a heading for the next requests."""
        self.step += 1
        print(f"\n{self.step}. {text}")

    def call(self, method: str, path: str, *, headers: Mapping[str, str], **kwargs: Any) -> httpx.Response:
        """Send one request and print it with the status, the interesting headers and the body."""
        response = self.client.request(method, path, headers=dict(headers), **kwargs)
        who = headers.get("Authorization", "anonymous").removeprefix("Bearer ")
        print(f"   {method} {path}  [{who}]  {_short(_masked(kwargs.get('json')), 90)}".rstrip())
        extra = "".join(
            f"  {name}={response.headers[name]}"
            for name in ("X-Cache", OPERATION_ID_HEADER)
            if name in response.headers
        )
        body = response.json() if response.content else None
        if isinstance(body, dict) and body.get("type", "").startswith("urn:cqrskit:problem:"):
            # A problem: show what a client acts on, not the whole body.
            shown = {key: body[key] for key in ("detail", "errors") if key in body}
            kind = body["type"].rsplit(":", 1)[1]
            print(f"   -> {response.status_code} {kind}{extra}  {_short(shown, 200)}")
        elif isinstance(body, dict) and "pagination" in body:
            names = [item["username"] for item in body["items"]]
            print(f"   -> {response.status_code}{extra}  items={names}")
            print(f"      pagination={_short(body['pagination'], 200)}")
        else:
            print(f"   -> {response.status_code}{extra}  {_short(body)}")
        return response


def run_tour(base_url: str) -> None:
    """Walk through the API: create, read (miss, hit), update (invalidation), errors, pagination."""
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        tour = Tour(client)
        tour.say("An admin creates a user (201, with the new id)")
        created = tour.call(
            "POST",
            "/users",
            headers=ADMIN,
            json={
                "email": "carol@example.com",
                "username": "carol",
                "password": "correct horse",
                "full_name": "Carol",
            },
        )
        user_id = created.json()["id"]

        tour.say("Read it twice: the first read misses the cache, the second hits it")
        tour.call("GET", f"/users/{user_id}", headers=ADMIN)
        tour.call("GET", f"/users/{user_id}", headers=ADMIN)

        tour.say("Update it: the command's affected entity drops the cached read")
        tour.call("PATCH", f"/users/{user_id}", headers=ADMIN, json={"full_name": "Carol Danvers"})
        tour.call("GET", f"/users/{user_id}", headers=ADMIN)

        tour.say("Alice reads and updates herself (allowed), then tries to read Bob (403)")
        tour.call("GET", f"/users/{ALICE_ID}", headers=ALICE)
        tour.call("PATCH", f"/users/{ALICE_ID}", headers=ALICE, json={"full_name": "Alice Liddell"})
        tour.call("GET", f"/users/{BOB_ID}", headers=ALICE)

        tour.say("Bad input: 422 problem+json naming every bad field, never a 500 (types first, then values)")
        tour.call(
            "POST",
            "/users",
            headers=ADMIN,
            json={"email": "e@example.com", "username": 42, "password": 12345678, "age": 3},
        )
        tour.call(
            "POST",
            "/users",
            headers=ADMIN,
            json={"email": "d@example.com", "username": "dave", "password": "short", "full_name": " "},
        )
        tour.call("GET", "/users?page_size=500", headers=ADMIN)

        tour.say("No token: 401; a duplicate: 409")
        tour.call("GET", "/users", headers={})
        tour.call(
            "POST",
            "/users",
            headers=ADMIN,
            json={
                "email": "carol@example.com",
                "username": "carol2",
                "password": "correct horse",
                "full_name": "C",
            },
        )

        tour.say("A batch of 12 users, then pagination over everyone")
        batch = [
            {
                "email": f"user{n:02d}@example.com",
                "username": f"user{n:02d}",
                "password": "password!",
                "full_name": f"User {n}",
            }
            for n in range(12)
        ]
        tour.call("POST", "/users/batch", headers=ADMIN, json={"users": batch})
        tour.call("GET", "/users?page=1&page_size=5", headers=ADMIN)
        tour.call("GET", "/users?page=4&page_size=5", headers=ADMIN)
        tour.call("GET", "/users/stats", headers=ADMIN)

        show_read_model_catching_up(tour)

        tour.say("Delete the user: 204, then 404")
        tour.call("DELETE", f"/users/{user_id}", headers=ADMIN)
        tour.call("GET", f"/users/{user_id}", headers=ADMIN)


def _stats_line(response: httpx.Response) -> str:
    body = response.json()
    roles = " ".join(f"{role}={count}" for role, count in body["by_role"].items())
    return f"total={body['total']} active={body['active']} {roles}  X-Cache={response.headers.get('X-Cache')}"


def _poll_stats(client: httpx.Client, total: int, within: float, *, show: bool) -> int:
    """GET /users/stats until it counts `total` users; print each new answer when `show`; return the polls."""
    began = time.monotonic()
    polls, last = 0, ""
    while True:
        response = client.get("/users/stats", headers=ADMIN)
        polls += 1
        line = _stats_line(response)
        elapsed = (time.monotonic() - began) * 1000
        if show and line != last:
            print(f"   +{elapsed:5.0f} ms  poll {polls}: {line}")
            last = line
        if response.json()["total"] == total:
            return polls
        if elapsed > within * 1000:
            raise RuntimeError(f"the read model did not count {total} users within {within} seconds")
        time.sleep(0.005)


def show_read_model_catching_up(tour: Tour, within: float = 30.0) -> None:
    """Count the users, create one, and poll the stats until the read model counts it too."""
    scaled_out = bool(os.environ.get("USERS_BROKER_URL"))
    tour.say("The user_stats read model catches up with the events (GetUserStats reads only it)")
    listed = tour.call("GET", "/users?page_size=1", headers=ADMIN)
    users = listed.json()["pagination"]["total_count"]
    _poll_stats(tour.client, users, within, show=False)  # the batch's events may still be on their way
    tour.call("GET", "/users/stats", headers=ADMIN)
    created = tour.call(
        "POST",
        "/users",
        headers=ADMIN,
        json={
            "email": "erin@example.com",
            "username": "erin",
            "password": "correct horse",
            "full_name": "Erin",
        },
    )
    if created.status_code != 201:
        print("   (erin exists already: this database has seen the tour before)")
        return
    print(f"   polling GET /users/stats until it counts {users + 1} users:")
    polls = _poll_stats(tour.client, users + 1, within, show=True)
    if scaled_out:
        print(
            f"   caught up after {polls} poll(s): the worker relayed the outbox row, consumed the event,\n"
            "   moved the counters and dropped GetUserStats's cached result once its transaction committed"
        )
    else:
        print(
            f"   caught up after {polls} poll(s): the event was recorded in the outbox with the command and\n"
            "   delivered by the service's own consumer after the commit (with USERS_BROKER_URL set, a\n"
            "   worker process relays and consumes it)"
        )


def main() -> None:
    """Start the service, run the tour, stop the service."""
    print("Starting the user service (SQLite + in-memory cache unless USERS_* variables say otherwise)...")
    if os.environ.get("USERS_BROKER_URL"):
        print("USERS_BROKER_URL is set: events go through the outbox, and a worker process runs too.")
    with running_service() as base_url:
        print(f"Service up at {base_url}. Demo tokens: admin-token, alice-token, bob-token (demo only).")
        run_tour(base_url)
    print("\nService stopped. Run it yourself with `nox -s serve` (or `python -m examples.users`).")


if __name__ == "__main__":
    main()
