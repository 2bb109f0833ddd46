"""The processes behind ``python -m cqrskit relay|consume|worker``: run, probe, observe, clean up, stop.

`serve` takes the relays and consumers a dependency-injector container provides (by provider name),
starts the consumers first (their queues must exist before anything is published to them), then the
relays; it says it is ready (a log line, a file, ``/readyz`` on an optional HTTP port), purges old
outbox, inbox and idempotency rows on a schedule, and on SIGTERM or SIGINT stops taking messages,
lets those in hand finish and be acknowledged, closes what it opened (the transports, the databases,
every other singleton it built that can be closed, such as a Redis cache, and the container's
resources) and returns 0. A relay or consumer that ends on its own (a fatal error) makes it stop the
rest and return 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import inspect
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

import attrs
import structlog
from dependency_injector import containers, providers

from cqrskit._inspect import find_processes
from cqrskit._loggable import loggable_exception
from cqrskit.events._consumer import Consumer
from cqrskit.events._dead_letters import DeadLetter
from cqrskit.events._idempotency import Idempotency
from cqrskit.events._relay import OutboxRelay
from cqrskit.health import (
    Check,
    Readiness,
    consumer_check,
    database_check,
    relay_lag_check,
    transport_check,
)
from cqrskit.processes import StuckInstance, stuck_instances

__all__ = [
    "Cleanup",
    "ProcessOptions",
    "configure_logging",
    "dead_letter_json",
    "dead_letters_command",
    "serve",
    "stuck_processes_command",
]

_DAY = 24 * 3600.0


@attrs.frozen
class Cleanup:
    """What the process purges, how old it must be (seconds), how often and in what batches.

    `interval` 0 turns cleanup off. The relay purges outbox rows published more than `outbox`
    seconds ago; the consumer, inbox rows older than `inbox`; either, with an `Idempotency` named,
    the expired idempotency keys.
    """

    interval: float = 3600.0
    outbox: float = 7 * _DAY
    inbox: float = 7 * _DAY
    batch_size: int = 1000


@attrs.frozen
class ProcessOptions:
    """How `serve` runs: the provider names to take, the consumers' overrides, probes and cleanup."""

    relays: Sequence[str] = ()
    consumers: Sequence[str] = ()
    idempotency: str | None = None
    queue: str | None = None
    concurrency: int | None = None
    prefetch: int | None = None
    create_tables: bool = False
    grace: float = 30.0
    ready_file: Path | None = None
    health_host: str = "127.0.0.1"
    health_port: int | None = None
    max_lag: float | None = None
    metrics: bool = False
    backlog_interval: float = 5.0
    cleanup: Cleanup = Cleanup()


class _Fatal(Exception):  # noqa: N818 - a signal inside this module
    """A provider that is missing or provides the wrong thing: exit status 2."""


