"""`serve`: start consumers and relays, say when ready, run until a signal or a fatal error, stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from typing import Any, cast

import structlog
from dependency_injector import containers

from cqrskit._loggable import loggable_exception
from cqrskit._operate._closing import close_components, close_opened, track_singletons
from cqrskit._operate._housekeeping import clean_up, sample_backlog
from cqrskit._operate._options import ProcessOptions
from cqrskit._operate._probes import health_handler, readiness_checks
from cqrskit._operate._providers import ProcessNotStarted, provider_named
from cqrskit.events._consumer import Consumer
from cqrskit.events._idempotency import Idempotency
from cqrskit.events._relay import OutboxRelay
from cqrskit.health import (
    Readiness,
)


def _build_consumer(container: containers.Container, name: str, options: ProcessOptions) -> Consumer:
    provider = provider_named(container, name)
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
            raise ProcessNotStarted(
                f"provider {name!r} takes no keyword arguments: cannot set {sorted(overrides)}"
            )
        provider.add_kwargs(**overrides)
    built = provider()
    if not isinstance(built, Consumer):
        raise ProcessNotStarted(f"provider {name!r} gives {type(built).__qualname__}, not a Consumer")
    return built


def _build_relay(container: containers.Container, name: str, options: ProcessOptions) -> OutboxRelay:
    provider = provider_named(container, name)
    if (
        options.metrics
        and "observer" not in getattr(provider, "kwargs", {})
        and hasattr(provider, "add_kwargs")
    ):
        provider.add_kwargs(observer=_metrics_observer())
    built = provider()
    if not isinstance(built, OutboxRelay):
        raise ProcessNotStarted(f"provider {name!r} gives {type(built).__qualname__}, not an OutboxRelay")
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
    built = track_singletons(container)
    try:
        consumers = [_build_consumer(container, name, options) for name in options.consumers]
        relays = [_build_relay(container, name, options) for name in options.relays]
        idempotency = None
        if options.idempotency is not None:
            idempotency = provider_named(container, options.idempotency)()
            if not isinstance(idempotency, Idempotency):
                raise ProcessNotStarted(f"provider {options.idempotency!r} does not give an Idempotency")  # noqa: TRY301
    except ProcessNotStarted as exc:
        log.error("process_not_started", reason=str(exc))  # noqa: TRY400 - a usage error: no traceback
        await close_opened(container, built, set(), log)
        return 2

    if not options.create_tables:
        missing = await _missing_tables([*consumers, *relays], log)
        if missing:
            log.error(  # a deployment error: no traceback, and no loop failing on every pass
                "process_not_started",
                reason=f"the database has no {', '.join(missing)}: create cqrskit's tables before starting "
                "(--create-tables, or create_tables() of the relay or consumer when you deploy)",
            )
            await close_opened(container, built, set(), log)
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

        readiness = Readiness(readiness_checks(consumers, relays, tasks, options))
        if options.health_port is not None:
            server = await asyncio.start_server(
                health_handler(readiness, lambda: ready, options.metrics),
                options.health_host,
                options.health_port,
            )
            port = server.sockets[0].getsockname()[1]
            log.info("health_listening", host=options.health_host, port=port)
        if relays and options.metrics:
            background.append(asyncio.create_task(sample_backlog(relays, options.backlog_interval, log)))
        if options.cleanup.interval > 0:
            background.append(
                asyncio.create_task(clean_up(consumers, relays, idempotency, options.cleanup, log))
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
        closed = await close_components(consumers, relays, log)
        await close_opened(container, built, closed, log)
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
