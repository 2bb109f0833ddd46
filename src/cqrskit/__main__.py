"""``python -m cqrskit``: look at what a container wires, and run its relay and consumers.

- ``python -m cqrskit routes package.module:Container`` prints every bus's routes, each with its
  handler and its behaviours (outermost first) with their settings for that message.
  Process managers follow: what starts each, what it reacts to, its deadlines and the commands it
  may send.
- ``python -m cqrskit check package.module:Container [--modules package.commands ...]`` prints every
  wiring problem and exits with status 1 when there is one. It finds the message classes to check by
  itself (those the container's module defines or imports, and their modules' others); ``--modules``
  adds more. Both exit with status 1 when a bus cannot be built, and 2 when the container cannot be
  loaded.
- ``python -m cqrskit relay|consume|worker package.module:Container`` runs the container's
  `OutboxRelay` (provider ``relay``), its `Consumer` (provider ``consumer``), or both, until SIGTERM
  or SIGINT (docs/operations.md).
- ``python -m cqrskit dead-letters list|show|replay|purge package.module:Container`` reads and
  re-drives a queue's dead letters through the container's transport (provider ``transport``).
- ``python -m cqrskit processes stuck package.module:Container [--older-than SECONDS]`` prints one
  JSON line per stuck instance of the container's process managers (docs/processes.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cqrskit._operate import ProcessOptions

# _OPERATE: the process commands (relay, consume, worker, dead-letters) need SQLAlchemy and the
# events package; they are imported when one of them runs, so `check` and `routes` work with the core
# alone (the tutorial's own project has no SQLAlchemy).
from cqrskit._inspect import (
    check,
    container_messages,
    find_buses,
    find_processes,
    load_container,
    print_processes,
    print_routes,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cqrskit", description="Inspect a cqrskit container.")
    commands = parser.add_subparsers(dest="command", required=True)
    routes = commands.add_parser("routes", help="print every route, its handler and its behaviour chain")
    routes.add_argument("container", help="package.module:Container")
    checking = commands.add_parser("check", help="exit non-zero when the wiring has a problem")
    checking.add_argument("container", help="package.module:Container")
    checking.add_argument(
        "--modules",
        nargs="*",
        default=[],
        metavar="MODULE",
        help="more modules whose Command and Query subclasses must all be routed (the container's own "
        "module and the modules of the messages it imports are always checked)",
    )
    for name, helps in (
        ("relay", "move outbox rows to the broker until stopped"),
        ("consume", "consume a queue into the container's bus until stopped"),
        ("worker", "consume, then relay, in one process, until stopped"),
    ):
        _process_arguments(commands.add_parser(name, help=helps), name)
    dead = commands.add_parser("dead-letters", help="list, show, replay or purge a queue's dead letters")
    dead.add_argument("action", choices=["list", "show", "replay", "purge"])
    dead.add_argument("container", help="package.module:Container")
    dead.add_argument("--queue", help="the queue whose dead letters to read (default: the consumer's)")
    dead.add_argument(
        "--transport", default="transport", help="the transport's provider (default: transport)"
    )
    dead.add_argument("--consumer", default="consumer", help="the consumer's provider, for its queue")
    dead.add_argument("--id", dest="ids", action="append", default=[], help="a message id (repeatable)")
    dead.add_argument("--name", dest="names", action="append", default=[], help="a message name (repeatable)")
    dead.add_argument("--all", dest="everything", action="store_true", help="replay or purge every one")
    _logging_arguments(dead, default_level="warning")
    processes = commands.add_parser("processes", help="list process instances that need a look")
    processes.add_argument("action", choices=["stuck"])
    processes.add_argument("container", help="package.module:Container")
    processes.add_argument(
        "--older-than",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="only instances whose deadline fell due at least this long ago (default 0)",
    )
    processes.add_argument("--process", help="only the process manager stored under this name")
    _logging_arguments(processes, default_level="warning")
    return parser


def _logging_arguments(parser: argparse.ArgumentParser, default_level: str = "info") -> None:
    parser.add_argument(
        "--log-format",
        choices=["json", "console", "none"],
        default="json",
        help="structured log lines on stderr (none: leave logging to the container's code)",
    )
    parser.add_argument("--log-level", default=default_level)


def _process_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("container", help="package.module:Container")
    if command in {"relay", "worker"}:
        parser.add_argument(
            "--relay", dest="relays", action="append", help="the relay's provider (default: relay)"
        )
    if command in {"consume", "worker"}:
        parser.add_argument(
            "--consumer", dest="consumers", action="append", help="a consumer's provider (default: consumer)"
        )
        parser.add_argument("--queue", help="override the consumer's queue")
        parser.add_argument("--concurrency", type=int, help="override how many messages run at once")
        parser.add_argument("--prefetch", type=int, help="override how many deliveries are held unsettled")
    parser.add_argument("--idempotency", help="an Idempotency provider whose expired keys cleanup purges")
    parser.add_argument("--create-tables", action="store_true", help="create cqrskit's tables first")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds in-flight messages get to finish")
    parser.add_argument("--ready-file", type=Path, help="written when ready, removed when stopping")
    parser.add_argument("--health-host", default="127.0.0.1")
    parser.add_argument("--health-port", type=int, help="serve /healthz, /readyz (and /metrics) on this port")
    parser.add_argument("--max-lag", type=float, help="/readyz fails when the oldest unsent row is older")
    parser.add_argument("--metrics", action="store_true", help="keep Prometheus metrics, served at /metrics")
    parser.add_argument("--cleanup-interval", type=float, default=3600.0, help="seconds; 0 turns cleanup off")
    parser.add_argument("--outbox-retention", type=float, default=7 * 24 * 3600.0, help="seconds")
    parser.add_argument("--inbox-retention", type=float, default=7 * 24 * 3600.0, help="seconds")
    parser.add_argument("--cleanup-batch", type=int, default=1000, help="rows per cleanup transaction")
    _logging_arguments(parser)


def _options(arguments: argparse.Namespace) -> ProcessOptions:
    from cqrskit._operate import Cleanup, ProcessOptions  # noqa: PLC0415 - see _OPERATE

    command = arguments.command
    relays = (arguments.relays or ["relay"]) if command in {"relay", "worker"} else []
    consumers = (arguments.consumers or ["consumer"]) if command in {"consume", "worker"} else []
    return ProcessOptions(
        relays=relays,
        consumers=consumers,
        idempotency=arguments.idempotency,
        queue=getattr(arguments, "queue", None),
        concurrency=getattr(arguments, "concurrency", None),
        prefetch=getattr(arguments, "prefetch", None),
        create_tables=arguments.create_tables,
        grace=arguments.grace,
        ready_file=arguments.ready_file,
        health_host=arguments.health_host,
        health_port=arguments.health_port,
        max_lag=arguments.max_lag,
        metrics=arguments.metrics,
        cleanup=Cleanup(
            interval=arguments.cleanup_interval,
            outbox=arguments.outbox_retention,
            inbox=arguments.inbox_retention,
            batch_size=arguments.cleanup_batch,
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one exit per outcome
    """Run the command in `argv` (default: the command line) and return the exit status."""
    arguments = _parser().parse_args(argv)
    sys.path.insert(0, "")  # like python -m: the current directory's packages can be named
    if getattr(arguments, "log_format", "none") != "none":
        from cqrskit._operate import configure_logging  # noqa: PLC0415 - see _OPERATE

        configure_logging(arguments.log_format, arguments.log_level)
    try:
        container = load_container(arguments.container)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        print(f"cannot load {arguments.container}: {exc}", file=sys.stderr)
        return 2
    if arguments.command in {"relay", "consume", "worker"}:
        from cqrskit._operate import serve  # noqa: PLC0415 - see _OPERATE

        return asyncio.run(serve(container, _options(arguments)))
    if arguments.command == "processes":
        from cqrskit._operate import stuck_processes_command  # noqa: PLC0415 - see _OPERATE

        return asyncio.run(
            stuck_processes_command(
                container, older_than=arguments.older_than, process=arguments.process, out=sys.stdout
            )
        )
    if arguments.command == "dead-letters":
        from cqrskit._operate import dead_letters_command  # noqa: PLC0415 - see _OPERATE

        return asyncio.run(
            dead_letters_command(
                container,
                arguments.action,
                queue=arguments.queue,
                transport=arguments.transport,
                consumer=arguments.consumer,
                message_ids=arguments.ids,
                names=arguments.names,
                everything=arguments.everything,
                out=sys.stdout,
            )
        )
    reports = find_buses(container)
    if not reports:
        print(f"{arguments.container} declares no CommandBus, QueryBus or EventBus provider", file=sys.stderr)
        return 2
    if arguments.command == "routes":
        print_routes(reports, sys.stdout)
        print_processes(find_processes(container), sys.stdout)
        return 1 if any(report.error is not None for report in reports) else 0
    module_name = arguments.container.partition(":")[0]
    problems = check(reports, arguments.modules, container_messages(module_name))
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        print(f"{len(problems)} problem(s) found")
        return 1
    routes = sum(len(report.bus.routes) for report in reports)
    print(f"ok: {len(reports)} buses, {routes} routes, no wiring problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
