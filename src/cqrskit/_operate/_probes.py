"""Readiness and liveness: the checks of a running process and the small HTTP server that answers them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from cqrskit._operate._options import ProcessOptions
from cqrskit.events._consumer import Consumer
from cqrskit.events._relay import OutboxRelay
from cqrskit.health import (
    Check,
    Readiness,
    consumer_check,
    database_check,
    relay_lag_check,
    transport_check,
)


def readiness_checks(
    consumers: Sequence[Consumer],
    relays: Sequence[OutboxRelay],
    tasks: Mapping[asyncio.Task[None], str],
    options: ProcessOptions,
) -> dict[str, Check]:
    """Return the readiness checks of a process: each database, transport, consumer and relay lag once."""
    checks: dict[str, Check] = {}
    databases: dict[int, Any] = {}
    transports: dict[int, Any] = {}
    for name, consumer in zip(options.consumers, consumers, strict=True):
        checks[name] = consumer_check(consumer)
        databases.setdefault(id(consumer.database), consumer.database)
        transports.setdefault(id(consumer.transport), consumer.transport)
    relay_tasks = {name: task for task, name in tasks.items()}
    for name, relay in zip(options.relays, relays, strict=True):
        task = relay_tasks[name]

        async def alive(task: asyncio.Task[None] = task) -> bool:
            return not task.done()

        checks[name] = alive
        if options.max_lag is not None:
            checks[f"{name}_lag"] = relay_lag_check(relay, options.max_lag)
        databases.setdefault(id(relay.database), relay.database)
        transports.setdefault(id(relay.transport), relay.transport)
    for index, database in enumerate(databases.values()):
        checks["database" if index == 0 else f"database_{index}"] = database_check(database)
    for index, transport in enumerate(transports.values()):
        if hasattr(transport, "ping"):
            checks["broker" if index == 0 else f"broker_{index}"] = transport_check(transport)
    return checks


def health_handler(
    readiness: Readiness, is_ready: Callable[[], bool], metrics: bool
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """Return a minimal HTTP/1.0 responder for probes: /healthz, /readyz and, with metrics, /metrics."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in {b"\r\n", b"\n", b""}:
                pass  # the headers: nothing in them matters here
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) > 1 else "/"
            status, content_type, body = await _answer(path, readiness, is_ready, metrics)
            head = (
                f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return handle


async def _answer(
    path: str, readiness: Readiness, is_ready: Callable[[], bool], metrics: bool
) -> tuple[str, str, bytes]:
    if path == "/healthz":
        return "200 OK", "application/json", b'{"status":"ok"}'
    if path == "/readyz":
        report = await readiness.check()
        if not is_ready():
            report = attrs.evolve(report, ok=False, down=("starting", *report.down))
        status = "200 OK" if report.ok else "503 Service Unavailable"
        return status, "application/json", json.dumps(report.as_json()).encode()
    if path == "/metrics" and metrics:
        import prometheus_client  # noqa: PLC0415 - only with --metrics

        return "200 OK", prometheus_client.CONTENT_TYPE_LATEST, prometheus_client.generate_latest()
    return "404 Not Found", "application/json", b'{"status":"not found"}'