def configure_logging(log_format: str, level: str) -> None:
    """Log one structured line per event to stderr: JSON (``json``) or key=value (``console``)."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _provider(container: containers.Container, name: str) -> Any:
    provider = getattr(container, name, None)
    if provider is None:
        raise _Fatal(f"the container has no provider named {name!r}")
    return provider


def _build_consumer(container: containers.Container, name: str, options: ProcessOptions) -> Consumer:
    provider = _provider(container, name)
    overrides: dict[str, object] = {}
    if options.queue is not None:
        overrides["queue"] = options.queue
    if options.concurrency is not None:
        overrides["concurrency"] = options.concurrency
    if options.prefetch is not None:
        overrides["prefetch"] = options.prefetch
    if options.metrics and "observer" not in getattr(provider, "kwargs", {}):
        overrides["observer"] = _metrics_observer()
    if overrides:
        if not hasattr(provider, "add_kwargs"):
            raise _Fatal(f"provider {name!r} takes no keyword arguments: cannot set {sorted(overrides)}")
        provider.add_kwargs(**overrides)
    built = provider()
    if not isinstance(built, Consumer):
        raise _Fatal(f"provider {name!r} gives {type(built).__qualname__}, not a Consumer")
    return built


def _build_relay(container: containers.Container, name: str, options: ProcessOptions) -> OutboxRelay:
    provider = _provider(container, name)
    if (
        options.metrics
        and "observer" not in getattr(provider, "kwargs", {})
        and hasattr(provider, "add_kwargs")
    ):
        provider.add_kwargs(observer=_metrics_observer())
    built = provider()
    if not isinstance(built, OutboxRelay):
        raise _Fatal(f"provider {name!r} gives {type(built).__qualname__}, not an OutboxRelay")
    return built


_shared_metrics: list[Any] = []


def _metrics_observer() -> Any:
    from cqrskit.events._metrics import EventMetrics  # noqa: PLC0415 - prometheus-client is optional

    if not _shared_metrics:
        _shared_metrics.append(EventMetrics())
    return _shared_metrics[0]


async def serve(container: containers.Container, options: ProcessOptions) -> int:  # noqa: PLR0912, PLR0915
    """Run the relays and consumers `options` names until a signal stops them; return the exit status."""
    log = structlog.get_logger("cqrskit.process")
    built = _track_singletons(container)
    try:
        consumers = [_build_consumer(container, name, options) for name in options.consumers]
        relays = [_build_relay(container, name, options) for name in options.relays]
        idempotency = None
        if options.idempotency is not None:
            idempotency = _provider(container, options.idempotency)()
            if not isinstance(idempotency, Idempotency):
                raise _Fatal(f"provider {options.idempotency!r} does not give an Idempotency")  # noqa: TRY301
    except _Fatal as exc:
        log.error("process_not_started", reason=str(exc))  # noqa: TRY400 - a usage error: no traceback
        await _close_opened(container, built, set(), log)
        return 2

    if not options.create_tables:
        missing = await _missing_tables([*consumers, *relays], log)
        if missing:
            log.error(  # a deployment error: no traceback, and no loop failing on every pass
                "process_not_started",
                reason=f"the database has no {', '.join(missing)}: create cqrskit's tables before starting "
                "(--create-tables, or create_tables() of the relay or consumer when you deploy)",
            )
            await _close_opened(container, built, set(), log)
            return 2

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    tasks: dict[asyncio.Task[None], str] = {}
    background: list[asyncio.Task[None]] = []
    server: asyncio.Server | None = None
    ready = False
    failed = False
    try:
        if options.create_tables:
            components: list[Consumer | OutboxRelay] = [*consumers, *relays]
            for component in components:
                await component.create_tables()
        # Consumers first: their queues must exist before a relay publishes to them.
        for name, consumer in zip(options.consumers, consumers, strict=True):
            tasks[asyncio.create_task(consumer.run(), name=name)] = name
        for consumer in consumers:
            started = asyncio.create_task(consumer.started())
            await asyncio.wait({started, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            if not started.done():
                started.cancel()
                raise _Stopped  # noqa: TRY301 - caught below, with the others' clean-up
        for name, relay in zip(options.relays, relays, strict=True):
            tasks[asyncio.create_task(relay.run(), name=name)] = name

        readiness = Readiness(_checks(consumers, relays, tasks, options))
        if options.health_port is not None:
            server = await asyncio.start_server(
                _http_handler(readiness, lambda: ready, options.metrics),
                options.health_host,
                options.health_port,
            )
            port = server.sockets[0].getsockname()[1]
            log.info("health_listening", host=options.health_host, port=port)
        if relays and options.metrics:
            background.append(asyncio.create_task(_sample_backlog(relays, options.backlog_interval, log)))
        if options.cleanup.interval > 0:
            background.append(
                asyncio.create_task(_clean_up(consumers, relays, idempotency, options.cleanup, log))
            )
        ready = True
        if options.ready_file is not None:
            options.ready_file.write_text(f"{os.getpid()}\n")
        log.info(
            "process_ready",
            relays=list(options.relays),
            consumers={name: c.queue for name, c in zip(options.consumers, consumers, strict=True)},
        )
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopping, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        for ended in done - {stopping}:
            task = cast("asyncio.Task[None]", ended)
            failed = True
            error = task.exception() if not task.cancelled() else None
            log.error(
                "component_ended",
                component=tasks[task],
                error_type=type(error).__name__,
                **(loggable_exception(error) if error is not None else {}),
            )
        if not failed:
            log.info("process_stopping")
    except _Stopped:
        failed = True
        for task, name in tasks.items():
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                log.error(  # noqa: TRY400 - the task's exception, not one being handled
                    "component_not_started", component=name, **loggable_exception(error)
                )
    except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
        failed = True
        log.error("process_failed", **loggable_exception(exc))  # noqa: TRY400 - loggable_exception
    finally:
        ready = False
        if options.ready_file is not None:
            with contextlib.suppress(FileNotFoundError):
                options.ready_file.unlink()
        for relay in relays:
            relay.stop()
        # The grace is shared: the consumers' handlers finish (and are acknowledged) meanwhile.
        await asyncio.gather(*(c.stop(options.grace) for c in consumers), return_exceptions=True)
        await asyncio.wait(tasks, timeout=options.grace) if tasks else None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if server is not None:
            server.close()
            await server.wait_closed()
        closed = await _close(consumers, relays, log)
        await _close_opened(container, built, closed, log)
        log.info("process_stopped", failed=failed)
    return 1 if failed else 0


async def _missing_tables(components: Sequence[Consumer | OutboxRelay], log: Any) -> list[str]:
    """Return the event tables the components need and their databases lack.

    A database that cannot be reached now is not a reason to refuse to start: the components retry,
    and readiness says what is down. So a failed look is logged and counts as nothing missing.
    """
    missing: list[str] = []
    for component in components:
        try:
            lacking = await component.missing_tables()
        except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
            log.warning("table_check_failed", **loggable_exception(exc))
            continue
        missing.extend(name for name in lacking if name not in missing)
    return missing


class _Stopped(Exception):  # noqa: N818 - a component ended before it started
    pass


def _checks(
    consumers: Sequence[Consumer],
    relays: Sequence[OutboxRelay],
    tasks: Mapping[asyncio.Task[None], str],
    options: ProcessOptions,
) -> dict[str, Check]:
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


def _http_handler(
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


async def _sample_backlog(relays: Sequence[OutboxRelay], interval: float, log: Any) -> None:
    while True:
        for relay in relays:
            try:
                backlog = await relay.backlog()
            except Exception as exc:  # noqa: BLE001 - logged; the process goes on
                log.warning("outbox_backlog_unmeasured", **loggable_exception(exc))
            else:
                relay.observer.backlog(backlog.pending, backlog.oldest_age)
        await asyncio.sleep(interval)


async def _clean_up(
    consumers: Sequence[Consumer],
    relays: Sequence[OutboxRelay],
    idempotency: Idempotency | None,
    cleanup: Cleanup,
    log: Any,
) -> None:
    """Purge on a schedule, in small transactions; a failure is logged and tried at the next round."""
    while True:
        started = time.monotonic()
        jobs: list[tuple[str, Awaitable[int]]] = []
        batch = cleanup.batch_size
        if relays:  # every relay of a schema shares its outbox: the first one purges it
            jobs.append(("outbox", relays[0].purge(cleanup.outbox, batch_size=batch)))
        if consumers:  # the inbox is shared by the schema's consumers
            jobs.append(("inbox", consumers[0].purge_inbox(cleanup.inbox, batch_size=batch)))
        if idempotency is not None:
            jobs.append(("idempotency_keys", idempotency.purge_expired(batch_size=batch)))
        for what, job in jobs:
            try:
                removed = await job
            except Exception as exc:  # noqa: BLE001 - logged; the process goes on
                log.warning("cleanup_failed", table=what, **loggable_exception(exc))
            else:
                log.info("cleanup_done", table=what, removed=removed)
        await asyncio.sleep(max(0.0, cleanup.interval - (time.monotonic() - started)))


async def _close(consumers: Sequence[Consumer], relays: Sequence[OutboxRelay], log: Any) -> set[int]:
    """Close each transport and dispose of each database once; return the ids of what was closed."""
    closed: set[int] = set()
    components: list[Consumer | OutboxRelay] = [*consumers, *relays]
    for component in components:
        for resource, method in ((component.transport, "close"), (component.database, "dispose")):
            if id(resource) in closed or not hasattr(resource, method):
                continue
            closed.add(id(resource))
            try:
                await getattr(resource, method)()
            except Exception as exc:  # noqa: BLE001 - logged; the process goes on
                log.warning("close_failed", resource=repr(resource), **loggable_exception(exc))
    return closed


def _track_singletons(container: containers.Container) -> list[object]:
    """Make every singleton provider of `container` note what it builds; return that list, in order.

    Call it before anything is built. dependency-injector offers no public way to ask a singleton
    provider whether it has built its object without building it, so each provider's factory is
    wrapped (through the public `set_provides`) to append the object it returns; the provider still
    keeps and shares it as before. `_close_opened` then closes exactly what this process built.
    """
    built: list[object] = []
    for provider in container.traverse(types=[providers.BaseSingleton]):
        factory = provider.provides
        if factory is not None:
            provider.set_provides(functools.partial(_noted, factory, built))
    return built


def _noted(factory: Callable[..., Any], built: list[object], *args: Any, **kwargs: Any) -> Any:
    made = factory(*args, **kwargs)
    if inspect.isawaitable(made):  # an async factory: note the object it gives, not the coroutine

        async def noted() -> Any:
            result = await made
            built.append(result)
            return result

        return noted()
    built.append(made)
    return made


_CLOSERS = ("aclose", "close", "dispose")
"""The coroutine methods that close a singleton, in the order they are looked for."""


async def _close_opened(
    container: containers.Container, built: Sequence[object], closed: set[int], log: Any
) -> None:
    """Close what the process built and has not closed yet, last built first; then the resources.

    A singleton is closed when it has a coroutine method ``aclose``, ``close`` or ``dispose`` (a
    cache backend such as a Redis cache and its connection pool, a `Database`'s engine, a transport,
    an HTTP client); those in `closed` were closed already. Then the container's
    `providers.Resource` providers that were initialised are shut down (``shutdown_resources()``),
    for what the container itself says how to close. A failure is logged and the rest still closed.
    """
    for made in reversed(built):
        if id(made) in closed:
            continue
        method = next(
            (m for name in _CLOSERS if inspect.iscoroutinefunction(m := getattr(made, name, None))), None
        )
        if method is None:
            continue
        closed.add(id(made))
        try:
            await method()
        except Exception as exc:  # noqa: BLE001 - logged; the process goes on
            log.warning("close_failed", resource=type(made).__qualname__, **loggable_exception(exc))
    try:
        shutting_down = container.shutdown_resources()
        if inspect.isawaitable(shutting_down):
            await shutting_down
    except Exception as exc:  # noqa: BLE001 - logged; the process goes on
        log.warning("close_failed", resource="resources", **loggable_exception(exc))


def dead_letter_json(dead: DeadLetter) -> dict[str, object]:
    """Return a dead letter as JSON-ready data: its id, name, reason, time, headers and payload."""
    envelope = dead.envelope
    try:
        payload: object = json.loads(envelope.payload)
    except ValueError:
        payload = envelope.payload.decode("utf-8", "replace")
    return {
        "message_id": envelope.message_id,
        "name": envelope.name,
        "queue": dead.queue,
        "reason": dead.reason,
        "dead_lettered_at": dead.dead_lettered_at,
        "headers": envelope.headers(),
        "payload": payload,
    }


async def dead_letters_command(  # noqa: PLR0911 - one exit per outcome
    container: containers.Container,
    action: str,
    *,
    queue: str | None,
    transport: str,
    consumer: str,
    message_ids: Sequence[str],
    names: Sequence[str],
    everything: bool,
    out: TextIO,
) -> int:
    """Run ``dead-letters list|show|replay|purge`` against the container's transport; return the status."""
    log = structlog.get_logger("cqrskit.dead_letters")
    try:
        store = _provider(container, transport)()
        if queue is None:
            queue = _provider(container, consumer)().queue
    except _Fatal as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if not all(hasattr(store, method) for method in ("dead_letters", "replay", "purge")):
        print(
            f"provider {transport!r} gives {type(store).__qualname__}, which keeps no dead letters",
            file=sys.stderr,
        )
        return 2
    assert queue is not None  # noqa: S101 - set above
    chosen_names = frozenset(names)

    def where(dead: DeadLetter) -> bool:
        return not chosen_names or dead.envelope.name in chosen_names

    ids = frozenset(message_ids) or None
    try:
        if action == "list":
            for dead in await store.dead_letters(queue):
                if (ids is None or dead.message_id in ids) and where(dead):
                    print(json.dumps(_summary(dead)), file=out)
            return 0
        if action == "show":
            shown = [d for d in await store.dead_letters(queue) if ids is None or d.message_id in ids]
            if not shown:
                print("no such dead letter", file=sys.stderr)
                return 1
            for dead in shown:
                print(json.dumps(dead_letter_json(dead), indent=2), file=out)
            return 0
        if ids is None and not chosen_names and not everything:
            print(f"{action} what? give --id, --name or --all", file=sys.stderr)
            return 2
        method = store.replay if action == "replay" else store.purge
        count = await method(queue, message_ids=ids, where=where if chosen_names else None)
        print(
            json.dumps({action + "ed" if action == "replay" else "purged": count, "queue": queue}), file=out
        )
        return 0
    finally:
        with contextlib.suppress(Exception):
            await store.close()
        log.debug("dead_letters_done", action=action)


