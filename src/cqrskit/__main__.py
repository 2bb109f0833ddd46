"""``python -m cqrskit``: look at what a container wires.

- ``python -m cqrskit routes package.module:Container`` prints every bus's routes, each with its
  handler and its behaviours (outermost first) with their settings for that message.
- ``python -m cqrskit check package.module:Container [--modules package.commands ...]`` prints every
  wiring problem and exits with status 1 when there is one. It finds the message classes to check by
  itself (those the container's module defines or imports, and their modules' others); ``--modules``
  adds more.

Both exit with status 1 when a bus cannot be built, and 2 when the container cannot be loaded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cqrskit._inspect import check, container_messages, find_buses, load_container, print_routes


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the inspector with `argv` (default: the command line) and return the exit status."""
    arguments = _parser().parse_args(argv)
    sys.path.insert(0, "")  # like python -m: the current directory's packages can be named
    try:
        container = load_container(arguments.container)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        print(f"cannot load {arguments.container}: {exc}", file=sys.stderr)
        return 2
    reports = find_buses(container)
    if not reports:
        print(f"{arguments.container} declares no CommandBus, QueryBus or EventBus provider", file=sys.stderr)
        return 2
    if arguments.command == "routes":
        print_routes(reports, sys.stdout)
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