def _summary(dead: DeadLetter) -> dict[str, object]:
    return {
        "message_id": dead.message_id,
        "name": dead.envelope.name,
        "key": dead.envelope.key,
        "reason": dead.reason,
        "dead_lettered_at": dead.dead_lettered_at,
        "correlation_id": dead.envelope.correlation_id,
    }


async def stuck_processes_command(
    container: containers.Container, *, older_than: float, process: str | None, out: TextIO
) -> int:
    """Run ``processes stuck``: one JSON line per stuck instance of the container's process managers.

    Stuck is what `cqrskit.processes.stuck_instances` says: running, a deadline due more than
    `older_than` seconds ago, and no step since it fell due. Returns 0, or 2 when the container
    declares no process manager (or not the one `process` names) or one cannot be built.
    """
    reports = find_processes(container)
    broken = [report for report in reports if report.error is not None]
    for report in broken:
        print(f"{report.name}: cannot be built: {report.error}", file=sys.stderr)
    managers = [report.bus for report in reports if report.error is None]
    if process is not None:
        managers = [manager for manager in managers if manager.name == process]
    if broken or not managers:
        if not broken:
            wanted = f"named {process!r}" if process is not None else "at all"
            print(f"the container declares no process manager {wanted}", file=sys.stderr)
        return 2
    seen: set[tuple[int, str | None, str]] = set()
    databases: dict[int, Any] = {}
    try:
        for manager in managers:
            database = manager.database
            databases.setdefault(id(database), database)
            if (id(database), manager.schema, manager.name) in seen:
                continue  # two providers of one manager
            seen.add((id(database), manager.schema, manager.name))
            now = time.time()
            for stuck in await stuck_instances(
                database, schema=manager.schema, process=manager.name, older_than=older_than, now=now
            ):
                print(json.dumps(_stuck_line(stuck, now)), file=out)
    finally:
        for database in databases.values():
            with contextlib.suppress(Exception):
                await database.dispose()
    return 0


def _stuck_line(stuck: StuckInstance, now: float) -> dict[str, object]:
    return {
        "process": stuck.process,
        "key": stuck.key,
        "tenant": stuck.tenant,
        "status": str(stuck.status),
        "deadline": stuck.deadline,
        "due_at": _iso(stuck.due_at),
        "last_step_at": _iso(stuck.last_step_at),
        "overdue_seconds": round(now - stuck.due_at, 3),
    }


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="milliseconds")
